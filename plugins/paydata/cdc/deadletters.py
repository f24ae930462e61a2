"""Dead letters: changes the capture policy could not be applied to, recorded so the stream goes on.

A change whose value cannot be captured (a blank identifier the policy must tokenise, a value that
does not parse as its column's type) used to stop the run, and since the change stays ahead of the
slot, every later run too: only a full re-snapshot got past it. Now, for a table whose manifest
says ``on_error: dead_letter`` (the default), the engine records a :class:`DeadLetter` (source
position, table, the key as the sinks hold it, the failing columns and the error class; never a
value), leaves the change out of the batch and goes on; a table with ``on_error: stop`` stops the
run as before, for tables where a gap would corrupt what is built on them.

Atomicity: the dead letters of a batch are written (keyed by position, ``ON CONFLICT DO
NOTHING``) before the batch reaches any sink, and the slot is confirmed only after every sink
applied it, so a crash anywhere replays the batch and records nothing twice.

Once the cause is fixed, :mod:`paydata.cdc.replay` re-applies each pending dead letter from the
source row as it is now, at the dead letter's own position, so the sinks' per-row position guards
keep any newer version of the key that has already arrived.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from paydata.cdc.bookkeeping import WarehouseBookkeeping


@dataclass(frozen=True)
class DeadLetter:
    source: str
    table: str
    commit_lsn: int
    index_in_txn: int
    kind: str
    key: Any  # as the sinks hold it: a scalar or a tuple of text values (tokens for tokenised columns); None if unknown
    columns: tuple[str, ...]  # the columns whose value could not be captured
    reason: str  # error classes, e.g. "InvalidInput"
    commit_time: datetime | None = None

    @property
    def key_text(self) -> str | None:
        if self.key is None:
            return None
        return json.dumps(list(self.key)) if isinstance(self.key, tuple) else str(self.key)


def parse_key_text(text: str | None, key_columns: tuple[str, ...]) -> tuple[str, ...] | None:
    """The key values (as text, in key order) of a stored ``key_text``."""
    if text is None:
        return None
    if len(key_columns) == 1:
        return (text,)
    values = json.loads(text)
    return tuple(None if value is None else str(value) for value in values)


class DeadLetterStore(Protocol):
    def record(self, letters: Iterable[DeadLetter]) -> None:
        """Store ``letters`` durably (a letter already stored is left as it is)."""

    def pending(self, source: str) -> list[DeadLetter]:
        """Unresolved letters of ``source`` in position order."""

    def resolve(self, letter: DeadLetter, resolution: str) -> None: ...

    def update_reason(self, letter: DeadLetter, columns: tuple[str, ...], reason: str) -> None: ...

    def counts(self, source: str) -> tuple[int, int]:
        """``(unresolved, all)`` letters of ``source``."""

    def close(self) -> None: ...


class PostgresDeadLetterStore(WarehouseBookkeeping):
    """:class:`DeadLetterStore` in ``staging.cdc_dead_letters`` of the warehouse (autocommit writes)."""

    sql_folder = "warehouse/queries/cdc_dead_letters"
    create_statement = "create_dead_letters"
    exists_statement = "dead_letters_exist"

    def record(self, letters: Iterable[DeadLetter]) -> None:
        letters = list(letters)
        if not letters:
            return
        self._prepare()
        with self._connection().cursor() as cursor:
            for letter in letters:
                cursor.execute(self._statement("insert_dead_letter"), {
                    "source": letter.source, "table_name": letter.table, "commit_lsn": letter.commit_lsn,
                    "index_in_txn": letter.index_in_txn, "kind": letter.kind, "key_text": letter.key_text,
                    "columns": list(letter.columns), "reason": letter.reason, "commit_time": letter.commit_time,
                })

    def pending(self, source: str) -> list[DeadLetter]:
        if not self._exists():
            return []
        with self._connection().cursor() as cursor:
            cursor.execute(self._statement("pending_dead_letters"), {"source": source})
            rows = cursor.fetchall()
        return [
            DeadLetter(source, table, lsn, index, kind, key_text, tuple(columns), reason, commit_time)
            for table, lsn, index, kind, key_text, columns, reason, commit_time in rows
        ]

    def _where(self, letter: DeadLetter) -> dict[str, Any]:
        return {"source": letter.source, "table_name": letter.table, "commit_lsn": letter.commit_lsn,
                "index_in_txn": letter.index_in_txn, "key_text": letter.key_text}

    def resolve(self, letter: DeadLetter, resolution: str) -> None:
        with self._connection().cursor() as cursor:
            cursor.execute(self._statement("resolve_dead_letter"), {**self._where(letter), "resolution": resolution})

    def update_reason(self, letter: DeadLetter, columns: tuple[str, ...], reason: str) -> None:
        with self._connection().cursor() as cursor:
            cursor.execute(self._statement("update_dead_letter_reason"),
                           {**self._where(letter), "columns": list(columns), "reason": reason})

    def counts(self, source: str) -> tuple[int, int]:
        if not self._exists():
            return 0, 0
        with self._connection().cursor() as cursor:
            cursor.execute(self._statement("dead_letter_counts"), {"source": source})
            unresolved, total = cursor.fetchone()
        return int(unresolved), int(total)
