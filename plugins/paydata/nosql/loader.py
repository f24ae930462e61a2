"""Ingest landing files into Mongo: stream, validate, make safe, deduplicate, write, quarantine.

:func:`ingest_file` reads one file line by line (never the whole file: memory is bounded by the
batch size, and a line longer than ``max_line_bytes`` is hashed and skipped in blocks). Each line
becomes exactly one of:

* **loaded**: valid, made safe (:class:`paydata.nosql.scrub.Safeguard`) and written;
* **duplicate**: its key (``records.json`` ``key``) is already stored or appeared earlier;
* **quarantined**: a document in ``quarantine`` with the reason code, the file, the line number,
  the SHA-256 and length of the raw line, and a detail (JSON path and schema keyword) that never
  holds a value. The raw line itself is never stored.

Batches of ``batch_lines`` lines are committed with the ledger's new offset and counts in one
transaction when the server runs them (see :mod:`paydata.nosql.ledger`), so a crash loses or
doubles nothing. Without transactions the batch is written first and the ledger after it: a
crash in between makes that batch's records count as duplicates on the rerun (still nothing lost
or doubled).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import UpdateOne

from paydata.nosql import ledger
from paydata.nosql.documents import execute, plan_collection
from paydata.nosql.records import RecordTypes, Reject, check_line, record_types
from paydata.nosql.scrub import Safeguard

log = logging.getLogger(__name__)

QUARANTINE = "quarantine"
BATCH_LINES = 1000
_SKIP_BLOCK = 1 << 16


@dataclass
class IngestReport:
    """Outcome of one ingest run; :meth:`as_dict` is what the DAG puts in XCom (counts and names only)."""

    files: list[ledger.Entry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # already loaded with the same checksum
    refused: list[str] = field(default_factory=list)   # name known with another checksum

    def totals(self) -> dict[str, Any]:
        reasons: Counter = Counter()
        for entry in self.files:
            reasons.update(entry.reasons)
        return {
            "files": len(self.files), "skipped": len(self.skipped), "refused": len(self.refused),
            "lines": sum(e.lines for e in self.files), "loaded": sum(e.loaded for e in self.files),
            "quarantined": sum(e.quarantined for e in self.files),
            "duplicates": sum(e.duplicates for e in self.files), "reasons": dict(sorted(reasons.items())),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.totals(), "file_names": [e.name for e in self.files], "skipped_files": self.skipped,
                "refused_files": self.refused}


def landing_kind(path: Path, landing_dir: Path) -> str:
    """The record kind of a landing file: its folder under the landing directory."""
    relative = path.relative_to(landing_dir)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem.split("-", 1)[0]


def landing_files(landing_dir: Path, types: RecordTypes | None = None, batch_keys: list[str] | None = None) -> list[Path]:
    """Every ``*.jsonl`` file under ``landing_dir`` the ingest reads, oldest name first.

    Kinds other pipelines consume (``ignored_kinds``, e.g. ``fraud_labels``) are left out; files
    of an unknown kind are included and their lines quarantined as ``unknown_record_type``. With
    ``batch_keys``, only files named ``<kind>-<batch key>-<chunk>.jsonl`` of those batches.
    """
    types = types or record_types()
    landing_dir = Path(landing_dir)
    found = []
    for path in sorted(landing_dir.glob("**/*.jsonl")):
        if landing_kind(path, landing_dir) in types.ignored_kinds:
            continue
        if batch_keys is not None and not any(f"-{key}-" in path.name for key in batch_keys):
            continue
        found.append(path)
    return found


def _lines(handle, offset: int, limit: int) -> Iterator[tuple[bytes | None, bool, str | None, int, int]]:
    """``(line or None if oversize, terminated, sha256 if oversize, length, end offset)`` from ``offset``."""
    handle.seek(offset)
    while True:
        raw = handle.readline(limit + 1)
        if not raw:
            return
        offset += len(raw)
        if raw.endswith(b"\n"):
            yield raw[:-1], True, None, len(raw) - 1, offset
        elif len(raw) <= limit:
            yield raw, False, None, len(raw), offset
        else:  # longer than any valid record: hash the rest in blocks, never hold it whole
            digest = hashlib.sha256(raw)
            length, terminated = len(raw), False
            while more := handle.readline(_SKIP_BLOCK):
                offset += len(more)
                if more.endswith(b"\n"):
                    digest.update(more[:-1])
                    length += len(more) - 1
                    terminated = True
                    break
                digest.update(more)
                length += len(more)
            yield None, terminated, digest.hexdigest(), length, offset


def _quarantine_op(entry: ledger.Entry, line_no: int, reject: Reject, raw_sha: str, length: int, now: dt.datetime):
    doc = {"file": entry.name, "file_sha256": entry.sha256, "kind": entry.kind, "line": line_no,
           "reason": reject.reason, "detail": reject.detail, "raw_sha256": raw_sha, "raw_bytes": length,
           "quarantined_at": now}
    return UpdateOne({"_id": f"{entry.sha256[:32]}:{line_no}"}, {"$setOnInsert": doc}, upsert=True)


def _uses_transactions(database) -> bool:
    hello = database.client.admin.command("hello")
    return bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"


class FileIngest:
    """One file, batch by batch (see the module docstring)."""

    def __init__(self, database, safeguard: Safeguard, types: RecordTypes, *, batch_lines: int = BATCH_LINES,
                 transactions: bool | None = None) -> None:
        self.database = database
        self.safeguard = safeguard
        self.types = types
        self.batch_lines = batch_lines
        self.transactions = _uses_transactions(database) if transactions is None else transactions

    def run(self, path: Path, name: str, kind: str, now: dt.datetime) -> ledger.Entry:
        sha256, size = ledger.file_digest(path)
        entry = ledger.claim(self.database, name, kind, sha256, size, now)
        if entry.status == "loaded":
            return entry
        # Classifying a batch is Python work, writing it is mostly waiting for the server: the next
        # batch is read and classified in a second thread while the current one is written.
        with open(path, "rb") as handle, ThreadPoolExecutor(max_workers=1) as worker:
            pending = None
            first_line = entry.lines + 1
            for batch in _batches(_lines(handle, entry.offset, self.types.max_line_bytes), self.batch_lines):
                classified = worker.submit(self._classify, entry, first_line, batch, now)
                first_line += len(batch)
                if pending is not None:
                    self._commit(entry, pending[0], pending[1].result(), now)
                pending = (batch, classified)
            if pending is not None:
                self._commit(entry, pending[0], pending[1].result(), now)
        ledger.finish(self.database, entry, now)
        return entry

    def _classify(self, entry: ledger.Entry, first_line: int, batch: list, now: dt.datetime):
        by_collection: dict[str, list] = defaultdict(list)
        quarantine, reasons = [], Counter()
        for line_no, (body, terminated, raw_sha, length, _end) in enumerate(batch, start=first_line):
            if body is None:
                result: Any = Reject("oversize_record", f"{length} bytes > {self.types.max_line_bytes}")
            else:
                result = check_line(body, entry.kind, self.types, terminated=terminated)
                raw_sha = raw_sha or hashlib.sha256(body).hexdigest()
            if not isinstance(result, Reject):
                record_type = self.types[result[0]]
                safe = self.safeguard.make_safe(record_type, result[1])
                if not isinstance(safe, Reject):
                    by_collection[record_type.collection].append((result[0], safe))
                    continue
                result = safe
            quarantine.append(_quarantine_op(entry, line_no, result, raw_sha, length, now))
            reasons[result.reason] += 1
        return by_collection, quarantine, reasons

    def _commit(self, entry: ledger.Entry, batch: list, classified: tuple, now: dt.datetime) -> None:
        by_collection, quarantine, reasons = classified
        previous_offset = entry.offset

        def write(session) -> tuple[int, int]:
            loaded = duplicates = 0
            for collection, items in by_collection.items():
                plan = plan_collection(collection, self.database, items, now, session)
                execute(self.database, plan, session)
                loaded += plan.loaded
                duplicates += plan.duplicates
            if quarantine:
                self.database[QUARANTINE].bulk_write(quarantine, ordered=False, session=session)
            after = _advanced(entry, batch, loaded, duplicates, reasons)
            ledger.checkpoint(self.database, after, previous_offset, now, session)
            return loaded, duplicates

        if self.transactions:
            with self.database.client.start_session() as session:
                loaded, duplicates = session.with_transaction(write)
        else:
            loaded, duplicates = write(None)
        advanced = _advanced(entry, batch, loaded, duplicates, reasons)
        entry.offset, entry.lines, entry.loaded = advanced.offset, advanced.lines, advanced.loaded
        entry.quarantined, entry.duplicates, entry.reasons = advanced.quarantined, advanced.duplicates, advanced.reasons


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _advanced(entry: ledger.Entry, batch: list, loaded: int, duplicates: int, reasons: Counter) -> ledger.Entry:
    merged = Counter(entry.reasons)
    merged.update(reasons)
    return ledger.Entry(entry.name, entry.kind, entry.sha256, entry.size, entry.status, batch[-1][4],
                        entry.lines + len(batch), entry.loaded + loaded, entry.quarantined + sum(reasons.values()),
                        entry.duplicates + duplicates, dict(sorted(merged.items())))


def ingest_files(database, landing_dir: Path, paths: list[Path], safeguard: Safeguard, *,
                 types: RecordTypes | None = None, batch_lines: int = BATCH_LINES,
                 now: dt.datetime | None = None) -> IngestReport:
    """Ingest ``paths`` (files under ``landing_dir``) in order; a refused file does not stop the others.

    Returns the report; the caller decides what a refused file means (the DAG fails the task after
    the other files are in). Raises :class:`ledger.ReconciliationError` if a file's counts do not add
    up, and pymongo errors unchanged.
    """
    types = types or record_types()
    now = now or dt.datetime.now(dt.UTC)
    landing_dir = Path(landing_dir)
    runner = FileIngest(database, safeguard, types, batch_lines=batch_lines)
    report = IngestReport()
    for path in paths:
        name = path.relative_to(landing_dir).as_posix()
        try:
            before = database[ledger.LEDGER].find_one({"_id": name}, {"status": 1})
            entry = runner.run(path, name, landing_kind(path, landing_dir), now)
        except ledger.ChecksumMismatch as exc:
            log.error("%s", exc)
            report.refused.append(name)
            continue
        if before is not None and before["status"] == "loaded":
            report.skipped.append(name)
        else:
            report.files.append(entry)
        log.info("%s: %s", name, entry.as_dict())
    return report
