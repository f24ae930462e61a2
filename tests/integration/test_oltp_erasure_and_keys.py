"""Erasure by crypto-shredding, KEK rewrap, data-key rotation and the insert-only audit log."""

from __future__ import annotations

import datetime as dt

import psycopg2.errors
import pytest

from paydata.crypto import (
    KEK_FILE_ENV,
    KEK_INLINE_ENV,
    DataKeyResolver,
    KeyDestroyed,
    append_key,
    blind_index,
    key_id_of,
    new_keyfile,
    reload_keys,
    wrapped_kek_id,
)
from paydata.keystore import default_keystore
from paydata.migrations import apply_migrations
from paydata.oltp import app
from paydata.oltp.audit import audit_events
from paydata.oltp.erasure import erase_customer
from paydata.oltp.errors import InvalidRequest, NotFound
from paydata.oltp.keys import rewrap_data_keys, rotate_customer_data_key

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_keystore")]

MERCHANT = 10
NEXT_YEAR = dt.date.today().year + 1


@pytest.fixture
def oltp(stack, admin_connect, fresh_database):
    conn = admin_connect(fresh_database(prefix="oltp_keys"))
    apply_migrations(conn, "oltp")
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO currency_ref (currency_code, minor_units) VALUES ('USD', 2)")
        cursor.execute("INSERT INTO merchant_ref (merchant_id, country_code, default_currency_code, status) "
                       "VALUES (%s, 'US', 'USD', 'active')", (MERCHANT,))
    conn.commit()
    return conn


@pytest.fixture
def tmp_kek(tmp_path, monkeypatch):
    """A throwaway KEK file as the environment's KEK ring; returns its path."""
    path = tmp_path / "kek"
    new_keyfile(path, "kek-one")
    monkeypatch.setenv(KEK_FILE_ENV, str(path))
    monkeypatch.delenv(KEK_INLINE_ENV, raising=False)
    reload_keys()
    yield path
    monkeypatch.undo()
    reload_keys()


def rows(conn, statement, params=None):
    with conn.cursor() as cursor:
        cursor.execute(statement, params)
        result = cursor.fetchall()
    conn.rollback()
    return result


def db_resolver(conn):
    """Decrypts the way a consumer holding the key store would: wrapped key looked up by the
    ciphertext's key id (``conn`` is unused: keys are not in OLTP)."""
    return DataKeyResolver(lambda key_id: default_keystore().wrapped("customer", key_id), max_cached=0)


def stored_wrapped_keys(owner="customer"):
    with default_keystore().connection().cursor() as cursor:
        cursor.execute(f"SELECT wrapped_key FROM {owner}_data_key")
        return [bytes(wrapped) for (wrapped,) in cursor.fetchall()]


def new_customer(conn, email="erin@example.com"):
    customer_id = app.create_customer(conn, MERCHANT, email, "Erin Example", "+1 555 0100 200", "US")
    card = app.add_card(conn, customer_id, "4242424242424242", 12, NEXT_YEAR)
    return customer_id, card


def test_erasure_crypto_shreds_and_is_idempotent(oltp):
    customer_id, card = new_customer(oltp)
    kept, _ = new_customer(oltp, "keep@example.com")
    payment = app.create_payment(oltp, MERCHANT, customer_id, card, 1_500, outcome="succeeded",
                                 ip_address="203.0.113.9", device_id="dev-erin-1", session_id="sess-erin-1")
    (email_copy,) = rows(oltp, "SELECT email_enc FROM customer WHERE customer_id = %s", (customer_id,))[0]
    email_copy = bytes(email_copy)  # e.g. already in the warehouse
    assert db_resolver(oltp).decrypt(email_copy, table="customer", column="email", pk=customer_id) == (
        "erin@example.com")

    seen = []

    def downstream(subject):
        seen.append(subject)
        return {"sessions_removed": len(subject.session_ids)}

    result = erase_customer(oltp, customer_id, "data_subject_request", hooks={"nosql": downstream})

    assert result.erased_now and result.cards_detached == 1 and result.data_key_id == key_id_of(email_copy)
    assert [(s.session_ids, s.device_ids) for s in seen] == [(("sess-erin-1",), ("dev-erin-1",))]
    assert result.hooks == {"nosql": {"sessions_removed": 1}}
    assert rows(oltp, "SELECT email_enc, name_enc, phone_enc, email_bidx, erased_at IS NOT NULL "
                      "FROM customer WHERE customer_id = %s", (customer_id,)) == [(None, None, None, None, True)]
    assert default_keystore().key_ids("customer", customer_id) == []
    assert rows(oltp, "SELECT ip_address, device_id, session_id FROM charge WHERE charge_id = %s",
                (payment.charge_id,)) == [(None, None, None)]
    assert result.charges_wiped == 1
    with pytest.raises(KeyDestroyed):
        db_resolver(oltp).decrypt(email_copy, table="customer", column="email", pk=customer_id)
    read = app.read_customer(oltp, customer_id, purpose="support_request")
    assert (read["email"], read["name"], read["phone"]) == (None, None, None)
    assert read["erased_at"] == result.erased_at
    assert app.find_customer_by_email(oltp, MERCHANT, "erin@example.com") == []
    assert app.read_customer(oltp, kept, purpose="support_request")["email"] == "keep@example.com", "other customers are untouched"
    # History stays: the charge and its ledger row still reference the customer's card.
    assert rows(oltp, "SELECT count(*) FROM charge WHERE charge_id = %s", (payment.charge_id,)) == [(1,)]

    again = erase_customer(oltp, customer_id, "data_subject_request", hooks={"nosql": downstream})
    assert not again.erased_now and len(seen) == 1 and again.erased_at == result.erased_at
    events = audit_events(oltp, "customer", customer_id)
    assert len(events) == 1
    event = events[0]
    assert event["action"] == "customer_erased" and event["reason"] == "data_subject_request"
    assert event["actor"] == rows(oltp, "SELECT current_user")[0][0]
    assert "erin" not in str(event).lower()

    with pytest.raises(InvalidRequest, match="erased"):
        app.add_card(oltp, customer_id, "4242424242424242", 12, NEXT_YEAR)
    with pytest.raises(InvalidRequest, match="erased"):
        rotate_customer_data_key(oltp, customer_id)


