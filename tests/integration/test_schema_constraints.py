"""The reference and OLTP schemas reject bad data with clear errors and accept a valid payment flow."""

from __future__ import annotations

import datetime as dt

import psycopg2
import psycopg2.errors
import pytest

from paydata.migrations import apply_migrations

pytestmark = pytest.mark.integration

CIPHERTEXT = b"\x01" * 40  # shaped like an AES-GCM envelope (nonce + ciphertext + tag)
BLIND_INDEX = b"\x02" * 32


def migrated(admin_connect, fresh_database, database):
    conn = admin_connect(fresh_database(prefix=f"schema_{database}"))
    apply_migrations(conn, database)
    return conn


def insert(conn, statement, params=None):
    """Run one statement in a savepoint; return the first column of RETURNING, undo on error."""
    with conn.cursor() as cursor:
        cursor.execute("SAVEPOINT attempt")
        try:
            cursor.execute(statement, params)
            result = cursor.fetchone()[0] if cursor.description else None
        except psycopg2.Error:
            cursor.execute("ROLLBACK TO SAVEPOINT attempt")
            raise
        cursor.execute("RELEASE SAVEPOINT attempt")
        return result


def rejected(conn, error_type, match, statement, params=None):
    with pytest.raises(error_type, match=match) as info:
        insert(conn, statement, params)
    return info.value


class SeededConnection:
    """A connection plus the ids of the rows seeded into it."""

    def __init__(self, conn, ids):
        self.conn = conn
        self.ids = ids

    def __getattr__(self, name):
        return getattr(self.conn, name)


@pytest.fixture
def oltp(stack, admin_connect, fresh_database):
    """A migrated OLTP database with one merchant, customer and card."""
    conn = migrated(admin_connect, fresh_database, "oltp")
    insert(conn, "INSERT INTO currency_ref (currency_code, minor_units) VALUES ('USD', 2), ('JPY', 0)")
    insert(
        conn,
        "INSERT INTO merchant_ref (merchant_id, country_code, default_currency_code, status) "
        "VALUES (10, 'US', 'USD', 'active'), (20, 'JP', 'JPY', 'active')",
    )
    customer_id = insert(
        conn,
        "INSERT INTO customer (merchant_id, email_enc, email_bidx, country_code) "
        "VALUES (10, %s, %s, 'US') RETURNING customer_id",
        (CIPHERTEXT, BLIND_INDEX),
    )
    payment_method_id = insert(
        conn,
        "INSERT INTO payment_method (customer_id, token, brand, funding, last4, exp_month, exp_year, "
        "bin_country_code, fingerprint) VALUES (%s, 'tok_1', 'visa', 'credit', '4242', 12, 2030, 'US', 'fp_1') "
        "RETURNING payment_method_id",
        (customer_id,),
    )
    conn.commit()
    yield SeededConnection(conn, {"customer": customer_id, "payment_method": payment_method_id})
    conn.rollback()


def new_intent(conn, amount=5000, currency="USD"):
    return insert(
        conn,
        "INSERT INTO payment_intent (merchant_id, customer_id, amount, currency_code) "
        "VALUES (10, %s, %s, %s) RETURNING payment_intent_id",
        (conn.ids["customer"], amount, currency),
    )


def new_charge(conn, intent_id, amount=5000, status="pending", failure_code=None, currency="USD"):
    return insert(
        conn,
        "INSERT INTO charge (payment_intent_id, payment_method_id, amount, currency_code, status, "
        "failure_code, ip_address) VALUES (%s, %s, %s, %s, %s, %s, '203.0.113.7') RETURNING charge_id",
        (intent_id, conn.ids["payment_method"], amount, currency, status, failure_code),
    )


def set_charge_status(conn, charge_id, status, failure_code=None):
    insert(
        conn,
        "UPDATE charge SET status = %s, failure_code = %s WHERE charge_id = %s",
        (status, failure_code, charge_id),
    )


