"""The confirm ledger: the highest position the engine has reported to a source's replication slot.

Why: a logical slot delivers every transaction that commits after its confirmed position, and
nothing before it. A slot that was dropped and recreated under the same name (or advanced by
another consumer) starts past changes the sinks never received, and nothing in
``pg_replication_slots`` tells such a slot from the one the engine has been reading: it has the
same name, plugin and database, and its position is simply "later". The ledger is the engine's own
record, written durably *before* every position it reports to the server, so for the slot it has
been reading ``slot.confirmed_flush_lsn <= ledger`` always holds (a crash between the write and the
report leaves the slot behind the ledger, which is harmless). A slot whose position is past the
ledger was not moved by this engine, and the run refuses it before applying anything.

A new slot (initial snapshot, re-snapshot) restarts the ledger at the slot's consistent point.

The ledger lives in the warehouse database (``staging.cdc_slot_ledger``), next to the sinks'
offsets and outside the source: the capture role needs no write access to the source database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from paydata.cdc.bookkeeping import WarehouseBookkeeping


@dataclass(frozen=True)
class LedgerEntry:
    slot: str
    confirmed_lsn: int
    source_time: datetime | None = None  # source-side time of the newest commit or heartbeat it covers


class ConfirmLedger(Protocol):
    """Where the engine records the positions it reports to a slot; see the module docstring."""

    def entry(self, source: str) -> LedgerEntry | None:
        """The recorded slot and position of ``source``; None when nothing was ever recorded."""

    def reset(self, source: str, slot: str, lsn: int, source_time: datetime | None) -> None:
        """Start the ledger of ``source`` over for ``slot`` at ``lsn`` (a new slot's position)."""

    def advance(self, source: str, slot: str, lsn: int, source_time: datetime | None) -> None:
        """Record that ``lsn`` is about to be reported to ``slot``; durable when this returns.

        Raises :class:`LedgerError` if the ledger was not started for ``slot``."""

    def close(self) -> None: ...


class LedgerError(RuntimeError):
    """The ledger could not record a position: nothing may be reported to the slot."""


class PostgresConfirmLedger(WarehouseBookkeeping):
    """:class:`ConfirmLedger` in a PostgreSQL table (``staging.cdc_slot_ledger`` of the warehouse).

    Each write commits on its own (autocommit, with the server's ``synchronous_commit``), so it is
    as durable as the sinks' data before the engine reports the position.
    """

    sql_folder = "warehouse/queries/cdc_ledger"
    create_statement = "create_ledger"
    exists_statement = "ledger_exists"

    def entry(self, source: str) -> LedgerEntry | None:
        if not self._exists():
            return None
        with self._connection().cursor() as cursor:
            cursor.execute(self._statement("select_ledger"), {"source": source})
            row = cursor.fetchone()
        return None if row is None else LedgerEntry(row[0], int(row[1]), row[2])

    def reset(self, source: str, slot: str, lsn: int, source_time: datetime | None) -> None:
        self._prepare()
        with self._connection().cursor() as cursor:
            cursor.execute(self._statement("reset_ledger"),
                           {"source": source, "slot": slot, "lsn": lsn, "source_time": source_time})

    def advance(self, source: str, slot: str, lsn: int, source_time: datetime | None) -> None:
        self._prepare()
        with self._connection().cursor() as cursor:
            cursor.execute(self._statement("advance_ledger"),
                           {"source": source, "slot": slot, "lsn": lsn, "source_time": source_time})
            if cursor.fetchone() is None:
                raise LedgerError(
                    f"the confirm ledger of source {source!r} is not started for slot {slot!r}: refusing to "
                    "report a position the ledger cannot vouch for"
                )
