"""The document model of the ingest collections and how a batch of safe records is written to it.

* ``sessions``: one document per session, ``_id`` = session token, ``bucket: 0``, the session's
  attributes with the device embedded, and its events in ``events`` (seq 0-99, sorted by seq).
  Events with seq 100 and above go to overflow buckets ``<token>:<seq // 100>`` (``bucket`` 1-99,
  same ``session_id``), so no array holds more than :data:`EVENTS_PER_BUCKET` events.
* ``telemetry``: samples bucketed per device and hour, ``_id`` = ``<device token>:<YYYYMMDDHH>:<n>``,
  at most :data:`SAMPLES_PER_BUCKET` samples per bucket; a full bucket is followed by ``n + 1``.
* ``feedback``: one document per feedback, ``_id`` = feedback_id, with the references
  ``session_id`` (token) and ``charge_created_at`` (with the session, the charge it is about).
* ``app_logs``: one document per log line, ``_id`` = request_id, ``ingested_at`` under a TTL index.

Every writer reads the keys the batch touches first (``$in`` queries of at most
:data:`IN_CHUNK` values: SecantusDB slows down quadratically with longer lists), so a record
already stored is counted as a duplicate and never written twice, and writes with guards
(``$nin`` on the new keys, ``count`` of a bucket) that make a concurrent writer fail loudly
(:class:`ConcurrentIngest`) instead of losing or doubling data.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from pymongo import InsertOne, UpdateOne

from paydata.nosql.records import RecordTypes, stored_schema

EVENTS_PER_BUCKET = 100
SAMPLES_PER_BUCKET = 200
IN_CHUNK = 100
INGEST_COLLECTIONS = ("sessions", "telemetry", "feedback", "app_logs")


class ConcurrentIngest(RuntimeError):
    """A document changed between a batch's read and its write: another ingest is writing the same keys."""


@dataclass
class Plan:
    """Writes of one batch into one collection, with the outcome counted per tag (the file of each line).

    Items are ``(record type, stored record, tag)``; ``loaded[tag]`` and ``duplicates[tag]`` count
    the lines of each tag, so one batch can carry lines of several files.
    """

    collection: str
    operations: list = field(default_factory=list)
    expected_matches: int = 0
    loaded: Counter = field(default_factory=Counter)
    duplicates: Counter = field(default_factory=Counter)


def chunked(values: list, size: int = IN_CHUNK):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def find_in(collection, field_name: str, values: list, projection: dict, session=None) -> list[dict]:
    found = []
    for part in chunked(sorted(set(values))):
        found += collection.find({field_name: {"$in": part}}, projection, session=session)
    return found


# --- sessions and their events ----------------------------------------------------------------

def _event_bucket(session_token: str, seq: int) -> tuple[str, int]:
    bucket = seq // EVENTS_PER_BUCKET
    return (session_token if bucket == 0 else f"{session_token}:{bucket}"), bucket


