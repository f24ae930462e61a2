"""The application write path: encryption round trips, cards, payments, refunds, disputes, errors."""

from __future__ import annotations

import datetime as dt

import pytest

from paydata.crypto import InvalidPAN
from paydata.keystore import default_keystore
from paydata.migrations import apply_migrations
from paydata.oltp import app
from paydata.oltp.cards import luhn_complete
from paydata.oltp.errors import IllegalTransition, InvalidRequest, NotFound, RuleViolation

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_keystore")]

VISA = "4242 4242 4242 4242"
NEXT_YEAR = dt.date.today().year + 1
ACTIVE, CLOSED, OTHER = 10, 20, 30


@pytest.fixture
def oltp(stack, admin_connect, fresh_database):
    conn = admin_connect(fresh_database(prefix="oltp_app"))
    apply_migrations(conn, "oltp")
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO currency_ref (currency_code, minor_units) VALUES ('USD', 2), ('EUR', 2)")
        cursor.execute(
            "INSERT INTO merchant_ref (merchant_id, country_code, default_currency_code, status) VALUES "
            "(%s, 'US', 'USD', 'active'), (%s, 'US', 'USD', 'closed'), (%s, 'DE', 'EUR', 'active')",
            (ACTIVE, CLOSED, OTHER),
        )
    conn.commit()
    return conn


def one(conn, statement, params=None):
    with conn.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    conn.rollback()
    return row


def customer_with_card(conn, email="ada@example.com"):
    customer = app.create_customer(conn, ACTIVE, email, "Ada Lovelace", "+44 20 7946 0000", "GB")
    card = app.add_card(conn, customer, VISA, 12, NEXT_YEAR)
    return customer, card


def test_customer_round_trip_decrypts_inputs_and_stores_no_plaintext(oltp):
    customer_id = app.create_customer(oltp, ACTIVE, "Ada@Example.com", "Ada Lovelace", "+44 20 7946 0000", "gb")

    read = app.read_customer(oltp, customer_id, purpose="support_request")
    assert read["email"] == "Ada@Example.com"
    assert read["name"] == "Ada Lovelace"
    assert read["phone"] == "+44 20 7946 0000"
    assert read["country_code"] == "GB" and read["merchant_id"] == ACTIVE and read["erased_at"] is None

    raw = one(oltp, "SELECT email_enc, name_enc, phone_enc, email_bidx, c::text "
                    "FROM customer AS c WHERE customer_id = %s", (customer_id,))
    for blob in raw[:4]:
        assert blob is not None
        for plaintext in (b"Ada", b"ada@example", b"Lovelace", b"7946"):
            assert plaintext not in bytes(blob).lower()
    assert "Lovelace" not in raw[4] and "example" not in raw[4]
    assert len(default_keystore().key_ids("customer", customer_id)) == 1


def test_find_by_email_uses_the_blind_index_per_merchant(oltp):
    first = app.create_customer(oltp, ACTIVE, "grace@example.com", "Grace Hopper")
    second = app.create_customer(oltp, ACTIVE, "GRACE@example.com ")
    elsewhere = app.create_customer(oltp, OTHER, "grace@example.com")

    assert app.find_customer_by_email(oltp, ACTIVE, " Grace@Example.COM") == [first, second]
    assert app.find_customer_by_email(oltp, OTHER, "grace@example.com") == [elsewhere]
    assert app.find_customer_by_email(oltp, ACTIVE, "nobody@example.com") == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"email": "not-an-email"}, InvalidRequest, "email"),
        ({"email": None}, InvalidRequest, "email is required"),
        ({"phone": "12"}, InvalidRequest, "phone"),
        ({"country": "XX"}, InvalidRequest, "ISO 3166"),
        ({"merchant_id": 999}, NotFound, "reference sync"),
        ({"merchant_id": CLOSED}, InvalidRequest, "closed"),
        ({"merchant_id": "10"}, InvalidRequest, "positive integer"),
    ],
)
def test_create_customer_rejects_bad_input_and_writes_nothing(oltp, kwargs, error, match):
    arguments = {"merchant_id": ACTIVE, "email": "x@example.com", "name": None, "phone": None, "country": None}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        app.create_customer(oltp, **arguments)
    assert one(oltp, "SELECT count(*) FROM customer") == (0,)
    assert default_keystore().count("customer") == 0


