"""The warehouse staging sink (:class:`WarehouseSink`): captured changes into ``staging.<source>_<table>``.

Along the data path: :mod:`.plan` (a table's columns, key, types and DDL statements), :mod:`.tables`
(creating the staging tables from plans), :mod:`.checks` (refusing a batch that does not fit),
:mod:`.versions` (folding a batch into rows and encoding them in chunks), :mod:`.copytext` (types
and COPY text), :mod:`.loading` (loading chunks into mirror and history), :mod:`.sink` (the sink:
connection and the offset transaction).
"""

from paydata.cdc.sinks.warehouse.copytext import WarehouseSinkError, copy_text
from paydata.cdc.sinks.warehouse.sink import WarehouseSink

__all__ = ["WarehouseSink", "WarehouseSinkError", "copy_text"]
