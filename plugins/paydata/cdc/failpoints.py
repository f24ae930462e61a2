"""Deterministic crash points: kill this process at a named step of a capture run.

Crash tests need to die *exactly* between two steps (after a sink committed but before the slot was
told, after the report but before the next batch, inside a Mongo transaction), which a random
SIGKILL almost never hits. Each such step calls :func:`reach` with its name; when the environment
variable ``PAYDATA_FAILPOINT`` names it, the process sends itself SIGKILL there: no ``finally``
block, no ``atexit``, no flush, exactly as the kernel's OOM killer or a node loss would stop it.

``PAYDATA_FAILPOINT=<name>`` dies the first time the step is reached, ``<name>@<n>`` the n-th
time. Unset (production), :func:`reach` is one dictionary lookup. The names are in
:data:`FAILPOINTS`; naming another one is an error at the first :func:`reach`, so a typo in a
test cannot pass silently.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "PAYDATA_FAILPOINT"

FAILPOINTS = {
    "cdc.batch_read": "a batch was read and decoded, before any sink received it",
    "cdc.sink_committed.warehouse": "the warehouse sink committed a batch (before the next sink, if any)",
    "cdc.sink_committed.mongo": "the Mongo sink committed a batch",
    "cdc.ledger_written": "the confirm ledger holds the batch's end, the slot was not told yet",
    "cdc.confirmed": "the slot was told the batch's end",
    "cdc.snapshot_chunk": "a snapshot chunk reached every sink, the snapshot is not complete",
    "mongo.in_transaction": "the Mongo sink wrote a batch's documents (inside its transaction), not its offset",
    "warehouse.in_transaction": "the warehouse sink staged a batch inside its transaction, before commit",
}

_hits: dict[str, int] = {}
_armed: tuple[str, int] | None | bool = False  # False: not parsed yet


def _parse(value: str) -> tuple[str, int] | None:
    if not value:
        return None
    name, _, count = value.partition("@")
    if name not in FAILPOINTS:
        raise ValueError(f"{ENV_VAR}={value!r}: unknown failpoint {name!r}; known: {sorted(FAILPOINTS)}")
    try:
        times = int(count) if count else 1
    except ValueError:
        raise ValueError(f"{ENV_VAR}={value!r}: the count after '@' must be an integer") from None
    if times < 1:
        raise ValueError(f"{ENV_VAR}={value!r}: the count after '@' must be at least 1")
    return name, times


def reach(name: str) -> None:
    """Kill this process with SIGKILL if ``PAYDATA_FAILPOINT`` names this step (and its count is due)."""
    global _armed
    if _armed is False:
        _armed = _parse(os.environ.get(ENV_VAR, "").strip())
    if _armed is None or _armed[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= _armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Forget the parsed variable and the counts (for tests that change ``PAYDATA_FAILPOINT``)."""
    global _armed
    _armed = False
    _hits.clear()
