"""The landing ingest against the real SecantusDB wire server: bad records, ledger, duplicates, resume, PII."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from pymongo.errors import WriteError

from paydata.crypto import default_tokeniser
from paydata.generator import TrafficConfig
from paydata.generator.landing import write_landing
from paydata.generator.reference import MerchantProfile, chargeable_currencies
from paydata.generator.traffic import TrafficGenerator
from paydata.nosql import apply_definitions, hygiene, ledger
from paydata.nosql.audit import pii_findings
from paydata.nosql.loader import FileIngest, ingest_files, landing_files
from paydata.nosql.scrub import KnownValues, Safeguard

pytestmark = pytest.mark.integration

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MERCHANTS = [MerchantProfile(1, "5411", "US", "USD"), MerchantProfile(2, "4511", "GB", "GBP"),
             MerchantProfile(3, "5814", "FR", "EUR")]
NOW = dt.datetime(2026, 1, 3, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def generated(tmp_path_factory, stack):
    """A small generated batch: its landing files (kept pristine) and the customers' identities."""
    generator = TrafficGenerator(TrafficConfig(payments=400, start=START, days=1, seed=11), MERCHANTS,
                                 chargeable_currencies())
    source = tmp_path_factory.mktemp("landing-source")
    write_landing(source, generator)
    identities = [customer.identity for chunk in generator.chunks() for customer in chunk.customers]
    return source, identities


@pytest.fixture
def landing(generated, tmp_path):
    target = tmp_path / "landing"
    shutil.copytree(generated[0], target)
    return target


@pytest.fixture
def safeguard(generated):
    tokeniser = default_tokeniser()
    identities = generated[1]
    return Safeguard(tokeniser, KnownValues.from_plaintext(
        tokeniser, [i.name for i in identities], [i.phone for i in identities]))


@pytest.fixture
def db(mongo_db):
    apply_definitions(mongo_db)
    return mongo_db


def _count_lines(path: Path) -> int:
    data = path.read_bytes()
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def _inject(landing: Path) -> dict[str, list[tuple[str, int, bytes]]]:
    """Append one bad line of every kind; return reason -> [(file name, line number, raw line)]."""
    injected: dict[str, list] = {}

    def append(kind: str, reason: str, raw: bytes, newline: bool = True, folder: str | None = None):
        path = next((landing / (folder or kind)).glob("*.jsonl"), None) or landing / folder / f"{folder}-x-00000.jsonl"
        path.parent.mkdir(exist_ok=True)
        number = _count_lines(path) + 1 if path.exists() else 1
        with open(path, "ab") as handle:
            handle.write(raw + (b"\n" if newline else b""))
        injected.setdefault(reason, []).append((path.relative_to(landing).as_posix(), number, raw))

    good_feedback = json.loads(next((landing / "feedback").glob("*.jsonl")).read_text().splitlines()[0])
    good_log = json.loads(next((landing / "app_logs").glob("*.jsonl")).read_text().splitlines()[0])
    append("feedback", "bad_json", b'{"feedback_id": "fb_00000000000000aa", "rating": 5,')
    append("feedback", "invalid_utf8", json.dumps({**good_feedback, "text": "x"}).encode().replace(b'"x"', b'"\xc3\x28"'))
    append("feedback", "wrong_type", json.dumps({**good_feedback, "feedback_id": "fb_00000000000000ab",
                                                 "rating": "five"}).encode())
    append("feedback", "missing_field", json.dumps({k: v for k, v in good_feedback.items() if k != "channel"}).encode())
    append("app_logs", "unknown_record_type", json.dumps({**good_log, "type": "metrics"}).encode())
    append("app_logs", "oversize_record", json.dumps({**good_log, "message": "m" * 20000}).encode())
    append("app_logs", "pii_in_field", json.dumps({**good_log, "request_id": "req_00000000000000ac",
                                                   "status": "ana@example.com"}).encode())
    append("clicks", "unknown_record_type", b'{"click": 1}', folder="clicks")
    append("events", "truncated_line", b'{"session_id": "sess_x", "event": "page_view", "seq": 0, "ts": "2026-01-0',
           newline=False)
    return injected