def test_valid_payment_flow_from_intent_to_ledger(oltp):
    intent = new_intent(oltp, amount=5000)
    charge = new_charge(oltp, intent, amount=5000)
    with oltp.cursor() as cursor:
        cursor.execute("SELECT updated_at FROM charge WHERE charge_id = %s", (charge,))
        created_updated_at = cursor.fetchone()[0]
    oltp.commit()

    set_charge_status(oltp, charge, "succeeded")
    insert(oltp, "UPDATE charge SET captured = true WHERE charge_id = %s", (charge,))
    refund = insert(
        oltp,
        "INSERT INTO refund (charge_id, amount, status, reason) "
        "VALUES (%s, 1500, 'succeeded', 'requested_by_customer') RETURNING refund_id",
        (charge,),
    )
    set_charge_status(oltp, charge, "partially_refunded")
    now = dt.datetime.now(dt.UTC)
    available = now + dt.timedelta(days=2)
    insert(
        oltp,
        "INSERT INTO balance_transaction (merchant_id, type, source_id, amount, fee, net, currency_code, "
        "created_at, available_on) VALUES "
        "(10, 'charge', %(charge)s, 5000, 175, 4825, 'USD', %(now)s, %(available)s), "
        "(10, 'refund', %(refund)s, -1500, 0, -1500, 'USD', %(now)s, %(available)s)",
        {"charge": charge, "refund": refund, "now": now, "available": available},
    )
    oltp.commit()

    with oltp.cursor() as cursor:
        cursor.execute("SELECT status, captured, updated_at FROM charge WHERE charge_id = %s", (charge,))
        status, captured, updated_at = cursor.fetchone()
        cursor.execute("SELECT sum(net) FROM balance_transaction WHERE merchant_id = 10")
        balance = cursor.fetchone()[0]
    assert (status, captured) == ("partially_refunded", True)
    assert updated_at > created_updated_at
    assert balance == 4825 - 1500


@pytest.mark.parametrize("amount", [0, -100])
def test_non_positive_amounts_are_rejected(oltp, amount):
    rejected(
        oltp, psycopg2.errors.CheckViolation, "payment_intent_amount_check",
        "INSERT INTO payment_intent (merchant_id, amount, currency_code) VALUES (10, %s, 'USD')", (amount,),
    )
    intent = new_intent(oltp)
    with pytest.raises(psycopg2.errors.CheckViolation, match="charge_amount_check"):
        new_charge(oltp, intent, amount=amount)


def test_unknown_currency_is_rejected(oltp):
    rejected(
        oltp, psycopg2.errors.ForeignKeyViolation, r"Key \(currency_code\)=\(XXX\) is not present",
        "INSERT INTO payment_intent (merchant_id, amount, currency_code) VALUES (10, 100, 'XXX')",
    )
    rejected(
        oltp, psycopg2.errors.ForeignKeyViolation, "currency_code",
        "INSERT INTO payout (merchant_id, amount, currency_code, arrival_date) "
        "VALUES (10, 100, 'EUR', current_date)",
    )


def test_charge_currency_must_match_its_intent(oltp):
    intent = new_intent(oltp, currency="USD")
    with pytest.raises(psycopg2.errors.ForeignKeyViolation, match="charge_payment_intent_fkey"):
        new_charge(oltp, intent, currency="JPY")


def test_orphan_references_are_rejected(oltp):
    with pytest.raises(psycopg2.errors.ForeignKeyViolation, match="charge_payment_intent_fkey"):
        new_charge(oltp, 999_999)
    rejected(
        oltp, psycopg2.errors.ForeignKeyViolation, "merchant_id",
        "INSERT INTO payment_intent (merchant_id, amount, currency_code) VALUES (424242, 100, 'USD')",
    )
    rejected(
        oltp, psycopg2.errors.ForeignKeyViolation, "refund_charge_id_fkey",
        "INSERT INTO refund (charge_id, amount) VALUES (999999, 100)",
    )


def test_a_merchant_cannot_charge_another_merchants_customer(oltp):
    rejected(
        oltp, psycopg2.errors.ForeignKeyViolation, "payment_intent_customer_of_merchant",
        "INSERT INTO payment_intent (merchant_id, customer_id, amount, currency_code) "
        "VALUES (20, %s, 100, 'JPY')",
        (oltp.ids["customer"],),
    )


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        (["failed"], "succeeded"),
        (["succeeded", "refunded"], "succeeded"),
        ([], "refunded"),
        (["succeeded"], "pending"),
    ],
)
def test_illegal_status_transitions_name_old_and_new_status(oltp, path, illegal):
    charge = new_charge(oltp, new_intent(oltp))
    for status in path:
        set_charge_status(oltp, charge, status, "card_declined" if status == "failed" else None)
    old = path[-1] if path else "pending"

    with pytest.raises(psycopg2.errors.CheckViolation) as info:
        set_charge_status(oltp, charge, illegal)
    assert f"illegal charge status transition for charge {charge}: {old} -> {illegal}" in str(info.value)


