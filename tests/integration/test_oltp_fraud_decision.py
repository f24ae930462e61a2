"""The payment API asks the fraud scorer about a new charge and stores the decision: a real scorer
(the champion of ``scoring_world`` under uvicorn), a scorer that never answers, no scorer at all,
and decisions switched off. The payment is created in every case."""

from __future__ import annotations

import datetime as dt
import socket
from decimal import Decimal

import httpx
import pytest

from paydata.migrations import apply_migrations
from paydata.oltp import app
from paydata.oltp._db import oltp_sql
from paydata.oltp.fraud_decision import FraudDecisions, UsdRates, amount_usd, decisions_enabled, token_domains

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_keystore")]

VISA = "4242 4242 4242 4242"
MERCHANT = 10
EUR_MERCHANT = 30


@pytest.fixture
def oltp(stack, admin_connect, fresh_database):
    conn = admin_connect(fresh_database(prefix="oltp_decision"))
    apply_migrations(conn, "oltp")
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO currency_ref (currency_code, minor_units) VALUES ('USD', 2), ('EUR', 2), ('JPY', 0)")
        cursor.execute("INSERT INTO merchant_ref (merchant_id, country_code, default_currency_code, status) VALUES "
                       "(%s, 'US', 'USD', 'active'), (%s, 'DE', 'EUR', 'active')", (MERCHANT, EUR_MERCHANT))
    conn.commit()
    return conn


@pytest.fixture
def reference(admin_connect, fresh_database):
    """A migrated reference database with EUR->USD and USD->JPY rates on a few days."""
    name = fresh_database(prefix="reference_fx")
    conn = admin_connect(name)
    apply_migrations(conn, "reference")
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO currency (currency_code, numeric_code, name, minor_units) VALUES "
                       "('USD', '840', 'US dollar', 2), ('EUR', '978', 'Euro', 2), ('JPY', '392', 'Yen', 0) "
                       "ON CONFLICT DO NOTHING")
        cursor.execute("INSERT INTO fx_rate (base_currency_code, quote_currency_code, effective_date, rate) VALUES "
                       "('EUR', 'USD', current_date - 10, 1.05), ('EUR', 'USD', current_date - 1, 1.0825), "
                       "('USD', 'JPY', current_date - 3, 150.0)")
    conn.commit()
    return lambda: admin_connect(name)


def rows(conn, charge_id):
    with conn.cursor() as cursor:
        cursor.execute("SELECT outcome, score, band, model_version, unavailable_reason, latency_ms "
                       "FROM charge_fraud_decision WHERE charge_id = %s", (charge_id,))
        found = cursor.fetchall()
    conn.rollback()
    return found


def charges(conn) -> int:
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM charge")
        (count,) = cursor.fetchone()
    conn.rollback()
    return count


def customer_card(conn, merchant=MERCHANT):
    customer = app.create_customer(conn, merchant, "ada@example.com", "Ada Lovelace", "+44 20 7946 0000", "GB")
    return customer, app.add_card(conn, customer, VISA, 12, dt.date.today().year + 1)


def test_a_new_charge_gets_the_scorer_s_decision_stored(oltp, reference, scoring_app):
    from ml.serving.sample import ServerThread

    made = scoring_app()
    customer, card = customer_card(oltp, EUR_MERCHANT)
    with ServerThread(made.app) as base_url, httpx.Client(base_url=base_url,
                                                         headers={"X-API-Key": made.key}) as http:
        decisions = FraudDecisions(http, UsdRates(reference), timeout_seconds=5)
        payment = app.create_payment(oltp, EUR_MERCHANT, customer, card, 12_345, "EUR", ip_address="203.0.113.9",
                                     device_id="dev-1", session_id="sess-1", fraud_decisions=decisions)
        # the same request straight to the scorer: the stored decision is its answer
        with oltp.cursor() as cursor:
            cursor.execute(oltp_sql("charge_scoring_context"), {"charge_id": payment.charge_id})
            context = dict(zip([c.name for c in cursor.description], cursor.fetchone(), strict=True))
        oltp.rollback()
        body = decisions.request(context)
        direct = http.post("/v1/score", json=body).json()
    assert payment.status == "pending" and payment.fraud_decision is not None
    ((outcome, score, band, version, reason, latency),) = rows(oltp, payment.charge_id)
    assert outcome == "scored" and reason is None and latency > 0
    assert (score, band, version) == (direct["score"], direct["band"], direct["model_version"])
    assert payment.fraud_decision.score == score and version == made.holder.current.version
    # what was sent: CDC's tokens (the manifest's domains) and the charge fact's USD amount
    from paydata.crypto import tokenise

    domains = token_domains()
    assert domains == {"customer_token": "customer", "card_token": "card", "device_token": "device",
                       "ip_token": "ip", "session_token": "session"}
    assert body["customer_token"] == tokenise(str(customer), domain="customer")
    assert body["ip_token"] == tokenise("203.0.113.9", domain="ip") and body["session_token"].startswith("tok_")
    assert body["card_token"] == tokenise(context["fingerprint"], domain="card") and body["card_country"] == "GB"
    assert body["amount_usd"] == 133.63  # 123.45 EUR at the latest rate before today (1.0825), to the cent