def test_bad_records_are_quarantined_with_reasons_and_the_rest_loads(db, landing, safeguard):
    good_lines = sum(_count_lines(p) for p in landing_files(landing))
    injected = _inject(landing)
    files = landing_files(landing)
    expected_lines = {p.relative_to(landing).as_posix(): _count_lines(p) for p in files}

    report = ingest_files(db, landing, files, safeguard, now=NOW, batch_lines=200)

    totals = report.totals()
    assert totals["quarantined"] == sum(len(v) for v in injected.values()) == 9
    assert totals["reasons"] == {reason: len(items) for reason, items in injected.items()}
    assert totals["loaded"] + totals["duplicates"] == good_lines
    for entry in report.files:
        assert entry.lines == expected_lines[entry.name] == entry.loaded + entry.quarantined + entry.duplicates
        assert db["ingest_files"].find_one({"_id": entry.name})["status"] == "loaded"
    for reason, items in injected.items():
        for name, number, raw in items:
            doc = db["quarantine"].find_one({"file": name, "line": number})
            assert doc is not None and doc["reason"] == reason, (reason, name, number)
            assert doc["raw_sha256"] == hashlib.sha256(raw).hexdigest() and doc["raw_bytes"] == len(raw)
            assert set(doc) == {"_id", "file", "file_sha256", "kind", "line", "reason", "detail", "raw_sha256",
                                "raw_bytes", "quarantined_at"}
    assert db["quarantine"].count_documents({}) == 9
    assert db["feedback"].count_documents({}) == _count_lines(next((landing / "feedback").glob("*.jsonl"))) - 4

    rerun = ingest_files(db, landing, files, safeguard, now=NOW)
    assert rerun.files == [] and sorted(rerun.skipped) == sorted(expected_lines)
    assert db["quarantine"].count_documents({}) == 9


def test_a_second_file_repeating_event_ids_counts_them_as_duplicates(db, landing, safeguard):
    events = next((landing / "events").glob("*.jsonl"))
    ingest_files(db, landing, [events], safeguard, now=NOW)
    stored = sum(len(doc["events"]) for doc in db["sessions"].find())
    lines = events.read_text().splitlines()
    repeated = lines[:50]
    fresh = [json.dumps({**json.loads(line), "seq": 150 + n}) for n, line in enumerate(lines[50:60])]
    second = landing / "events" / "events-again-00000.jsonl"
    second.write_text("\n".join(repeated + fresh + repeated[:5]) + "\n")

    report = ingest_files(db, landing, [second], safeguard, now=NOW)

    entry = report.files[0]
    assert (entry.lines, entry.loaded, entry.duplicates, entry.quarantined) == (65, 10, 55, 0)
    assert sum(len(doc["events"]) for doc in db["sessions"].find()) == stored + 10
    overflow = list(db["sessions"].find({"bucket": 1}))
    assert overflow and all(doc["_id"] == f"{doc['session_id']}:1" for doc in overflow)
    assert all(e["seq"] >= 100 for doc in overflow for e in doc["events"])


