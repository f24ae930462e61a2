"""Pure parts of paydata.oltp: card rules, fees, error translation, argument checks (no services)."""

from __future__ import annotations

import datetime as dt

import psycopg2
import pytest
from stdnum import luhn

from paydata.oltp._db import translate
from paydata.oltp.cards import check_expiry, detect_brand, luhn_complete, processing_fee
from paydata.oltp.errors import (
    ConcurrencyConflict,
    DatabaseError,
    IllegalTransition,
    InvalidRequest,
    RuleViolation,
)
from paydata.oltp.writers import run_writers


@pytest.mark.parametrize(
    ("digits", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3530111333300000", "jcb"),
        ("30569309025904", "diners"),
        ("6200000000000005", "unionpay"),
        ("9999999999999995", "unknown"),
        ("2720999999999996", "mastercard"),
        ("2721000000000004", "unknown"),
    ],
)
def test_detect_brand_by_iin_range(digits, brand):
    assert detect_brand(digits) == brand


def test_detect_brand_rejects_non_digits():
    with pytest.raises(InvalidRequest):
        detect_brand("4242-4242")


def test_expiry_is_valid_through_the_end_of_the_month():
    today = dt.date(2026, 5, 31)
    check_expiry(5, 2026, today)
    check_expiry(1, 2027, today)
    with pytest.raises(InvalidRequest, match="expired at the end of 2026-04"):
        check_expiry(4, 2026, today)
    with pytest.raises(InvalidRequest, match="exp_month"):
        check_expiry(0, 2027, today)
    with pytest.raises(InvalidRequest, match="four-digit"):
        check_expiry(1, 27, today)
    with pytest.raises(InvalidRequest, match="integer"):
        check_expiry("1", 2027, today)


@pytest.mark.parametrize(("amount", "fee"), [(1, 1), (100, 3), (10_000, 290), (34, 1), (1_000, 29)])
def test_processing_fee_rounds_up_and_never_exceeds_the_amount(amount, fee):
    assert processing_fee(amount) == fee
    assert 0 <= processing_fee(amount) <= amount


def test_luhn_complete_builds_valid_numbers():
    assert luhn_complete("424242424242424") == "4242424242424242"
    assert luhn.is_valid(luhn_complete("37828224631000"))
    with pytest.raises(InvalidRequest):
        luhn_complete("4242x")


def _pg_error(pgcode, message="boom"):
    # pgcode is a read-only attribute filled in by the driver; a subclass can provide it.
    return type("PgErrorWithCode", (psycopg2.Error,), {"pgcode": pgcode})(message)


@pytest.mark.parametrize(
    ("pgcode", "message", "expected"),
    [
        ("40001", "could not serialize access", ConcurrencyConflict),
        ("40P01", "deadlock detected", ConcurrencyConflict),
        ("23514", "illegal charge status transition for charge 7: failed -> succeeded", IllegalTransition),
        ("23503", "violates foreign key constraint", RuleViolation),
        ("42P01", "relation does not exist", DatabaseError),
        (None, "server closed the connection", DatabaseError),
    ],
)
def test_translate_maps_sqlstate_to_error_classes(pgcode, message, expected):
    translated = translate(_pg_error(pgcode, message), "do something")
    assert type(translated) is expected
    assert message in str(translated)
    assert translated.retryable is (expected is ConcurrencyConflict)


def test_run_writers_validates_arguments_before_connecting():
    def no_connection():
        raise AssertionError("must not connect")

    with pytest.raises(InvalidRequest, match="never stop"):
        run_writers(2, conn_factory=no_connection)
    with pytest.raises(InvalidRequest, match="duration_s"):
        run_writers(2, duration_s=0, conn_factory=no_connection)
    with pytest.raises(InvalidRequest, match="unknown: fly"):
        run_writers(2, ops_per_worker=1, mix={"fly": 1}, conn_factory=no_connection)
    with pytest.raises(InvalidRequest, match="not all zero"):
        run_writers(2, ops_per_worker=1, mix={"refund": 0}, conn_factory=no_connection)
