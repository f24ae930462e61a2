"""Landing records without a database: validation, every bad-record kind, scrubbing, tokens, line reading."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import io
import json

import pytest
from stdnum import luhn

from paydata.crypto import KeyRing, Tokeniser
from paydata.crypto.pii import find_pii
from paydata.nosql.documents import collection_validator
from paydata.nosql.loader import _lines
from paydata.nosql.records import (
    REASONS,
    Reject,
    check_line,
    compile_check,
    record_types,
    stored_schema,
    validate,
)
from paydata.nosql.scrub import KnownValues, Safeguard, scrub_text

TYPES = record_types()
TOKENISER = Tokeniser(KeyRing({"t1": bytes(range(32))}))

GOOD = {
    "sessions": {"session_id": "sess_1", "merchant_id": 7, "started_at": "2026-01-01T10:00:00Z",
                 "ended_at": "2026-01-01T10:05:00Z", "ip": "203.0.113.9", "charge_count": 1, "geo": {"country_code": "FR"},
                 "device": {"device_id": "dev_1", "type": "mobile", "os": "iOS 18", "browser": "Safari", "screen": "390x844"}},
    "events": {"session_id": "sess_1", "event": "payment_submit", "seq": 11, "ts": "2026-01-01T10:04:00Z",
               "properties": {"amount": 1200, "currency": "EUR", "outcome": "succeeded"}},
    "telemetry": {"device_id": "dev_1", "session_id": "sess_1", "seq": 0, "ts": "2026-01-01T10:00:00Z",
                  "network": "wifi", "rtt_ms": 41.5, "ip": "203.0.113.9"},
    "feedback": {"feedback_id": "fb_0123456789abcdef", "session_id": "sess_1", "merchant_id": 7, "rating": 2,
                 "channel": "web", "created_at": "2026-01-02T10:00:00Z", "charge_created_at": "2026-01-01T10:04:00Z",
                 "text": "Slow checkout."},
    "app_logs": {"ts": "2026-01-01T10:04:00Z", "level": "ERROR", "service": "payments-api", "event": "charge.created",
                 "session_id": "sess_1", "merchant_id": 7, "status": "failed", "failure_code": "card_declined",
                 "latency_ms": 5012.5, "http_status": 402, "request_id": "req_00000000000000ff",
                 "message": "upstream timeout, retried"},
}


def line(record) -> bytes:
    return json.dumps(record).encode()


def test_every_record_type_has_a_good_example_and_the_examples_pass():
    assert set(GOOD) == set(TYPES.types)
    for kind, record in GOOD.items():
        assert check_line(line(record), kind, TYPES) == (kind, record)


def _mutate(kind, path, value=None, delete=False):
    record = copy.deepcopy(GOOD[kind])
    parent = record
    for part in path[:-1]:
        parent = parent[part]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return line(record)


@pytest.mark.parametrize(
    ("kind", "raw", "reason", "detail"),
    [
        ("sessions", b'{"session_id": "s", ', "bad_json", None),
        ("sessions", b"\xff\xfe{}", "invalid_utf8", "byte 0"),
        ("sessions", b"[1, 2]", "not_an_object", "list"),
        ("sessions", b"", "bad_json", None),
        ("clicks", line({"a": 1}), "unknown_record_type", "file kind"),
        ("sessions", line({**GOOD["sessions"], "type": "pageviews"}), "unknown_record_type", "type field"),
        ("sessions", _mutate("sessions", ["ip"], delete=True), "missing_field", "$/ip:required"),
        ("sessions", _mutate("sessions", ["device", "device_id"], delete=True), "missing_field",
         "device/device_id:required"),
        ("events", _mutate("events", ["seq"], "11"), "wrong_type", "seq:type"),
        ("feedback", _mutate("feedback", ["rating"], True), "wrong_type", "rating:type"),
        ("feedback", _mutate("feedback", ["rating"], 9), "invalid_value", "rating:maximum"),
        ("feedback", _mutate("feedback", ["channel"], "fax"), "invalid_value", "channel:enum"),
        ("feedback", _mutate("feedback", ["text"], "x" * 2001), "oversize_field", "text:maxLength"),
        ("feedback", _mutate("feedback", ["email"], "ana@example.com"), "unknown_field", "$:additionalProperties"),
        ("app_logs", _mutate("app_logs", ["request_id"], "req-1"), "invalid_value", "request_id:pattern"),
        ("events", _mutate("events", ["properties", "page"], "/" + "p" * 300), "oversize_field",
         "properties/page:maxLength"),
    ],
)
def test_bad_records_are_rejected_with_a_reason(kind, raw, reason, detail):
    result = check_line(raw, kind, TYPES)
    assert isinstance(result, Reject) and result.reason == reason
    if detail is not None:
        assert result.detail == detail
    assert reason in REASONS


def test_a_reject_never_carries_a_value():
    raw = _mutate("feedback", ["customer_email"], "ana.secret@example.com")
    result = check_line(raw, "feedback", TYPES)
    assert result.reason == "unknown_field" and "ana" not in result.detail and "example" not in result.detail


def test_oversize_and_truncated_lines():
    big = line({**GOOD["feedback"], "text": "y" * (TYPES.max_line_bytes + 10)})
    assert check_line(big, "feedback", TYPES).reason == "oversize_record"
    assert check_line(line(GOOD["feedback"]), "feedback", TYPES, terminated=False).reason == "truncated_line"


def test_compiled_check_agrees_with_jsonschema_on_many_variants():
    """The fast path must accept exactly what the jsonschema validator accepts."""
    variants = []
    for kind, record in GOOD.items():
        for key in list(record):
            for replacement in (None, "", "x" * 70, 0, -1, 1.5, True, [], {}, "2026-01-01T00:00:00Z", 10**9):
                variants.append((kind, {**record, key: replacement}))
            variants.append((kind, {k: v for k, v in record.items() if k != key}))
        variants.append((kind, {**record, "extra": 1}))
    assert len(variants) > 400
    for kind, record in variants:
        record_type = TYPES[kind]
        assert record_type.is_valid(record) == record_type.validator.is_valid(record), (kind, record)


def test_compile_check_refuses_keywords_it_does_not_implement():
    with pytest.raises(ValueError, match="may use"):
        compile_check({"type": "object", "oneOf": []})


def test_stored_schema_turns_tokens_and_datetimes_into_bson_types():
    stored = stored_schema(TYPES["sessions"].schema)
    assert stored["properties"]["session_id"]["pattern"] == "^tok_"
    assert stored["properties"]["started_at"] == {"bsonType": "date"}
    assert stored["properties"]["device"]["properties"]["device_id"]["pattern"] == "^tok_"
    assert stored["properties"]["device"]["additionalProperties"] is False
    assert "type" not in stored["properties"]
    feedback = collection_validator("feedback", TYPES)
    assert feedback["properties"]["_id"]["pattern"] == "^fb_[0-9a-f]{16}$"
    assert feedback["properties"]["text"]["maxLength"] == 2000
    assert "feedback_id" not in feedback["properties"]
    sessions = collection_validator("sessions", TYPES)
    assert sessions["properties"]["events"]["maxItems"] == 100
    assert "session_id" not in sessions["properties"]["events"]["items"]["properties"]


# --- making records safe ------------------------------------------------------------------------

def test_free_text_loses_emails_cards_phones_ips_and_known_names():
    body = "455673758689985"
    pan = body + luhn.calc_check_digit(body)
    known = KnownValues.from_plaintext(TOKENISER, ["Ana de Souza", "Li Wei"], ["020 7946 0018", "767.512.1904x102"])
    text = (f"Ana de Souza here, mail ana.souza@example.org, card {pan}, call +44 20 7946 0958 or "
            f"020 7946 0018 or 767.512.1904, from 198.51.100.23. Also li wei. Regards, ANA SOUZA")
    scrubbed = scrub_text(text, known)
    assert find_pii(scrubbed) == []
    for value in ("Ana", "Souza", "souza", "ana.souza", pan, "7946", "1904", "198.51", "li wei"):
        assert value not in scrubbed, value
    assert scrubbed.count("[name]") == 3 and "[email]" in scrubbed and "[pan]" in scrubbed and "[ip]" in scrubbed
    assert scrubbed.endswith("Also [name]. Regards, [name]") and "card" in scrubbed


def test_names_that_are_not_known_customers_and_plain_numbers_stay():
    known = KnownValues.from_plaintext(TOKENISER, ["Ana de Souza"], ["020 7946 0018"])
    text = "Order 12345678 for Maria Lopez arrived on 2026-01-02"
    assert scrub_text(text, known) == text


def test_identifiers_become_the_tokens_cdc_uses():
    guard = Safeguard(TOKENISER)
    safe = guard.make_safe(TYPES["sessions"], copy.deepcopy(GOOD["sessions"]))
    assert safe["session_id"] == TOKENISER.tokenise("sess_1", domain="session")
    assert safe["device"]["device_id"] == TOKENISER.tokenise("dev_1", domain="device")
    assert safe["ip"] == TOKENISER.tokenise("203.0.113.9", domain="ip")
    assert safe["started_at"] == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    assert safe["device"]["os"] == "iOS 18"


@pytest.mark.parametrize(
    ("kind", "path", "value", "reason"),
    [
        ("sessions", ["ip"], "999.1.1.1", "invalid_value"),
        ("events", ["ts"], "yesterday", "invalid_value"),
        ("events", ["ts"], "2026-01-01T10:00:00", "invalid_value"),   # naive: no zone
        ("sessions", ["device", "browser"], "Chrome ana@example.com", "pii_in_field"),
        ("app_logs", ["status"], "card 4111 1111 1111 1111", "pii_in_field"),
    ],
)
def test_records_that_cannot_be_made_safe_are_rejected(kind, path, value, reason):
    record = json.loads(_mutate(kind, path, value))
    assert validate(TYPES[kind], record) is None
    result = Safeguard(TOKENISER).make_safe(TYPES[kind], record)
    assert isinstance(result, Reject) and result.reason == reason
    assert value not in result.detail


def test_free_text_fields_are_scrubbed_not_rejected():
    record = {**GOOD["app_logs"], "message": "retry for ana@example.com from 10.0.0.1"}
    safe = Safeguard(TOKENISER).make_safe(TYPES["app_logs"], record)
    assert safe["message"] == "retry for [email] from [ip]"
    assert record["message"].startswith("retry for ana")  # the input is not modified


# --- reading lines ---------------------------------------------------------------------------

def test_lines_reports_offsets_truncation_and_skips_oversize_lines_in_blocks():
    limit = 100
    huge = b"z" * 1000
    data = b'{"a": 1}\n' + huge + b"\n" + b"\n" + b'{"b": 2'
    items = list(_lines(io.BytesIO(data), 0, limit))
    assert [(body, terminated) for body, terminated, _sha, _n, _end in items] == [
        (b'{"a": 1}', True), (None, True), (b"", True), (b'{"b": 2', False)]
    assert items[1][2] == hashlib.sha256(huge).hexdigest() and items[1][3] == 1000
    assert [end for *_rest, end in items] == [9, 1010, 1011, len(data)]
    resumed = list(_lines(io.BytesIO(data), 1010, limit))
    assert [body for body, *_rest in resumed] == [b"", b'{"b": 2']


def test_generated_landing_files_are_private_and_every_line_passes_its_schema(tmp_path, monkeypatch):
    import os

    from paydata.crypto import TOKEN_KEY_FILE_ENV, TOKEN_KEY_INLINE_ENV, new_keyfile, reload_keys
    from paydata.generator import TrafficConfig
    from paydata.generator.landing import write_landing
    from paydata.generator.reference import MerchantProfile, chargeable_currencies
    from paydata.generator.traffic import TrafficGenerator

    new_keyfile(tmp_path / "token", "t9")  # the generator derives card tokens with it
    monkeypatch.setenv(TOKEN_KEY_FILE_ENV, str(tmp_path / "token"))
    monkeypatch.delenv(TOKEN_KEY_INLINE_ENV, raising=False)
    reload_keys()
    generator = TrafficGenerator(TrafficConfig(payments=300, start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), days=1,
                                               seed=4), [MerchantProfile(1, "5411", "US", "USD")], chargeable_currencies())
    paths = write_landing(tmp_path / "landing", generator)
    assert all(os.stat(path).st_mode & 0o777 == 0o600 for path in paths)
    assert all(os.stat(path.parent).st_mode & 0o777 == 0o700 for path in paths)
    kinds = {path.parent.name for path in paths}
    assert kinds == {*TYPES.types, *TYPES.ignored_kinds}
    sessions = set()
    for path in sorted(paths):
        kind = path.parent.name
        if kind in TYPES.ignored_kinds:
            continue
        for raw in path.read_bytes().splitlines():
            result = check_line(raw, kind, TYPES)
            assert not isinstance(result, Reject), (kind, result)
            if kind == "sessions":
                sessions.add(result[1]["session_id"])
            elif kind == "telemetry":
                assert result[1]["session_id"] in sessions
    monkeypatch.undo()
    reload_keys()