@pytest.mark.parametrize("interrupt", [False, True])
def test_sessions_read_with_their_events_give_the_same_documents_as_one_file_at_a_time(
        db, mongo_db, landing, safeguard, monkeypatch, interrupt):
    sessions, events = next((landing / "sessions").glob("*.jsonl")), next((landing / "events").glob("*.jsonl"))
    with open(events, "ab") as handle:  # an event of an unknown session, and a bad line, in the paired file
        handle.write(b'{"session_id": "sess_orphan", "event": "page_view", "seq": 0, "ts": "2026-01-01T00:00:00Z"}\n')
        handle.write(b"{oops\n")
    if interrupt:
        original, calls = FileIngest._commit, {"n": 0}

        def failing(self, parts, now):
            calls["n"] += 1
            if calls["n"] == 2:
                raise ConnectionError("worker lost")
            return original(self, parts, now)

        monkeypatch.setattr(FileIngest, "_commit", failing)
        with pytest.raises(ConnectionError):
            ingest_files(db, landing, [events, sessions], safeguard, now=NOW, batch_lines=100)
        monkeypatch.setattr(FileIngest, "_commit", original)
    paired = ingest_files(db, landing, [events, sessions], safeguard, now=NOW, batch_lines=100)
    first = {doc["_id"]: doc for doc in db["sessions"].find({}, {"ingested_at": 0})}
    other = mongo_db.client[mongo_db.name + "_b"]
    try:
        apply_definitions(other)
        ingest_files(other, landing, [events], safeguard, now=NOW)
        ingest_files(other, landing, [sessions], safeguard, now=NOW)
        second = {doc["_id"]: doc for doc in other["sessions"].find({}, {"ingested_at": 0})}
        separate = {e["_id"]: e for e in other["ingest_files"].find({}, {"lines": 1, "loaded": 1, "quarantined": 1,
                                                                          "duplicates": 1})}
    finally:
        mongo_db.client.drop_database(other.name)
    assert first == second and sum("started_at" in doc for doc in first.values()) == len(first) - 1
    assert {e.name: (e.lines, e.loaded, e.quarantined, e.duplicates) for e in paired.files} == {
        name: (e["lines"], e["loaded"], e["quarantined"], e["duplicates"]) for name, e in separate.items()}
    assert all(e.reconciles and e.quarantined == (1 if e.kind == "events" else 0) for e in paired.files)


def test_a_known_name_with_another_checksum_is_refused_not_merged(db, landing, safeguard):
    logs = next((landing / "app_logs").glob("*.jsonl"))
    ingest_files(db, landing, [logs], safeguard, now=NOW)
    before = db["app_logs"].count_documents({})
    lines = logs.read_text().splitlines()
    logs.write_text("\n".join(lines[:-1]) + "\n")

    report = ingest_files(db, landing, [logs], safeguard, now=NOW)

    assert report.refused == [logs.relative_to(landing).as_posix()] and report.files == []
    assert db["app_logs"].count_documents({}) == before
    with pytest.raises(ledger.ChecksumMismatch, match="refused"):
        ledger.claim(db, report.refused[0], "app_logs", "0" * 64, 1, NOW)


def test_an_interrupted_file_resumes_at_its_committed_batch_with_exact_counts(db, landing, safeguard, monkeypatch):
    telemetry = next((landing / "telemetry").glob("*.jsonl"))
    with open(telemetry, "ab") as handle:
        handle.write(b"not json\n")
    original = FileIngest._commit
    calls = {"n": 0}

    def failing(self, parts, now):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("worker lost")
        return original(self, parts, now)

    monkeypatch.setattr(FileIngest, "_commit", failing)
    with pytest.raises(ConnectionError):
        ingest_files(db, landing, [telemetry], safeguard, now=NOW, batch_lines=100)
    stuck = db["ingest_files"].find_one()
    assert stuck["status"] == "loading" and stuck["lines"] == 200 and stuck["offset"] > 0
    monkeypatch.setattr(FileIngest, "_commit", original)

    report = ingest_files(db, landing, [telemetry], safeguard, now=NOW, batch_lines=100)

    entry = report.files[0]
    assert entry.lines == _count_lines(telemetry) and entry.duplicates == 0 and entry.quarantined == 1
    assert entry.loaded == sum(doc["count"] for doc in db["telemetry"].find()) == entry.lines - 1
    assert all(doc["count"] == len(doc["samples"]) <= 200 for doc in db["telemetry"].find())