def test_charge_cannot_be_born_refunded(oltp):
    with pytest.raises(psycopg2.errors.CheckViolation, match="charge cannot be created with status refunded"):
        new_charge(oltp, new_intent(oltp), status="refunded")


def test_failure_code_is_required_iff_failed(oltp):
    intent = new_intent(oltp)
    with pytest.raises(psycopg2.errors.CheckViolation, match="charge_failure_code_iff_failed"):
        new_charge(oltp, intent, status="failed")
    with pytest.raises(psycopg2.errors.CheckViolation, match="charge_failure_code_iff_failed"):
        new_charge(oltp, intent, status="succeeded", failure_code="card_declined")
    assert new_charge(oltp, intent, status="failed", failure_code="card_declined")


def test_refunds_cannot_exceed_the_charge(oltp):
    charge = new_charge(oltp, new_intent(oltp, amount=1000), amount=1000)
    set_charge_status(oltp, charge, "succeeded")
    insert(oltp, "INSERT INTO refund (charge_id, amount, status) VALUES (%s, 600, 'succeeded')", (charge,))
    insert(oltp, "INSERT INTO refund (charge_id, amount, status) VALUES (%s, 300, 'failed')", (charge,))

    error = rejected(
        oltp, psycopg2.errors.CheckViolation, "refund of 401 exceeds charge",
        "INSERT INTO refund (charge_id, amount) VALUES (%s, 401)", (charge,),
    )
    assert "charge amount 1000, already refunded 600" in str(error)
    # Reviving the failed 300 would still fit; growing it past the remainder would not.
    insert(oltp, "UPDATE refund SET status = 'pending' WHERE charge_id = %s AND amount = 300", (charge,))
    rejected(
        oltp, psycopg2.errors.CheckViolation, "exceeds charge",
        "UPDATE refund SET amount = 500 WHERE charge_id = %s AND amount = 300", (charge,),
    )
    assert insert(oltp, "INSERT INTO refund (charge_id, amount) VALUES (%s, 100) RETURNING refund_id", (charge,))


def test_failed_or_pending_charges_cannot_be_refunded(oltp):
    charge = new_charge(oltp, new_intent(oltp))
    rejected(
        oltp, psycopg2.errors.CheckViolation, f"charge {charge} cannot be refunded in status pending",
        "INSERT INTO refund (charge_id, amount) VALUES (%s, 1)", (charge,),
    )


@pytest.mark.parametrize("last4", ["424", "42a2", "42424"])
def test_bad_last4_is_rejected(oltp, last4):
    error_type = psycopg2.errors.StringDataRightTruncation if len(last4) > 4 else psycopg2.errors.CheckViolation
    rejected(
        oltp, error_type, "last4|too long",
        "INSERT INTO payment_method (customer_id, token, brand, funding, last4, exp_month, exp_year, "
        "fingerprint) VALUES (%s, 'tok_bad', 'visa', 'debit', %s, 1, 2030, 'fp')",
        (oltp.ids["customer"], last4),
    )


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("exp_month", 13, "payment_method_exp_month_check"),
        ("funding", "charge_card", "payment_method_funding_check"),
        ("brand", "visa ", "payment_method_brand_check"),
    ],
)
def test_bad_card_attributes_are_rejected(oltp, column, value, constraint):
    row = {"brand": "visa", "funding": "debit", "exp_month": 1}
    row[column] = value
    rejected(
        oltp, psycopg2.errors.CheckViolation, constraint,
        "INSERT INTO payment_method (customer_id, token, brand, funding, last4, exp_month, exp_year, "
        "fingerprint) VALUES (%(customer)s, 'tok_x', %(brand)s, %(funding)s, '1111', %(exp_month)s, 2030, 'fp')",
        {**row, "customer": oltp.ids["customer"]},
    )