def plan_sessions(database, items: list[tuple[str, dict, Any]], now: dt.datetime, session=None) -> Plan:
    """``items`` are ``(type, stored record, tag)`` of types ``sessions`` and ``events``.

    A session whose header and events are in the same batch becomes one inserted document; events
    of a stored session are pushed into it, a header into a stored events-only document is set.
    """
    plan = Plan("sessions")
    headers: dict[str, tuple[dict, Any]] = {}
    events: dict[str, dict[int, tuple[dict, Any]]] = defaultdict(dict)
    buckets: dict[str, tuple[str, int]] = {}
    for kind, record, tag in items:
        token = record["session_id"]
        if kind == "sessions":
            if token in headers:
                plan.duplicates[tag] += 1
            else:
                headers[token] = (record, tag)
            continue
        doc_id, bucket = _event_bucket(token, record["seq"])
        buckets[doc_id] = (token, bucket)
        if record["seq"] in events[doc_id]:
            plan.duplicates[tag] += 1
        else:
            element = {key: value for key, value in record.items() if key != "session_id"}
            events[doc_id][record["seq"]] = (element, tag)
    ids = list({*headers, *events})
    stored = {doc["_id"]: doc for doc in find_in(
        database["sessions"], "_id", ids, {"started_at": 1, "events.seq": 1}, session)}
    for doc_id in ids:
        existing = stored.get(doc_id)
        header, header_tag = headers.get(doc_id, (None, None))
        if header is not None and existing is not None and "started_at" in existing:
            plan.duplicates[header_tag] += 1
            header = None
        elif header is not None:
            plan.loaded[header_tag] += 1
        stored_seqs = {event["seq"] for event in (existing or {}).get("events", [])}
        new_events = []
        for seq, (element, tag) in sorted(events.get(doc_id, {}).items()):
            if seq in stored_seqs:
                plan.duplicates[tag] += 1
            else:
                plan.loaded[tag] += 1
                new_events.append(element)
        if header is None and not new_events:
            continue
        token, bucket = buckets.get(doc_id, (doc_id, 0))
        fields = {key: value for key, value in (header or {}).items() if key != "session_id"}
        if existing is None:
            plan.operations.append(InsertOne({"_id": doc_id, "session_id": token, "bucket": bucket, **fields,
                                              "events": new_events, "ingested_at": now}))
            continue
        guard: dict[str, Any] = {"_id": doc_id}
        update: dict[str, Any] = {}
        if header is not None:
            guard["started_at"] = {"$exists": False}
            update["$set"] = fields
        if new_events:
            guard["events.seq"] = {"$nin": [event["seq"] for event in new_events]}
            update["$push"] = {"events": {"$each": new_events, "$sort": {"seq": 1}}}
        plan.operations.append(UpdateOne(guard, update))
        plan.expected_matches += 1
    return plan


# --- telemetry ---------------------------------------------------------------------------------

def _slot(device_token: str, ts: dt.datetime) -> tuple[str, dt.datetime]:
    hour = ts.replace(minute=0, second=0, microsecond=0)
    return f"{device_token}:{hour:%Y%m%d%H}", hour


def plan_telemetry(database, items: list[tuple[str, dict, Any]], now: dt.datetime, session=None) -> Plan:
    plan = Plan("telemetry")
    by_slot: dict[str, list[tuple[dict, Any]]] = defaultdict(list)
    slot_info: dict[str, tuple[str, dt.datetime]] = {}
    seen: set[tuple[str, int]] = set()
    for _kind, record, tag in items:
        key = (record["session_id"], record["seq"])
        if key in seen:
            plan.duplicates[tag] += 1
            continue
        seen.add(key)
        slot, hour = _slot(record["device_id"], record["ts"])
        slot_info[slot] = (record["device_id"], hour)
        by_slot[slot].append(({k: v for k, v in record.items() if k != "device_id"}, tag))
    stored: dict[str, list[dict]] = defaultdict(list)
    for doc in find_in(database["telemetry"], "slot", list(by_slot),
                       {"slot": 1, "bucket": 1, "count": 1, "samples.session_id": 1, "samples.seq": 1}, session):
        stored[doc["slot"]].append(doc)
    for slot, samples in by_slot.items():
        docs = sorted(stored.get(slot, []), key=lambda doc: doc["bucket"])
        present = {(sample["session_id"], sample["seq"]) for doc in docs for sample in doc.get("samples", [])}
        new = []
        for sample, tag in samples:
            if (sample["session_id"], sample["seq"]) in present:
                plan.duplicates[tag] += 1
            else:
                plan.loaded[tag] += 1
                new.append(sample)
        device, hour = slot_info[slot]
        if docs and docs[-1]["count"] < SAMPLES_PER_BUCKET and new:
            last = docs[-1]
            room = SAMPLES_PER_BUCKET - last["count"]
            head, new = new[:room], new[room:]
            plan.operations.append(UpdateOne({"_id": last["_id"], "count": last["count"]},
                                             {"$push": {"samples": {"$each": head}}, "$inc": {"count": len(head)}}))
            plan.expected_matches += 1
        bucket = docs[-1]["bucket"] + 1 if docs else 0
        for part in chunked(new, SAMPLES_PER_BUCKET):
            plan.operations.append(InsertOne({"_id": f"{slot}:{bucket}", "slot": slot, "device_id": device,
                                              "hour": hour, "bucket": bucket, "count": len(part),
                                              "samples": part, "ingested_at": now}))
            bucket += 1
    return plan


# --- one document per record: feedback, app_logs ------------------------------------------------

