"""Landing hygiene: private files, removal after ingest plus retention, and erasure of a customer.

* Landing files are written with mode 0600 in 0700 folders (:mod:`paydata.generator.landing`):
  they hold raw personal data until the ingest has made it safe.
* :func:`remove_ingested` deletes a landing file once the ledger says it was ``loaded`` at least
  ``retention`` ago, and only if its checksum is still the one ingested; it records
  ``removed_at`` in the ledger.
* :func:`erase_sessions` removes an erased customer's sessions (with their events), telemetry
  samples and feedback from Mongo, detaches their application logs from the session (the log
  line stays for operations, ``session_id`` becomes null), and rewrites every landing file still
  retained without the customer's records (ledger checksum updated, ``erased_lines`` counted).
  :func:`erasure_hook` makes it an erasure hook of :func:`paydata.oltp.erasure.erase_customer`; rerunning it
  is harmless.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from paydata.nosql import ledger
from paydata.nosql.documents import chunked

FILE_MODE = 0o600
DIR_MODE = 0o700


def remove_ingested(database, landing_dir: Path, retention: dt.timedelta, now: dt.datetime) -> list[str]:
    """Delete landing files ingested at least ``retention`` before ``now``; return their ledger names."""
    landing_dir = Path(landing_dir)
    removed = []
    cutoff = now - retention
    for doc in database[ledger.LEDGER].find(
        {"status": "loaded", "finished_at": {"$lte": cutoff}, "removed_at": {"$exists": False}},
        {"sha256": 1},
    ):
        path = landing_dir / doc["_id"]
        if not path.is_file():
            continue
        if ledger.file_digest(path)[0] != doc["sha256"]:
            continue  # not the file that was ingested: leave it for the next ingest to refuse loudly
        path.unlink()
        database[ledger.LEDGER].update_one({"_id": doc["_id"]}, {"$set": {"removed_at": now}})
        removed.append(doc["_id"])
    return removed


def _rewrite_without(path: Path, raw_session_ids: set[str]) -> int:
    """Rewrite ``path`` without lines whose ``session_id`` is in ``raw_session_ids``; return lines dropped.

    Streams line by line into a 0600 temporary file and renames it over the original. Lines that
    are not JSON objects are kept as they are (the ingest quarantines them by hash, never by content).
    """
    dropped = 0
    temporary = path.with_name(path.name + ".erasing")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with open(path, "rb") as source, os.fdopen(fd, "wb") as target:
        for raw in source:
            try:
                record: Any = json.loads(raw)
            except ValueError:
                record = None
            if isinstance(record, dict) and record.get("session_id") in raw_session_ids:
                dropped += 1
                continue
            target.write(raw)
    if dropped:
        os.replace(temporary, path)
    else:
        temporary.unlink()
    return dropped


def erase_sessions(database, tokeniser, raw_session_ids: list[str], landing_dir: Path | None) -> dict[str, int]:
    """Remove the given sessions' documents from Mongo and their records from retained landing files.

    ``raw_session_ids`` are the session ids as the application knows them (OLTP ``charge.session_id``);
    Mongo holds their ``session`` tokens. Returns counts per place. Idempotent.
    """
    raw = sorted({session_id for session_id in raw_session_ids if session_id})
    token = tokeniser.token_function("session")
    tokens = [token(session_id) for session_id in raw]
    counts = {"sessions": 0, "feedback": 0, "telemetry_samples": 0, "app_logs": 0, "landing_lines": 0}
    if landing_dir is not None and Path(landing_dir).is_dir() and raw:
        counts["landing_lines"] = _erase_landing(database, Path(landing_dir), set(raw))
    for part in chunked(tokens):
        counts["sessions"] += database["sessions"].delete_many({"session_id": {"$in": part}}).deleted_count
        counts["feedback"] += database["feedback"].delete_many({"session_id": {"$in": part}}).deleted_count
        for doc in database["telemetry"].find({"samples.session_id": {"$in": part}}, {"count": 1, "samples.session_id": 1}):
            keep = sum(1 for sample in doc["samples"] if sample["session_id"] not in part)
            counts["telemetry_samples"] += doc["count"] - keep
            if keep == 0:
                database["telemetry"].delete_one({"_id": doc["_id"]})
            else:
                database["telemetry"].update_one(
                    {"_id": doc["_id"]},
                    [{"$set": {"samples": {"$filter": {"input": "$samples", "as": "s",
                                                       "cond": {"$not": [{"$in": ["$$s.session_id", part]}]}}},
                               "count": keep}}],
                )
        counts["app_logs"] += database["app_logs"].update_many(
            {"session_id": {"$in": part}}, {"$set": {"session_id": None}}).modified_count
    return counts


def _erase_landing(database, landing_dir: Path, raw_session_ids: set[str]) -> int:
    dropped_total = 0
    for path in sorted(landing_dir.glob("**/*.jsonl")):
        name = path.relative_to(landing_dir).as_posix()
        dropped = _rewrite_without(path, raw_session_ids)
        if not dropped:
            continue
        dropped_total += dropped
        sha256, size = ledger.file_digest(path)
        # A file already ingested keeps its counts; the ledger follows its new checksum so that a
        # later run sees it as the same, already loaded file.
        database[ledger.LEDGER].update_one(
            {"_id": name}, {"$set": {"sha256": sha256, "size": size}, "$inc": {"erased_lines": dropped}})
    return dropped_total


def erasure_hook(database, landing_dir: Path | None):
    """An erasure hook (:data:`paydata.oltp.erasure.ErasureHook`): the subject's sessions out of
    ``database`` and out of the landing files still retained under ``landing_dir``."""
    from paydata.crypto import default_tokeniser

    def erase_subject_sessions(subject) -> dict[str, int]:
        return erase_sessions(database, default_tokeniser(), list(subject.session_ids), landing_dir)

    return erase_subject_sessions