def test_ledger_net_must_equal_amount_minus_fee_and_rows_are_append_only(oltp):
    statement = (
        "INSERT INTO balance_transaction (merchant_id, type, source_id, amount, fee, net, currency_code, "
        "available_on) VALUES (10, 'charge', 1, 1000, %s, %s, 'USD', now()) RETURNING balance_transaction_id"
    )
    rejected(oltp, psycopg2.errors.CheckViolation, "balance_transaction_net_is_amount_minus_fee", statement, (30, 1000))
    rejected(oltp, psycopg2.errors.CheckViolation, "balance_transaction_fee_check", statement, (-5, 1005))
    row = insert(oltp, statement, (30, 970))
    rejected(
        oltp, psycopg2.errors.UniqueViolation, "balance_transaction_single_posting_idx", statement, (30, 970)
    )
    rejected(
        oltp, psycopg2.errors.RestrictViolation, f"append-only: UPDATE of row {row} rejected",
        "UPDATE balance_transaction SET fee = 0, net = amount WHERE balance_transaction_id = %s", (row,),
    )
    rejected(
        oltp, psycopg2.errors.RestrictViolation, "append-only: DELETE",
        "DELETE FROM balance_transaction WHERE balance_transaction_id = %s", (row,),
    )
    rejected(
        oltp, psycopg2.errors.CheckViolation, "balance_transaction_outflow_is_debit",
        "INSERT INTO balance_transaction (merchant_id, type, source_id, amount, net, currency_code, available_on) "
        "VALUES (10, 'refund', 5, 500, 500, 'USD', now())",
    )


def test_customer_erasure_constraints_and_no_key_table_in_oltp(oltp):
    customer = oltp.ids["customer"]
    with oltp.cursor() as cursor:
        # Data keys live in the key store: a key table here would put them in OLTP's change stream.
        cursor.execute("SELECT to_regclass('customer_data_key') IS NULL")
        assert cursor.fetchone()[0]
    oltp.rollback()
    rejected(
        oltp, psycopg2.errors.CheckViolation, "customer_erased_has_no_personal_data",
        "UPDATE customer SET erased_at = now() WHERE customer_id = %s", (customer,),
    )
    rejected(
        oltp, psycopg2.errors.CheckViolation, "customer_email_enc_check",
        "UPDATE customer SET email_enc = %s WHERE customer_id = %s", (b"alice@example.com", customer),
    )
    insert(
        oltp,
        "UPDATE customer SET erased_at = now(), email_enc = NULL, name_enc = NULL, phone_enc = NULL, "
        "email_bidx = NULL WHERE customer_id = %s",
        (customer,),
    )


def test_no_card_number_or_security_code_column_exists(oltp):
    with oltp.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name ~* '(^pan$|cvv|cvc|card_number|security_code)'"
        )
        assert cursor.fetchall() == []
        cursor.execute(
            "SELECT relname, relreplident FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND relreplident <> 'd'"
        )
        assert cursor.fetchall() == []  # every OLTP table keeps REPLICA IDENTITY DEFAULT (its primary key)


@pytest.fixture
def reference(stack, admin_connect, fresh_database):
    conn = migrated(admin_connect, fresh_database, "reference")
    insert(
        conn,
        "INSERT INTO currency (currency_code, numeric_code, name, minor_units) VALUES "
        "('USD', '840', 'US Dollar', 2), ('EUR', '978', 'Euro', 2)",
    )
    insert(
        conn,
        "INSERT INTO country (country_code, alpha3_code, numeric_code, name, default_currency_code) "
        "VALUES ('US', 'USA', '840', 'United States', 'USD')",
    )
    insert(conn, "INSERT INTO merchant_risk_tier (risk_tier_code, description, rank) VALUES ('low', 'Low', 0)")
    yield conn
    conn.rollback()


MERCHANT = (
    "INSERT INTO merchant (legal_name, mcc, country_code, default_currency_code, payout_schedule, "
    "risk_tier_code, kyc_contact_email_enc, kyc_email_bidx) "
    "VALUES (%(name)s, %(mcc)s, 'US', %(currency)s, %(schedule)s, 'low', %(email)s, %(bidx)s) RETURNING merchant_id"
)
GOOD_MERCHANT = {
    "name": "Acme Corp", "mcc": "5734", "currency": "USD", "schedule": "daily",
    "email": CIPHERTEXT, "bidx": BLIND_INDEX,
}


