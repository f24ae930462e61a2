"""PII finder and scrubber for free text."""

from __future__ import annotations

import pytest
from stdnum import luhn

from paydata.crypto import InvalidInput
from paydata.crypto.pii import find_pii, scrub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me: Alice.Smith+shop@Example.co.uk.", [("email", "Alice.Smith+shop@Example.co.uk")]),
        ("card 4111 1111 1111 1111 expired", [("pan", "4111 1111 1111 1111")]),
        ("card 4111-1111-1111-1111", [("pan", "4111-1111-1111-1111")]),
        ("amex 378282246310005.", [("pan", "378282246310005")]),
        ("two 4111111111111111 5555555555554444", [("pan", "4111111111111111"), ("pan", "5555555555554444")]),
        ("call +44 20 7946 0958 now", [("phone", "+44 20 7946 0958")]),
        ("call +14155552671", [("phone", "+14155552671")]),
        ("call (555) 123-4567 or 555-765-4321", [("phone", "(555) 123-4567"), ("phone", "555-765-4321")]),
        ("from 192.168.1.20, then", [("ipv4", "192.168.1.20")]),
        ("from 2001:db8::8a2e:370:7334 and ::1", [("ipv6", "2001:db8::8a2e:370:7334"), ("ipv6", "::1")]),
        ("mapped ::ffff:10.0.0.1 here", [("ipv6", "::ffff:10.0.0.1")]),
        ("4111111111111111@example.com", [("email", "4111111111111111@example.com")]),
    ],
)
def test_true_positives(text, expected):
    assert find_pii(text) == expected


ORDINARY_TEXT = [
    "Order ORD-2024-000123 for 1,234.56 EUR was paid on 2024-01-15 at 12:30:45.",
    "Refund of 99.90 for order 48213, 3 items, invoice INV/2024/0042.",
    # Luhn-valid on purpose: would be flagged without the card-prefix and identifier rules.
    "created_at_ms 1700000000004 batch 1",
    "Order ORD-4202401150001236 shipped",
    "ref 4202401150001236-A delayed",
    "version 1.2.3 build 20240115",
    "quantity 1 234 567 units",
    "card ending 1111, expiry 12/27",
    "ip 999.1.1.1 is not an address",
    "uuid 550e8400-e29b-41d4-a716-446655440000",
    "all zeros 0000 0000 0000 0000",
]


@pytest.mark.parametrize("text", ORDINARY_TEXT)
def test_no_false_positives_on_ordinary_numbers(text):
    assert find_pii(text) == []
    assert scrub(text) == text


def test_ordinary_luhn_fixtures_really_pass_luhn():
    # Guards the two false-positive cases above from silently becoming trivial.
    assert luhn.is_valid("1700000000004")
    assert luhn.is_valid("4202401150001236")


def test_non_luhn_digit_runs_are_not_pans():
    assert find_pii("card 4111 1111 1111 1112") == []


def test_scrub_replaces_every_kind():
    text = (
        "I am bob@example.com, card 5555 5555 5555 4444, phone +1 415 555 2671, "
        "from 10.1.2.3 / fe80::1. Order ORD-2024-000123 total 12.50."
    )
    assert scrub(text) == (
        "I am [email], card [pan], phone [phone], from [ip] / [ip]. Order ORD-2024-000123 total 12.50."
    )


def test_scrub_keeps_text_without_pii():
    assert scrub("") == ""
    assert scrub("Great service, thanks! 5 stars") == "Great service, thanks! 5 stars"


@pytest.mark.parametrize("bad", [None, b"bytes", 123])
def test_non_text_is_rejected(bad):
    with pytest.raises(InvalidInput, match="must be a string"):
        find_pii(bad)
