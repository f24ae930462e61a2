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
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from pymongo import UpdateOne

from paydata.nosql import ledger
from paydata.nosql.documents import execute, find_in, plan_collection
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
        with open(path, "rb") as handle:
            self._run_batches(entry, _lines(handle, entry.offset, self.types.max_line_bytes), entry.lines + 1, now)
        ledger.finish(self.database, entry, now)
        return entry

    def _run_batches(self, entry: ledger.Entry, lines: Iterator, first_line: int, now: dt.datetime) -> None:
        # Classifying a batch is Python work, writing it is mostly waiting for the server: the next
        # batch is read and classified in a second thread while the current one is written.
        with ThreadPoolExecutor(max_workers=1) as worker:
            pending = None
            for batch in _batches(lines, self.batch_lines):
                classified = worker.submit(self._classify, entry, first_line, batch, now)
                first_line += len(batch)
                if pending is not None:
                    self._commit([(entry, pending[0], pending[1].result())], now)
                pending = (batch, classified)
            if pending is not None:
                self._commit([(entry, pending[0], pending[1].result())], now)

    def run_pair(self, sessions: tuple[Path, str], events: tuple[Path, str], now: dt.datetime) -> list[ledger.Entry]:
        """A new sessions file and its new events file (same batch and chunk) read side by side.

        Both list sessions in the order of their first payment, so a batch of session lines and the
        event lines of those sessions become one inserted document per session instead of an insert
        and an update. An event of a session not among the last few batches of session lines waits
        (nothing is buffered beyond it); events left when the sessions end load as usual. Each file
        keeps its own ledger entry, offsets and counts, committed in the same transaction.
        """
        entries = []
        for (path, name), kind in ((sessions, "sessions"), (events, "events")):
            sha256, size = ledger.file_digest(path)
            entries.append(ledger.claim(self.database, name, kind, sha256, size, now))
        s_entry, e_entry = entries
        limit = self.types.max_line_bytes
        recent: deque[set] = deque(maxlen=4)
        with open(sessions[0], "rb") as s_handle, open(events[0], "rb") as e_handle:
            e_lines = _lines(e_handle, 0, limit)
            e_line, head = 1, None
            s_line = 1
            for s_batch in _batches(_lines(s_handle, 0, limit), self.batch_lines):
                s_classified = self._classify(s_entry, s_line, s_batch, now)
                s_line += len(s_batch)
                recent.append({record["session_id"] for kind, record, _tag in s_classified[0].get("sessions", ())
                               if kind == "sessions"})
                e_batch, e_parts = [], []
                while len(e_batch) < 8 * self.batch_lines:
                    if head is None:
                        item = next(e_lines, None)
                        if item is None:
                            break
                        head = (item, self._classify(e_entry, e_line, [item], now))
                    token = next((record["session_id"] for records in head[1][0].values()
                                  for _kind, record, _tag in records), None)
                    if token is not None and not any(token in tokens for tokens in recent):
                        break
                    e_batch.append(head[0])
                    e_parts.append(head[1])
                    head, e_line = None, e_line + 1
                parts = [(s_entry, s_batch, s_classified)]
                if e_batch:
                    parts.append((e_entry, e_batch, _merge(e_parts)))
                self._commit(parts, now)
            rest = chain([head[0]] if head is not None else [], e_lines)
            self._run_batches(e_entry, rest, e_line, now)
        for entry in entries:
            ledger.finish(self.database, entry, now)
        return entries

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
                    by_collection[record_type.collection].append((result[0], safe, entry.name))
                    continue
                result = safe
            quarantine.append(_quarantine_op(entry, line_no, result, raw_sha, length, now))
            reasons[result.reason] += 1
        return by_collection, quarantine, reasons

    def _commit(self, parts: list[tuple[ledger.Entry, list, tuple]], now: dt.datetime) -> None:
        """Write the lines of ``parts`` (entry, raw lines, classified) and advance each entry, atomically."""
        by_collection: dict[str, list] = defaultdict(list)
        quarantine = []
        for _entry, _batch, (classified, ops, _reasons) in parts:
            for collection, items in classified.items():
                by_collection[collection] += items
            quarantine += ops
        previous = [entry.offset for entry, _batch, _classified in parts]

        def write(session) -> list[ledger.Entry]:
            loaded, duplicates = Counter(), Counter()
            for collection, items in by_collection.items():
                plan = plan_collection(collection, self.database, items, now, session)
                execute(self.database, plan, session)
                loaded.update(plan.loaded)
                duplicates.update(plan.duplicates)
            if quarantine:
                self.database[QUARANTINE].bulk_write(quarantine, ordered=False, session=session)
            advanced = []
            for (entry, batch, (_classified, _ops, reasons)), offset in zip(parts, previous, strict=True):
                after = _advanced(entry, batch, loaded[entry.name], duplicates[entry.name], reasons)
                ledger.checkpoint(self.database, after, offset, now, session)
                advanced.append(after)
            return advanced

        if self.transactions:
            with self.database.client.start_session() as session:
                advanced = session.with_transaction(write)
        else:
            advanced = write(None)
        for (entry, _batch, _classified), after in zip(parts, advanced, strict=True):
            entry.offset, entry.lines, entry.loaded = after.offset, after.lines, after.loaded
            entry.quarantined, entry.duplicates, entry.reasons = after.quarantined, after.duplicates, after.reasons


def _merge(classified: list[tuple]) -> tuple:
    by_collection: dict[str, list] = defaultdict(list)
    quarantine, reasons = [], Counter()
    for part, ops, counts in classified:
        for collection, items in part.items():
            by_collection[collection] += items
        quarantine += ops
        reasons.update(counts)
    return by_collection, quarantine, reasons


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
    names = {path: path.relative_to(landing_dir).as_posix() for path in paths}
    known = {doc["_id"] for doc in find_in(database[ledger.LEDGER], "_id", list(names.values()), {"_id": 1})}
    pairs = _fresh_pairs(paths, names, known, landing_dir)
    partners = set(pairs.values())  # read together with their sessions file
    for path in paths:
        if path in partners:
            continue
        if path in pairs:
            events = pairs[path]
            entries = runner.run_pair((path, names[path]), (events, names[events]), now)
            report.files += entries
            for entry in entries:
                log.info("%s: %s", entry.name, entry.as_dict())
            continue
        name = names[path]
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


def _fresh_pairs(paths: list[Path], names: dict[Path, str], known: set[str], landing_dir: Path) -> dict[Path, Path]:
    """Sessions file -> its events file, for pairs of the same batch and chunk that no ledger entry names."""
    present = set(paths)
    pairs = {}
    for path in paths:
        if landing_kind(path, landing_dir) != "sessions" or not path.name.startswith("sessions-"):
            continue
        events = landing_dir / "events" / ("events-" + path.name.removeprefix("sessions-"))
        if events in present and names[path] not in known and names[events] not in known:
            pairs[path] = events
    return pairs