def test_erasure_rejects_bad_requests(oltp):
    customer_id, _ = new_customer(oltp)
    with pytest.raises(InvalidRequest, match="reason"):
        erase_customer(oltp, customer_id, "because I said so: erin@example.com")
    with pytest.raises(NotFound):
        erase_customer(oltp, 424242, "data_subject_request")
    assert app.read_customer(oltp, customer_id, purpose="support_request")["email"] == "erin@example.com"
    assert [event["action"] for event in audit_events(oltp)] == ["personal_data_read"], "no erasure recorded"


def test_a_failing_hook_rolls_the_erasure_back_and_a_rerun_finishes_it(oltp):
    customer_id, card = new_customer(oltp)
    app.create_payment(oltp, MERCHANT, customer_id, card, 900, outcome="succeeded", session_id="sess-9")

    def broken(subject):
        raise ConnectionError("mongo is down")

    with pytest.raises(ConnectionError):
        erase_customer(oltp, customer_id, "data_subject_request", hooks={"nosql": broken})
    assert app.read_customer(oltp, customer_id, purpose="support_request")["email"] == "erin@example.com", "nothing was erased"
    assert len(default_keystore().key_ids("customer", customer_id)) == 1
    assert [event["action"] for event in audit_events(oltp)] == ["personal_data_read"], "no erasure recorded"

    calls = []
    result = erase_customer(oltp, customer_id, "data_subject_request",
                            hooks={"nosql": lambda subject: calls.append(subject.session_ids) or {}})
    assert result.erased_now and calls == [("sess-9",)]
    assert default_keystore().key_ids("customer", customer_id) == []


def test_legacy_keys_move_from_oltp_into_the_key_store(stack, admin_connect, fresh_database, tmp_kek):
    """An OLTP database from before the key store: its customer_data_key rows move, then V010 drops it."""
    from paydata.keystore.legacy import move_legacy_keys
    from paydata.migrations import discover_migrations

    conn = admin_connect(fresh_database(prefix="oltp_legacy"))
    key_store_migration = next(m for m in discover_migrations("oltp") if m.path.name.endswith("_data_keys_to_key_store.sql"))
    with conn.cursor() as cursor:
        for migration in discover_migrations("oltp"):
            if migration.version < key_store_migration.version:
                cursor.execute(migration.path.read_text())
        cursor.execute("INSERT INTO currency_ref (currency_code, minor_units) VALUES ('USD', 2)")
        cursor.execute("INSERT INTO merchant_ref (merchant_id, country_code, default_currency_code, status) "
                       "VALUES (%s, 'US', 'USD', 'active')", (MERCHANT,))
        cursor.execute("INSERT INTO customer (merchant_id) VALUES (%s) RETURNING customer_id", (MERCHANT,))
        customer_id = cursor.fetchone()[0]
        legacy = default_keystore().new_key()
        cursor.execute("INSERT INTO customer_data_key (customer_id, key_id, wrapped_key) VALUES (%s, %s, %s)",
                       (customer_id, legacy.key_id, legacy.wrapped))
    conn.commit()
    with conn.cursor() as cursor, pytest.raises(psycopg2.errors.ObjectNotInPrerequisiteState, match="key store"):
        cursor.execute(key_store_migration.path.read_text())
    conn.rollback()

    moved = move_legacy_keys(conn, "oltp", default_keystore())
    assert (moved.moved, moved.table_present) == (1, True)
    assert move_legacy_keys(conn, "oltp", default_keystore()).moved == 0, "a rerun moves nothing twice"
    assert default_keystore().wrapped("customer", legacy.key_id) == legacy.wrapped
    with conn.cursor() as cursor:
        cursor.execute(key_store_migration.path.read_text())
        cursor.execute("SELECT to_regclass('customer_data_key')")
        assert cursor.fetchone() == (None,)
    conn.rollback()


