"""The optional C accelerators of change capture (``paydata._speedups``, built from ``_speedups.c``).

Each function there has a pure-Python twin with the same results and errors, used when the
extension is not built (no compiler at install time) or ``PAYDATA_PURE_PYTHON`` is set (to compare
the two, or to rule the C code out). Tests check the twins against each other.

* ``tuple_data``: the TupleData loop of :mod:`paydata.cdc.pgoutput`;
* ``copy_fields``: one COPY text row of :mod:`paydata.cdc.sinks.warehouse`;
* ``base32_lower``: the text of a token (:mod:`paydata.crypto.tokens`).
"""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("PAYDATA_PURE_PYTHON"):
        return None
    try:
        from paydata import _speedups
    except ImportError:
        return None
    return _speedups


ACCELERATOR: ModuleType | None = _load()
"""The C module, or ``None`` when capture runs on the pure-Python code."""
