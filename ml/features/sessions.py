"""Session signals before a payment, from the Mongo ``sessions`` documents (time-bounded).

Shape (the landing ingest): one document per session, ``_id`` = session token, ``bucket`` 0, with
``started_at``, ``device {device_id, type, ...}``, ``ip`` (token), ``geo {country_code}`` and
``events [{event, seq, ts, properties}]``; events past seq 99 live in overflow buckets
(``bucket`` >= 1) of the same ``session_id``. A payment at time T sees only what happened strictly
before T: events with ``ts < T``, and the session's attributes only if it started before T.
:func:`session_signals` is pure; the offline build and a scorer call the same function.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from ml.features.definitions import Definitions

IN_CHUNK = 1000
PROJECTION = {"session_id": 1, "bucket": 1, "started_at": 1, "device.type": 1, "geo.country_code": 1,
              "events.ts": 1, "events.event": 1}


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def session_signals(documents: Iterable[dict], before: dt.datetime) -> dict[str, object]:
    """Signals of one session (all its bucket documents) as known strictly before ``before``.

    Returns ``events_before`` (events with ts < before), ``seconds_since_start`` (before - started_at),
    ``ip_country_code`` and ``device_type``; all None when the session is unknown or started at or
    after ``before``.
    """
    before = _aware(before)
    head = None
    events = 0
    for document in documents:
        if document.get("bucket", 0) == 0:
            head = document
        events += sum(1 for event in document.get("events") or []
                      if event.get("ts") is not None and _aware(event["ts"]) < before)
    started = _aware(head.get("started_at")) if head else None
    if started is None or started >= before:
        return {"events_before": None, "seconds_since_start": None, "ip_country_code": None,
                "device_type": None}
    return {"events_before": events,
            "seconds_since_start": (before - started).total_seconds(),
            "ip_country_code": (head.get("geo") or {}).get("country_code"),
            "device_type": (head.get("device") or {}).get("type")}


def encode_signals(definitions: Definitions, signals: dict[str, object]) -> dict[str, object]:
    """Feature name -> value for the definitions' session features (encodings applied)."""
    values = {}
    for item in definitions.session:
        value = signals.get(item["signal"])
        encoding = item.get("encoding")
        if encoding is not None:
            value = None if value is None else encoding.get(value)
        values[item["name"]] = value
    return values


def fetch_sessions(database, tokens: list[str]) -> dict[str, list[dict]]:
    """All bucket documents of the given session tokens, grouped by token (one indexed ``$in`` per chunk)."""
    found: dict[str, list[dict]] = {}
    unique = sorted({t for t in tokens if t})
    for start in range(0, len(unique), IN_CHUNK):
        cursor = database["sessions"].find({"session_id": {"$in": unique[start:start + IN_CHUNK]}}, PROJECTION)
        for document in cursor:
            found.setdefault(document["session_id"], []).append(document)
    return found


def signals_for_charges(definitions: Definitions, database, charges: list[tuple[int, str, dt.datetime]]
                        ) -> list[dict[str, object]]:
    """One encoded signal row (with ``charge_id``) per ``(charge_id, session token, created_at)``."""
    sessions = fetch_sessions(database, [token for _, token, _ in charges]) if database is not None else {}
    rows = []
    for charge_id, token, created_at in charges:
        row = encode_signals(definitions, session_signals(sessions.get(token, []), created_at))
        row["charge_id"] = charge_id
        rows.append(row)
    return rows