def test_a_scorer_that_does_not_answer_in_time_leaves_unavailable_and_the_charge_created(oltp):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections (backlog), never answers
    try:
        customer, card = customer_card(oltp)
        before = charges(oltp)
        with httpx.Client(base_url=f"http://127.0.0.1:{silent.getsockname()[1]}") as http:
            decisions = FraudDecisions(http, UsdRates(lambda: None), timeout_seconds=0.2)
            started = dt.datetime.now()
            payment = app.create_payment(oltp, MERCHANT, customer, card, 500, "USD", fraud_decisions=decisions)
            elapsed = (dt.datetime.now() - started).total_seconds()
    finally:
        silent.close()
    assert charges(oltp) == before + 1 and payment.status == "pending"
    ((outcome, score, band, version, reason, latency),) = rows(oltp, payment.charge_id)
    assert (outcome, score, band, version, reason) == ("unavailable", None, None, None, "timeout")
    assert 150 <= latency < 2000 and elapsed < 5


def test_an_unreachable_scorer_or_an_error_answer_is_unavailable_with_the_reason(oltp):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed_port = probe.getsockname()[1]
    customer, card = customer_card(oltp)
    with httpx.Client(base_url=f"http://127.0.0.1:{closed_port}") as http:
        payment = app.create_payment(oltp, MERCHANT, customer, card, 700, "USD",
                                     fraud_decisions=FraudDecisions(http, UsdRates(lambda: None)))
    assert rows(oltp, payment.charge_id)[0][4] == "unreachable"

    answers = iter([httpx.Response(503, json={"detail": "no model loaded yet"}),
                    httpx.Response(200, json={"score": 7.0, "band": "approve", "model_version": "1"})])
    with httpx.Client(base_url="http://scorer", transport=httpx.MockTransport(lambda _r: next(answers))) as http:
        decisions = FraudDecisions(http, UsdRates(lambda: None))
        first = app.create_payment(oltp, MERCHANT, customer, card, 800, "USD", fraud_decisions=decisions)
        second = app.create_payment(oltp, MERCHANT, customer, card, 900, "USD", fraud_decisions=decisions)
    assert rows(oltp, first.charge_id)[0][4] == "http_503"
    assert rows(oltp, second.charge_id)[0][4] == "bad_answer"  # a score outside [0, 1] is not stored as one


def test_decisions_off_make_no_call_and_store_nothing(oltp, monkeypatch):
    calls = []
    monkeypatch.setenv("PAYDATA_OLTP_FRAUD_DECISIONS", "off")
    monkeypatch.setattr(app, "_fraud_decisions", {})
    monkeypatch.setattr(httpx.Client, "send", lambda *a, **k: calls.append(a) or pytest.fail("no call when off"))
    customer, card = customer_card(oltp)
    payment = app.create_payment(oltp, MERCHANT, customer, card, 1_000, "USD")
    assert payment.fraud_decision is None and rows(oltp, payment.charge_id) == [] and calls == []
    assert FraudDecisions.from_settings({}) is None and not decisions_enabled({})
    with pytest.raises(ValueError, match="PAYDATA_OLTP_FRAUD_DECISIONS"):
        decisions_enabled({"PAYDATA_OLTP_FRAUD_DECISIONS": "maybe"})
    # a setting that cannot be used is logged and read as off: the payment still goes through
    monkeypatch.setenv("PAYDATA_OLTP_FRAUD_DECISIONS", "maybe")
    monkeypatch.setattr(app, "_fraud_decisions", {})
    payment = app.create_payment(oltp, MERCHANT, customer, card, 1_100, "USD")
    assert payment.fraud_decision is None and rows(oltp, payment.charge_id) == [] and calls == []


def test_usd_amounts_follow_the_charge_fact_s_rule(reference):
    rates = UsdRates(reference)
    today = dt.date.today()
    assert rates.rate("USD", today) == 1
    assert rates.rate("EUR", today) == Decimal("1.0825")
    assert rates.rate("EUR", today - dt.timedelta(days=5)) == Decimal("1.05")  # the latest on or before
    assert rates.rate("EUR", today - dt.timedelta(days=30)) is None  # no rate yet: unknown, not zero
    assert rates.rate("JPY", today) == (Decimal(1) / Decimal(150)).quantize(Decimal("1e-16"))  # inverse quote
    assert amount_usd(12_345, 2, Decimal("1.0825")) == 133.63  # 133.634625
    assert amount_usd(1_010, 2, Decimal("0.5")) == 5.05 and amount_usd(1, 2, Decimal("0.5")) == 0.01  # half up
    assert amount_usd(10_000, 0, rates.rate("JPY", today)) == 66.67
    assert amount_usd(5, 2, None) is None
