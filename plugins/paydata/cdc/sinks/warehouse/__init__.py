"""The warehouse staging sink (:class:`WarehouseSink`): captured changes into ``staging.<source>_<table>``.

Along the data path: :mod:`.plan` (a table's columns, key, types and DDL), :mod:`.versions`
(folding a batch into rows and encoding them), :mod:`.copytext` (types and COPY text), :mod:`.sink`
(the sink: connection, offset transaction, loading).
"""

from paydata.cdc.sinks.warehouse.copytext import WarehouseSinkError, copy_text
from paydata.cdc.sinks.warehouse.sink import WarehouseSink

__all__ = ["WarehouseSink", "WarehouseSinkError", "copy_text"]