def test_server_validators_reject_raw_identifiers_and_unbounded_arrays(db):
    with pytest.raises(WriteError, match="validation"):
        db["sessions"].insert_one({"_id": "sess_raw", "session_id": "sess_raw", "bucket": 0, "events": []})
    token = "tok_k1_" + "a" * 32
    with pytest.raises(WriteError, match="validation"):
        db["sessions"].insert_one({"_id": token, "session_id": token, "bucket": 0,
                                   "events": [{"seq": n, "event": "page_view", "ts": NOW} for n in range(101)]})
    with pytest.raises(WriteError, match="validation"):
        db["quarantine"].insert_one({"_id": "x:1", "file": "f", "file_sha256": "0" * 64, "line": 1, "reason": "bad_json",
                                     "raw_sha256": "0" * 64, "raw_bytes": 3, "quarantined_at": NOW, "raw": "{x"})
    assert apply_definitions(db) == []


def test_no_personal_data_reaches_any_collection(db, landing, generated, safeguard):
    _inject(landing)
    ingest_files(db, landing, landing_files(landing), safeguard, now=NOW)
    identities = generated[1]
    raw_ids = []
    for path in landing_files(landing):
        for raw in path.read_bytes().splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            raw_ids += [record.get("ip"), record.get("session_id")]
    leaked = pii_findings(db, [i.name for i in identities], [i.email for i in identities],
                          [i.phone for i in identities], [value for value in raw_ids if isinstance(value, str)])
    assert leaked == []
    texts = [doc["text"] for doc in db["feedback"].find()]
    assert any("[email]" in t for t in texts) and any("[name]" in t for t in texts)


def test_files_are_removed_only_after_ingest_plus_retention(db, landing, safeguard):
    files = landing_files(landing)
    assert all(os.stat(path).st_mode & 0o777 == 0o600 for path in files)
    ingest_files(db, landing, files[:2], safeguard, now=NOW)
    assert hygiene.remove_ingested(db, landing, dt.timedelta(hours=24), NOW + dt.timedelta(hours=23)) == []
    removed = hygiene.remove_ingested(db, landing, dt.timedelta(hours=24), NOW + dt.timedelta(hours=24))
    assert sorted(removed) == sorted(p.relative_to(landing).as_posix() for p in files[:2])
    assert [p for p in files if p.exists()] == files[2:]
    assert all(db["ingest_files"].find_one({"_id": name})["removed_at"] for name in removed)


def test_erasing_sessions_removes_documents_and_retained_landing_lines(db, landing, safeguard):
    ingest_files(db, landing, landing_files(landing), safeguard, now=NOW)
    feedback = json.loads(next((landing / "feedback").glob("*.jsonl")).read_text().splitlines()[0])
    victim = feedback["session_id"]
    token = default_tokeniser().tokenise(victim, domain="session")
    assert db["sessions"].count_documents({"session_id": token}) == 1

    counts = hygiene.erase_sessions(db, default_tokeniser(), [victim], landing)

    assert counts["sessions"] == 1 and counts["feedback"] >= 1 and counts["landing_lines"] >= 3
    for collection in ("sessions", "feedback"):
        assert db[collection].count_documents({"session_id": token}) == 0
    assert db["telemetry"].count_documents({"samples.session_id": token}) == 0
    assert db["app_logs"].count_documents({"session_id": token}) == 0
    for path in landing.glob("**/*.jsonl"):
        assert victim.encode() not in path.read_bytes()
        entry = db["ingest_files"].find_one({"_id": path.relative_to(landing).as_posix()})
        if entry is not None:
            assert entry["sha256"] == ledger.file_digest(path)[0]
    again = ingest_files(db, landing, landing_files(landing), safeguard, now=NOW)
    assert again.refused == [] and again.files == []
    assert hygiene.erase_sessions(db, default_tokeniser(), [victim], landing) == dict.fromkeys(counts, 0)
    assert Counter(doc["reason"] for doc in db["quarantine"].find()) == Counter()