def test_add_card_stores_token_last4_fingerprint_never_the_pan(oltp):
    customer, card = customer_with_card(oltp)
    row = one(oltp, "SELECT token, brand, funding, last4, bin_country_code, fingerprint, pm::text "
                    "FROM payment_method AS pm WHERE payment_method_id = %s", (card,))
    token, brand, funding, last4, bin_country, fingerprint, whole_row = row
    assert token.startswith("tok_") and fingerprint.startswith("tok_")
    assert (brand, funding, last4, bin_country) == ("visa", "credit", "4242", "GB")
    assert "4242424242424242" not in whole_row

    same_card_again = app.add_card(oltp, customer, "4242-4242-4242-4242", 1, NEXT_YEAR, funding="debit")
    again = one(oltp, "SELECT token, fingerprint FROM payment_method WHERE payment_method_id = %s",
                (same_card_again,))
    assert again[1] == fingerprint, "the same card has the same fingerprint"
    assert again[0] != token, "each attachment gets its own vault token"
    amex = app.add_card(oltp, customer, luhn_complete("37828224631000"), 6, NEXT_YEAR, bin_country="US")
    assert one(oltp, "SELECT brand, last4, bin_country_code FROM payment_method WHERE payment_method_id = %s",
               (amex,)) == ("amex", "0005", "US")


def test_add_card_rejects_luhn_invalid_expired_and_unknown(oltp):
    customer, _ = customer_with_card(oltp)
    with pytest.raises(InvalidPAN, match="Luhn"):
        app.add_card(oltp, customer, "4242 4242 4242 4241", 12, NEXT_YEAR)
    with pytest.raises(InvalidPAN, match="digits"):
        app.add_card(oltp, customer, "4242-abcd", 12, NEXT_YEAR)
    with pytest.raises(InvalidRequest, match="expired"):
        app.add_card(oltp, customer, VISA, 1, 2020)
    with pytest.raises(InvalidRequest, match="exp_month"):
        app.add_card(oltp, customer, VISA, 13, NEXT_YEAR)
    with pytest.raises(InvalidRequest, match="brand"):
        app.add_card(oltp, customer, VISA, 12, NEXT_YEAR, brand="bitcoin")
    with pytest.raises(NotFound):
        app.add_card(oltp, 987654, VISA, 12, NEXT_YEAR)
    assert one(oltp, "SELECT count(*) FROM payment_method") == (1,)


def test_payment_success_posts_ledger_and_refunds_move_the_charge(oltp):
    customer, card = customer_with_card(oltp)
    payment = app.create_payment(oltp, ACTIVE, customer, card, 10_000, ip_address="203.0.113.9",
                                 device_id="dev-1", session_id="sess-1")
    assert payment.status == "pending"
    assert one(oltp, "SELECT count(*) FROM balance_transaction") == (0,)

    assert app.update_charge_status(oltp, payment.charge_id, "succeeded") == "succeeded"
    assert app.update_charge_status(oltp, payment.charge_id, "succeeded") == "succeeded"  # retry: no-op
    assert one(oltp, "SELECT status, captured, host(ip_address) FROM charge WHERE charge_id = %s",
               (payment.charge_id,)) == ("succeeded", True, "203.0.113.9")
    assert one(oltp, "SELECT status FROM payment_intent WHERE payment_intent_id = %s",
               (payment.payment_intent_id,)) == ("succeeded",)
    assert one(oltp, "SELECT amount, fee, net FROM balance_transaction WHERE type = 'charge'") == (10_000, 290, 9_710)

    app.refund(oltp, payment.charge_id, 3_000, reason="requested_by_customer")
    assert one(oltp, "SELECT status FROM charge WHERE charge_id = %s", (payment.charge_id,)) == ("partially_refunded",)
    with pytest.raises(RuleViolation, match="exceeds charge"):
        app.refund(oltp, payment.charge_id, 7_001)
    app.refund(oltp, payment.charge_id, 7_000)
    assert one(oltp, "SELECT status FROM charge WHERE charge_id = %s", (payment.charge_id,)) == ("refunded",)
    assert one(oltp, "SELECT sum(amount) FROM balance_transaction") == (0,)
    assert app.ledger_discrepancies(oltp) == []