@pytest.mark.parametrize(
    ("override", "error_type", "match"),
    [
        ({"mcc": "57a4"}, psycopg2.errors.CheckViolation, "merchant_mcc_check"),
        ({"schedule": "hourly"}, psycopg2.errors.CheckViolation, "merchant_payout_schedule_check"),
        ({"currency": "GBP"}, psycopg2.errors.ForeignKeyViolation, "merchant_default_currency_code_fkey"),
        ({"name": "  "}, psycopg2.errors.CheckViolation, "merchant_legal_name_check"),
        ({"email": b"ceo@acme.test"}, psycopg2.errors.CheckViolation, "merchant_kyc_contact_email_enc_check"),
        ({"bidx": None}, psycopg2.errors.CheckViolation, "merchant_email_bidx_with_email"),
    ],
)
def test_bad_merchants_are_rejected(reference, override, error_type, match):
    rejected(reference, error_type, match, MERCHANT, {**GOOD_MERCHANT, **override})


def test_merchant_history_columns_and_replica_identity(reference):
    merchant = insert(reference, MERCHANT, GOOD_MERCHANT)
    insert(reference, "INSERT INTO merchant_risk_tier VALUES ('high', 'High', 10)")
    reference.commit()  # a new transaction has a later now(), so the trigger's stamp is visible
    insert(reference, "UPDATE merchant SET risk_tier_code = 'high' WHERE merchant_id = %s", (merchant,))
    with reference.cursor() as cursor:
        cursor.execute(
            "SELECT risk_tier_code, updated_at > created_at FROM merchant WHERE merchant_id = %s",
            (merchant,),
        )
        assert cursor.fetchone() == ("high", True)
        cursor.execute("SELECT relreplident FROM pg_class WHERE oid = 'merchant'::regclass")
        assert cursor.fetchone()[0] == "f"
    rejected(
        reference, psycopg2.errors.ForeignKeyViolation, "merchant_risk_tier_code_fkey",
        "UPDATE merchant SET risk_tier_code = 'extreme' WHERE merchant_id = %s", (merchant,),
    )


@pytest.mark.parametrize(
    ("base", "quote", "rate", "error_type", "match"),
    [
        ("USD", "EUR", 0, psycopg2.errors.CheckViolation, "fx_rate_rate_check"),
        ("USD", "EUR", -1.2, psycopg2.errors.CheckViolation, "fx_rate_rate_check"),
        ("USD", "USD", 1, psycopg2.errors.CheckViolation, "fx_rate_distinct_currencies"),
        ("USD", "ZZZ", 1.1, psycopg2.errors.ForeignKeyViolation, "fx_rate_quote_currency_code_fkey"),
    ],
)
def test_bad_fx_rates_are_rejected(reference, base, quote, rate, error_type, match):
    rejected(
        reference, error_type, match,
        "INSERT INTO fx_rate (base_currency_code, quote_currency_code, effective_date, rate) "
        "VALUES (%s, %s, '2024-01-02', %s)",
        (base, quote, rate),
    )


def test_fx_rate_is_unique_per_pair_and_day(reference):
    statement = (
        "INSERT INTO fx_rate (base_currency_code, quote_currency_code, effective_date, rate) "
        "VALUES ('USD', 'EUR', '2024-01-02', %s)"
    )
    insert(reference, statement, (0.9123456789,))
    rejected(reference, psycopg2.errors.UniqueViolation, "fx_rate_pkey", statement, (0.91,))


@pytest.mark.parametrize("column", ["device_id", "session_id"])
@pytest.mark.parametrize("blank", ["", "   ", "\t", " \n\r "])
def test_blank_identifiers_that_capture_tokenises_are_rejected(oltp, column, blank):
    charge_id = new_charge(oltp, new_intent(oltp))
    rejected(oltp, psycopg2.errors.CheckViolation, f"charge_{column}_not_blank",
             f"UPDATE charge SET {column} = %s WHERE charge_id = %s", (blank, charge_id))
    insert(oltp, f"UPDATE charge SET {column} = NULL WHERE charge_id = %s", (charge_id,))  # absent is fine
    insert(oltp, f"UPDATE charge SET {column} = 'dev-1' WHERE charge_id = %s", (charge_id,))
