"""Pausing Python's cyclic garbage collector around allocation-heavy CDC work.

Decoding and staging a batch allocate hundreds of thousands of short-lived tuples, strings and
row objects. Each allocation burst triggers collections that walk every tracked object of the
process, the batch in memory included; measured on the benchmark workload that doubled the cost
of decoding (5.5 -> 9 µs per change) and added half to staging. Nothing the engine or the sinks
allocate per change forms a reference cycle, so reference counting frees it all without the
collector.

The pause nests and is shared between threads (the engine reads on one thread while a sink
applies on another): the collector is disabled by the first pause and restored by the last one to
end, to the state it had before the first.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Generator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Generator[None, None, None]:
    """Disable the cyclic collector for the block (restored when the last nested pause ends)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