def test_illegal_status_transition_surfaces_the_database_rule(oltp):
    customer, card = customer_with_card(oltp)
    payment = app.create_payment(oltp, ACTIVE, customer, card, 500, outcome="failed", failure_code="card_declined")
    assert payment.status == "failed"
    with pytest.raises(IllegalTransition, match=rf"charge {payment.charge_id}: failed -> succeeded"):
        app.update_charge_status(oltp, payment.charge_id, "succeeded")
    with pytest.raises(InvalidRequest, match="refund"):
        app.update_charge_status(oltp, payment.charge_id, "refunded")
    with pytest.raises(InvalidRequest, match="failure_code"):
        app.update_charge_status(oltp, payment.charge_id, "failed")
    with pytest.raises(RuleViolation, match="cannot be refunded in status failed"):
        app.refund(oltp, payment.charge_id, 100)
    assert one(oltp, "SELECT status, failure_code FROM charge") == ("failed", "card_declined")
    assert one(oltp, "SELECT count(*) FROM balance_transaction") == (0,)


def test_disputes_withdraw_and_reinstate_funds(oltp):
    customer, card = customer_with_card(oltp)
    won = app.create_payment(oltp, ACTIVE, customer, card, 4_000, outcome="succeeded")
    lost = app.create_payment(oltp, ACTIVE, customer, card, 2_000, outcome="succeeded")
    app.refund(oltp, won.charge_id, 1_000)
    won_dispute = app.open_dispute(oltp, won.charge_id, reason="fraudulent")
    lost_dispute = app.open_dispute(oltp, lost.charge_id)
    with pytest.raises(RuleViolation, match="cannot be refunded in status disputed"):
        app.refund(oltp, won.charge_id, 10)
    assert app.close_dispute(oltp, won_dispute, won=True) == "partially_refunded"
    assert app.close_dispute(oltp, lost_dispute, won=False) == "dispute_lost"
    with pytest.raises(InvalidRequest, match="already closed"):
        app.close_dispute(oltp, lost_dispute, won=True)
    with pytest.raises(IllegalTransition, match="dispute_lost -> disputed"):
        app.open_dispute(oltp, lost.charge_id)
    assert one(oltp, "SELECT amount FROM dispute WHERE dispute_id = %s", (won_dispute,)) == (3_000,)
    assert app.ledger_discrepancies(oltp) == []


def test_payment_preconditions_are_checked(oltp):
    customer, card = customer_with_card(oltp)
    other_customer, other_card = customer_with_card(oltp, "bob@example.com")
    with pytest.raises(InvalidRequest, match="does not belong"):
        app.create_payment(oltp, ACTIVE, customer, other_card, 100)
    with pytest.raises(InvalidRequest, match="not a customer of merchant"):
        app.create_payment(oltp, OTHER, customer, card, 100)
    with pytest.raises(InvalidRequest, match="positive"):
        app.create_payment(oltp, ACTIVE, customer, card, 0)
    with pytest.raises(RuleViolation, match="currency"):
        app.create_payment(oltp, ACTIVE, customer, card, 100, "GBP")
    assert app.detach_card(oltp, card) is True
    assert app.detach_card(oltp, card) is False
    with pytest.raises(InvalidRequest, match="detached"):
        app.create_payment(oltp, ACTIVE, customer, card, 100)
    with pytest.raises(NotFound):
        app.detach_card(oltp, 999_999)
    assert one(oltp, "SELECT count(*) FROM payment_intent") == (0,)


def test_remove_card_deletes_unused_cards_and_detaches_used_ones(oltp):
    customer, used = customer_with_card(oltp)
    unused = app.add_card(oltp, customer, "5555 5555 5555 4444", 3, NEXT_YEAR)
    app.create_payment(oltp, ACTIVE, customer, used, 100, outcome="succeeded")
    assert app.remove_card(oltp, unused) == "deleted"
    assert app.remove_card(oltp, used) == "detached"
    assert app.remove_card(oltp, used) == "already_detached"
    assert one(oltp, "SELECT count(*), count(detached_at) FROM payment_method") == (1, 1)


def test_operations_refuse_a_connection_with_an_open_transaction(oltp):
    from paydata.oltp.errors import DatabaseError

    with oltp.cursor() as cursor:
        cursor.execute("SELECT 1")
    with pytest.raises(DatabaseError, match="open"):
        app.create_customer(oltp, ACTIVE, "x@example.com")
    oltp.rollback()
