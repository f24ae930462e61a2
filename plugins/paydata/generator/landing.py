"""NoSQL raw material: JSON-lines landing files per kind and chunk, deterministic under the seed.

Layout: ``<landing dir>/<kind>/<kind>-<batch key>-<chunk:05d>.jsonl`` for the kinds
``sessions``, ``events``, ``telemetry``, ``feedback``, ``app_logs`` and ``fraud_labels`` (format
in ``docs/generator.md``). Keys are sorted and timestamps are ISO 8601 UTC, so equal configs give
byte-identical files. Files are written to a temporary name and renamed, so a reader never sees a
half-written file and a rerun simply replaces them. They hold raw personal data, so files are
created with mode 0600 and folders with 0700.

Sessions are the ones named by the charges' ``session_id``. Feedback text is free text as
customers write it: sometimes it contains the customer's email address, name or phone number, an
IP address or a card number (never a card of the generated traffic: a fresh Luhn-valid decoy),
which is what the downstream scrubbing must catch.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

from stdnum import luhn

from paydata.generator.identities import derive_seed
from paydata.generator.traffic import TrafficChunk, TrafficGenerator

LANDING_KINDS = ("sessions", "events", "telemetry", "feedback", "app_logs", "fraud_labels")
FILE_MODE = 0o600
DIR_MODE = 0o700
NETWORKS = ("wifi", "cellular", "ethernet")
FEEDBACK_RATE = 0.03

_FEEDBACK_TEMPLATES = {
    1: ("I was charged twice for the same order, please refund!",
        "Payment failed three times and then my bank blocked the card. Terrible.",
        "Never received my order and nobody answers."),
    2: ("Checkout was slow and the page froze after I entered my card.",
        "The refund is taking forever."),
    3: ("Payment worked but the confirmation email never arrived.",
        "OK experience, the 3-D Secure step was confusing."),
    4: ("Quick checkout, would be nice to save my card.", "Smooth payment, delivery a bit late."),
    5: ("Fast and easy payment, thanks!", "Great service, paid in seconds."),
}


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _decoy_card_number(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    digits = body + luhn.calc_check_digit(body)
    return " ".join(digits[i : i + 4] for i in range(0, 16, 4))


def landing_records(generator: TrafficGenerator, chunk: TrafficChunk) -> dict[str, list[dict]]:
    """The landing documents of one chunk, per kind (pure and deterministic)."""
    rng = random.Random(derive_seed("landing", chunk.batch_key, chunk.index))
    # Telemetry has its own stream, so adding it left every other kind's content unchanged.
    telemetry_rng = random.Random(derive_seed("landing-telemetry", chunk.batch_key, chunk.index))
    customers = chunk.customers
    sessions: dict[str, dict] = {}
    events, telemetry, feedback, logs, labels = [], [], [], [], []
    for charge in chunk.charges:
        device = chunk.devices[charge.device_id]
        session = sessions.get(charge.session_id)
        if session is None:
            started = charge.created_at - dt.timedelta(seconds=rng.uniform(30, 900))
            session = {
                "session_id": charge.session_id,
                "merchant_id": charge.merchant_id,
                "started_at": _iso(started),
                "ended_at": _iso(charge.created_at),
                "device": {"device_id": device.device_id, "type": device.device_type, "os": device.os,
                           "browser": device.browser, "screen": device.screen},
                "ip": charge.ip_address,
                "geo": {"country_code": generator.landing_ip_country(charge.ip_address)},
                "charge_count": 0,
            }
            sessions[charge.session_id] = session
            network = telemetry_rng.choice(NETWORKS if device.device_type != "mobile" else NETWORKS[:2])
            for seq in range(telemetry_rng.randint(1, 3)):
                telemetry.append({"device_id": device.device_id, "session_id": charge.session_id, "seq": seq,
                                  "ts": _iso(started + dt.timedelta(seconds=30 * seq)), "network": network,
                                  "rtt_ms": round(telemetry_rng.lognormvariate(4.0, 0.6), 1),
                                  "ip": charge.ip_address})
            for offset, name in enumerate(("page_view", "product_view", "add_to_cart", "checkout_start")):
                if name != "page_view" and rng.random() < 0.15:
                    break
                events.append({"session_id": charge.session_id, "event": name, "seq": offset,
                               "ts": _iso(started + dt.timedelta(seconds=20 * offset)),
                               "properties": {"page": f"/{name.replace('_', '-')}"}})
        session["charge_count"] += 1
        session["ended_at"] = _iso(charge.created_at)
        events.append({"session_id": charge.session_id, "event": "payment_submit",
                       "seq": 10 + session["charge_count"], "ts": _iso(charge.created_at),
                       "properties": {"amount": charge.amount, "currency": charge.currency_code,
                                      "outcome": charge.status}})
        level = "INFO" if charge.status != "failed" else "WARN"
        latency = round(rng.lognormvariate(5.0, 0.5), 1)
        if rng.random() < 0.002:
            level, latency = "ERROR", round(latency + 5000, 1)
        logs.append({"ts": _iso(charge.created_at), "level": level, "service": "payments-api",
                     "event": "charge.created", "session_id": charge.session_id,
                     "merchant_id": charge.merchant_id, "status": charge.status,
                     "failure_code": charge.failure_code, "latency_ms": latency,
                     "http_status": 402 if charge.status == "failed" else 200,
                     "request_id": f"req_{rng.getrandbits(64):016x}",
                     "message": "upstream timeout, retried" if level == "ERROR" else f"charge {charge.status}"})
        labels.append({"session_id": charge.session_id, "charge_created_at": _iso(charge.created_at),
                       "is_fraud": charge.fraud_pattern != "none", "fraud_pattern": charge.fraud_pattern})
        if rng.random() < FEEDBACK_RATE:
            rating = 1 if charge.status == "failed" else rng.choice((1, 2, 3, 4, 4, 5, 5, 5))
            text = rng.choice(_FEEDBACK_TEMPLATES[rating])
            roll = rng.random()
            identity = customers[charge.customer_local].identity
            if roll < 0.12:
                text += f" Contact me at {identity.email}"
            elif roll < 0.17:
                text += f" My card {_decoy_card_number(rng)} keeps getting declined."
            elif roll < 0.22:
                text += f" Regards, {identity.name}"
            elif roll < 0.25:
                text += f" Call me back on {identity.phone}"
            elif roll < 0.27:
                text += f" It failed from my connection {charge.ip_address}"
            feedback.append({"feedback_id": f"fb_{rng.getrandbits(64):016x}", "session_id": charge.session_id,
                             "merchant_id": charge.merchant_id, "rating": rating,
                             "charge_created_at": _iso(charge.created_at),
                             "channel": rng.choice(("web", "email", "app")),
                             "created_at": _iso(charge.created_at + dt.timedelta(hours=rng.uniform(1, 72))),
                             "text": text})
    return {"sessions": list(sessions.values()), "events": events, "telemetry": telemetry, "feedback": feedback,
            "app_logs": logs, "fraud_labels": labels}


def landing_path(landing_dir: Path, kind: str, batch_key: str, chunk_index: int) -> Path:
    return Path(landing_dir) / kind / f"{kind}-{batch_key}-{chunk_index:05d}.jsonl"


def write_chunk_landing(landing_dir: Path, generator: TrafficGenerator, chunk: TrafficChunk) -> list[Path]:
    """Write one chunk's landing files (atomically, replacing earlier ones); returns their paths."""
    written = []
    for kind, records in landing_records(generator, chunk).items():
        path = landing_path(landing_dir, kind, chunk.batch_key, chunk.index)
        for folder in (path.parent.parent, path.parent):
            folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            os.chmod(folder, DIR_MODE)
        temporary = path.with_suffix(".jsonl.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        os.fchmod(descriptor, FILE_MODE)  # an older temporary file keeps its mode through O_CREAT
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False))
                handle.write("\n")
        os.replace(temporary, path)
        written.append(path)
    return written


def write_landing(landing_dir: Path, generator: TrafficGenerator) -> list[Path]:
    """Every chunk's landing files for the generator's batch (no database needed)."""
    return [path for chunk in _chunks(generator) for path in write_chunk_landing(landing_dir, generator, chunk)]


def _chunks(generator: TrafficGenerator) -> Iterator[TrafficChunk]:
    yield from generator.chunks()


def default_landing_dir() -> Path:
    """``<stack dir>/landing`` (``PAYDATA_LANDING_DIR`` overrides)."""
    from paydata import settings

    return Path(os.environ.get("PAYDATA_LANDING_DIR", settings.stack_dir() / "landing"))