def plan_single(collection: str, key: str, database, items: list[tuple[str, dict, Any]], now: dt.datetime,
                session=None) -> Plan:
    plan = Plan(collection)
    new: dict[Any, tuple[dict, Any]] = {}
    for _kind, record, tag in items:
        if record[key] in new:
            plan.duplicates[tag] += 1
        else:
            new[record[key]] = (record, tag)
    for doc in find_in(database[collection], "_id", list(new), {"_id": 1}, session):
        plan.duplicates[new.pop(doc["_id"])[1]] += 1
    for doc_id, (record, tag) in new.items():
        plan.loaded[tag] += 1
        plan.operations.append(InsertOne({"_id": doc_id, **{k: v for k, v in record.items() if k != key},
                                          "ingested_at": now}))
    return plan


def plan_collection(collection: str, database, items: list[tuple[str, dict, Any]], now: dt.datetime, session=None) -> Plan:
    """The writes of ``items`` (all bound for ``collection``), after reading what is already stored."""
    if collection == "sessions":
        return plan_sessions(database, items, now, session)
    if collection == "telemetry":
        return plan_telemetry(database, items, now, session)
    if collection == "feedback":
        return plan_single("feedback", "feedback_id", database, items, now, session)
    if collection == "app_logs":
        return plan_single("app_logs", "request_id", database, items, now, session)
    raise ValueError(f"no document model for collection {collection!r}")


def execute(database, plan: Plan, session=None) -> None:
    """Run a plan's writes (unordered); raise ConcurrentIngest if a guarded update matched nothing."""
    if not plan.operations:
        return
    result = database[plan.collection].bulk_write(plan.operations, ordered=False, session=session)
    if result.matched_count < plan.expected_matches:
        raise ConcurrentIngest(
            f"{plan.collection}: {plan.expected_matches - result.matched_count} documents changed during the "
            "batch; another ingest is writing the same keys. The batch is not committed; rerun."
        )


# --- validators ------------------------------------------------------------------------------

def _without(schema: dict[str, Any], name: str) -> dict[str, Any]:
    properties = {k: v for k, v in schema["properties"].items() if k != name}
    out = {**schema, "properties": properties}
    if "required" in schema:
        out["required"] = [k for k in schema["required"] if k != name]
    return out


def collection_validator(collection: str, types: RecordTypes) -> dict[str, Any]:
    """``$jsonSchema`` of an ingest collection, from the stored form of its record types."""
    token = {"bsonType": "string", "pattern": "^tok_"}
    date = {"bsonType": "date"}
    if collection == "sessions":
        header = stored_schema(types["sessions"].schema)
        event = _without(stored_schema(types["events"].schema), "session_id")
        properties = {**header["properties"], "session_id": token,
                      "bucket": {"bsonType": "int", "minimum": 0, "maximum": 99},
                      "events": {"bsonType": "array", "maxItems": EVENTS_PER_BUCKET, "items": event},
                      "ingested_at": date}
        return {"bsonType": "object", "required": ["_id", "session_id", "bucket", "events"], "properties": properties}
    if collection == "telemetry":
        sample = _without(stored_schema(types["telemetry"].schema), "device_id")
        return {"bsonType": "object",
                "required": ["_id", "slot", "device_id", "hour", "bucket", "count", "samples"],
                "properties": {"slot": {"bsonType": "string", "maxLength": 120}, "device_id": token, "hour": date,
                               "bucket": {"bsonType": "int", "minimum": 0},
                               "count": {"bsonType": "int", "minimum": 1, "maximum": SAMPLES_PER_BUCKET},
                               "samples": {"bsonType": "array", "maxItems": SAMPLES_PER_BUCKET, "items": sample},
                               "ingested_at": date}}
    if collection in ("feedback", "app_logs"):
        key = "feedback_id" if collection == "feedback" else "request_id"
        schema = stored_schema(types[collection].schema)
        id_spec = schema["properties"].pop(key)
        schema["properties"]["_id"] = id_spec
        schema["properties"]["ingested_at"] = date
        schema["required"] = ["_id", *[k for k in schema.get("required", []) if k != key], "ingested_at"]
        return schema
    raise ValueError(f"no derived validator for collection {collection!r}")