def test_audit_log_is_insert_only(oltp):
    customer_id, _ = new_customer(oltp)
    erase_customer(oltp, customer_id, "legal_order")
    for statement in ("UPDATE audit_log SET reason = 'retention_expired'", "DELETE FROM audit_log",
                      "TRUNCATE audit_log"):
        with oltp.cursor() as cursor, pytest.raises(psycopg2.errors.RestrictViolation, match="insert-only"):
            cursor.execute(statement)
        oltp.rollback()
    with oltp.cursor() as cursor, pytest.raises(psycopg2.errors.CheckViolation):
        cursor.execute("INSERT INTO audit_log (action, subject_table, reason) "
                       "VALUES ('customer_erased', 'customer', 'mail from erin@example.com')")
    oltp.rollback()
    assert [event["reason"] for event in audit_events(oltp)] == ["legal_order"]


def test_kek_rotation_rewraps_every_key_and_old_data_still_decrypts(oltp, tmp_kek):
    customers = [new_customer(oltp, f"c{n}@example.com")[0] for n in range(5)]
    erase_customer(oltp, customers[0], "data_subject_request")
    assert {wrapped_kek_id(w) for w in stored_wrapped_keys()} == {"kek-one"}

    new_kek = append_key(tmp_kek, "kek-two")
    reload_keys()
    first = rewrap_data_keys(oltp, "customer_data_key", batch_size=2)

    assert (first.rewrapped, first.skipped, first.active_kek_id) == (4, 0, "kek-two")
    assert first.batches == 2
    assert {wrapped_kek_id(w) for w in stored_wrapped_keys()} == {new_kek}
    for customer_id in customers[1:]:
        assert app.read_customer(oltp, customer_id, purpose="support_request")["name"] == "Erin Example"
    assert rewrap_data_keys(oltp, "customer_data_key", batch_size=2).rewrapped == 0
    events = audit_events(oltp, "customer_data_key")
    assert len(events) == 1 and events[0]["action"] == "data_keys_rewrapped"
    assert events[0]["detail"]["rewrapped"] == 4

    with pytest.raises(InvalidRequest, match="table"):
        rewrap_data_keys(oltp, "customer")


def test_merchant_data_keys_in_the_reference_db_are_rewrapped(stack, admin_connect, fresh_database, tmp_kek):
    reference = admin_connect(fresh_database(prefix="oltp_keys_ref"))
    apply_migrations(reference, "reference")
    with reference.cursor() as cursor:
        cursor.execute("INSERT INTO currency (currency_code, numeric_code, name, minor_units) "
                       "VALUES ('USD', '840', 'US Dollar', 2)")
        cursor.execute("INSERT INTO country (country_code, alpha3_code, numeric_code, name) "
                       "VALUES ('US', 'USA', '840', 'United States')")
        cursor.execute("INSERT INTO merchant_risk_tier VALUES ('low', 'Low risk', 0)")
        cursor.execute("INSERT INTO merchant (legal_name, mcc, country_code, default_currency_code, "
                       "risk_tier_code) VALUES ('Acme', '5411', 'US', 'USD', 'low') RETURNING merchant_id")
        merchant_id = cursor.fetchone()[0]
    reference.commit()
    default_keystore().create("merchant", merchant_id)
    append_key(tmp_kek, "kek-two")
    reload_keys()

    assert rewrap_data_keys(reference, "merchant_data_key").rewrapped == 1
    assert rewrap_data_keys(reference, "merchant_data_key").rewrapped == 0
    assert [wrapped_kek_id(w) for w in stored_wrapped_keys("merchant")] == ["kek-two"]
    assert [e["action"] for e in audit_events(reference, database="reference")] == ["data_keys_rewrapped"]


def test_customer_data_key_rotation_reencrypts_and_retires_the_old_key(oltp):
    customer_id, _ = new_customer(oltp)
    (old_email, old_bidx) = rows(oltp, "SELECT email_enc, email_bidx FROM customer WHERE customer_id = %s",
                                 (customer_id,))[0]
    old_email = bytes(old_email)

    rotation = rotate_customer_data_key(oltp, customer_id, reason="suspected_exposure")

    assert rotation.old_key_id == key_id_of(old_email) != rotation.new_key_id
    assert rotation.fields_reencrypted == 3
    (new_email, new_bidx) = rows(oltp, "SELECT email_enc, email_bidx FROM customer WHERE customer_id = %s",
                                 (customer_id,))[0]
    assert key_id_of(new_email) == rotation.new_key_id
    assert bytes(new_bidx) == bytes(old_bidx) == blind_index("erin@example.com", domain="email")
    read = app.read_customer(oltp, customer_id, purpose="support_request")
    assert (read["email"], read["name"], read["phone"]) == ("erin@example.com", "Erin Example", "+1 555 0100 200")
    with pytest.raises(KeyDestroyed):
        db_resolver(oltp).decrypt(old_email, table="customer", column="email", pk=customer_id)
    assert [e["action"] for e in audit_events(oltp, "customer", customer_id)] == [
        "customer_data_key_rotated", "personal_data_read"]
    with pytest.raises(InvalidRequest, match="reason"):
        rotate_customer_data_key(oltp, customer_id, reason="whim")
    with pytest.raises(NotFound):
        rotate_customer_data_key(oltp, 999_999)
