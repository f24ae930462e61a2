"""The file ledger (``ingest_files``): each landing file is ingested once, and its counts reconcile.

One document per file, ``_id`` = the file's path relative to the landing folder
(``<kind>/<file name>``), with its size, SHA-256, record kind, status (``loading`` while batches
are committed, ``loaded`` at the end), the byte ``offset`` and ``lines`` committed so far and the
counts ``loaded``, ``quarantined`` (per reason in ``reasons``) and ``duplicates``.

* A file already ``loaded`` with the same checksum is skipped: a rerun or a re-delivered file
  loads nothing.
* A file whose name is in the ledger with another checksum is refused with
  :class:`ChecksumMismatch`, never merged: either the producer rewrote a file that was already
  ingested, or two different files share a name. Move or rename it to ingest it.
* An interrupted file (``loading``) resumes at its committed offset: each batch's documents and
  the ledger's new offset and counts are committed in one transaction (when the server has
  them), so the counts stay exact across a crash.
* :func:`check_reconciliation` fails when ``lines != loaded + quarantined + duplicates``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LEDGER = "ingest_files"
_HASH_BLOCK = 1 << 20


class ChecksumMismatch(RuntimeError):
    """A file's name is in the ledger with another checksum; the file is refused, not merged."""


class ReconciliationError(RuntimeError):
    """A file's lines do not equal loaded + quarantined + duplicates."""


class ConcurrentLedgerWrite(RuntimeError):
    """The ledger entry moved while a batch was being written: another ingest runs the same file."""


@dataclass
class Entry:
    name: str
    kind: str
    sha256: str
    size: int
    status: str = "loading"
    offset: int = 0
    lines: int = 0
    loaded: int = 0
    quarantined: int = 0
    duplicates: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.name, "kind": self.kind, "sha256": self.sha256, "size": self.size,
                "status": self.status, "lines": self.lines, "loaded": self.loaded,
                "quarantined": self.quarantined, "duplicates": self.duplicates, "reasons": dict(self.reasons)}

    @property
    def reconciles(self) -> bool:
        return self.lines == self.loaded + self.quarantined + self.duplicates


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _entry(doc: dict[str, Any]) -> Entry:
    return Entry(doc["_id"], doc["kind"], doc["sha256"], doc["size"], doc["status"], doc["offset"], doc["lines"],
                 doc["loaded"], doc["quarantined"], doc["duplicates"], dict(doc.get("reasons", {})))


def claim(database, name: str, kind: str, sha256: str, size: int, now: dt.datetime) -> Entry:
    """The ledger entry of a file about to be ingested: new, resumed, or ``loaded`` (nothing to do).

    Raises :class:`ChecksumMismatch` if the name is known with another checksum.
    """
    doc = database[LEDGER].find_one({"_id": name})
    if doc is None:
        Entry(name, kind, sha256, size)
        database[LEDGER].update_one(
            {"_id": name},
            {"$setOnInsert": {"kind": kind, "sha256": sha256, "size": size, "status": "loading", "offset": 0,
                              "lines": 0, "loaded": 0, "quarantined": 0, "duplicates": 0, "reasons": {},
                              "started_at": now, "updated_at": now}},
            upsert=True,
        )
        doc = database[LEDGER].find_one({"_id": name})
    if doc["sha256"] != sha256:
        raise ChecksumMismatch(
            f"landing file {name} was ingested before with SHA-256 {doc['sha256'][:16]}..., now it has "
            f"{sha256[:16]}... ({size} bytes): refused, nothing loaded. A landing file must never be rewritten; "
            "move it aside or give it a new name to ingest its content."
        )
    return _entry(doc)


def checkpoint(database, entry: Entry, previous_offset: int, now: dt.datetime, session=None) -> None:
    """Store the entry's offset and counts, guarded by the offset the batch started from."""
    result = database[LEDGER].update_one(
        {"_id": entry.name, "offset": previous_offset, "status": "loading"},
        {"$set": {"offset": entry.offset, "lines": entry.lines, "loaded": entry.loaded,
                  "quarantined": entry.quarantined, "duplicates": entry.duplicates, "reasons": entry.reasons,
                  "updated_at": now}},
        session=session,
    )
    if result.matched_count != 1:
        raise ConcurrentLedgerWrite(f"ledger entry of {entry.name} moved past offset {previous_offset} during the batch")


def check_reconciliation(entry: Entry) -> None:
    if not entry.reconciles:
        raise ReconciliationError(
            f"{entry.name}: {entry.lines} lines in, but loaded {entry.loaded} + quarantined {entry.quarantined} "
            f"+ duplicates {entry.duplicates} = {entry.loaded + entry.quarantined + entry.duplicates}"
        )


def finish(database, entry: Entry, now: dt.datetime) -> None:
    """Mark a fully read file ``loaded`` after checking its counts (ReconciliationError if they differ)."""
    check_reconciliation(entry)
    database[LEDGER].update_one({"_id": entry.name, "status": "loading"},
                                {"$set": {"status": "loaded", "finished_at": now, "updated_at": now}})
    entry.status = "loaded"


def entries(database, names: list[str]) -> list[Entry]:
    from paydata.nosql.documents import find_in

    return [_entry(doc) for doc in find_in(database[LEDGER], "_id", names, {})]
