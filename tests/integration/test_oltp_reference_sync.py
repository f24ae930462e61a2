"""Reference -> OLTP sync: set-based upsert, idempotent, propagates changes, never deletes."""

from __future__ import annotations

import pytest

from paydata.migrations import apply_migrations
from paydata.oltp.errors import DatabaseError
from paydata.oltp.reference_sync import sync_reference

pytestmark = pytest.mark.integration


def seed_reference(conn) -> list[int]:
    """Currencies (one not chargeable), countries, a risk tier and four merchants; returns their ids."""
    with conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO currency (currency_code, numeric_code, name, minor_units) VALUES "
            "('USD', '840', 'US Dollar', 2), ('EUR', '978', 'Euro', 2), ('JPY', '392', 'Yen', 0), "
            "('XAU', '959', 'Gold', NULL)"
        )
        cursor.execute(
            "INSERT INTO country (country_code, alpha3_code, numeric_code, name, default_currency_code) "
            "VALUES ('US', 'USA', '840', 'United States', 'USD'), ('DE', 'DEU', '276', 'Germany', 'EUR'), "
            "('JP', 'JPN', '392', 'Japan', 'JPY')"
        )
        cursor.execute(
            "INSERT INTO merchant_risk_tier (risk_tier_code, description, rank) VALUES ('low', 'Low risk', 0)"
        )
        cursor.execute(
            "INSERT INTO merchant (legal_name, mcc, country_code, default_currency_code, risk_tier_code, status) "
            "VALUES ('Acme Inc', '5411', 'US', 'USD', 'low', 'active'), "
            "('Bäckerei GmbH', '5462', 'DE', 'EUR', 'low', 'active'), "
            "('Tokyo KK', '5812', 'JP', 'JPY', 'low', 'pending'), "
            "('Bullion Ltd', '6051', 'US', 'XAU', 'low', 'active') RETURNING merchant_id"
        )
        ids = [row[0] for row in cursor.fetchall()]
    conn.commit()
    return ids


@pytest.fixture
def databases(stack, admin_connect, fresh_database):
    reference = admin_connect(fresh_database(prefix="oltp_sync_ref"))
    oltp = admin_connect(fresh_database(prefix="oltp_sync_oltp"))
    apply_migrations(reference, "reference")
    apply_migrations(oltp, "oltp")
    return reference, oltp


def fetch(conn, statement, params=None):
    with conn.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall()
    conn.rollback()
    return rows


def test_first_sync_inserts_chargeable_data_and_second_sync_changes_nothing(databases):
    reference, oltp = databases
    merchant_ids = seed_reference(reference)

    first = sync_reference(reference, oltp)

    assert first["currency_ref"] == {"read": 3, "inserted": 3, "updated": 0, "unchanged": 0}
    assert first["merchant_ref"] == {
        "read": 4, "inserted": 3, "updated": 0, "unchanged": 0, "skipped_unchargeable_currency": 1,
    }
    assert fetch(oltp, "SELECT currency_code, minor_units FROM currency_ref ORDER BY 1") == [
        ("EUR", 2), ("JPY", 0), ("USD", 2)]
    assert fetch(oltp, "SELECT merchant_id, country_code, default_currency_code, status FROM merchant_ref "
                       "ORDER BY 1") == [
        (merchant_ids[0], "US", "USD", "active"),
        (merchant_ids[1], "DE", "EUR", "active"),
        (merchant_ids[2], "JP", "JPY", "pending"),
    ]
    synced_at = fetch(oltp, "SELECT merchant_id, synced_at, xmin::text FROM merchant_ref ORDER BY 1")

    second = sync_reference(reference, oltp)

    assert second["currency_ref"] == {"read": 3, "inserted": 0, "updated": 0, "unchanged": 3}
    assert second["merchant_ref"]["inserted"] == 0 and second["merchant_ref"]["updated"] == 0
    assert second["merchant_ref"]["unchanged"] == 3
    # Unchanged rows are not rewritten at all (same row version).
    assert fetch(oltp, "SELECT merchant_id, synced_at, xmin::text FROM merchant_ref ORDER BY 1") == synced_at


def test_reference_changes_propagate_and_nothing_is_deleted(databases):
    reference, oltp = databases
    acme, gmbh, tokyo, _ = seed_reference(reference)
    sync_reference(reference, oltp)
    with reference.cursor() as cursor:
        cursor.execute("UPDATE merchant SET status = 'closed' WHERE merchant_id = %s", (acme,))
        cursor.execute("UPDATE merchant SET status = 'active', default_currency_code = 'USD' "
                       "WHERE merchant_id = %s", (tokyo,))
        cursor.execute("UPDATE currency SET minor_units = 3 WHERE currency_code = 'JPY'")
        cursor.execute("INSERT INTO currency (currency_code, numeric_code, name, minor_units) "
                       "VALUES ('GBP', '826', 'Pound Sterling', 2)")
        cursor.execute("DELETE FROM merchant WHERE merchant_id = %s", (gmbh,))
    reference.commit()

    counts = sync_reference(reference, oltp)

    assert counts["currency_ref"] == {"read": 4, "inserted": 1, "updated": 1, "unchanged": 2}
    assert counts["merchant_ref"]["updated"] == 2 and counts["merchant_ref"]["inserted"] == 0
    rows = dict((row[0], row[1:]) for row in fetch(
        oltp, "SELECT merchant_id, default_currency_code, status FROM merchant_ref"))
    assert rows[acme] == ("USD", "closed")
    assert rows[tokyo] == ("USD", "active")
    assert rows[gmbh] == ("EUR", "active"), "a merchant gone from the reference DB stays in the replica"
    assert fetch(oltp, "SELECT minor_units FROM currency_ref WHERE currency_code = 'JPY'") == [(3,)]
    assert sync_reference(reference, oltp)["merchant_ref"]["updated"] == 0


def test_sync_refuses_a_connection_with_an_open_transaction_and_leaves_oltp_untouched(databases):
    reference, oltp = databases
    seed_reference(reference)
    with oltp.cursor() as cursor:
        cursor.execute("SELECT 1")
    with pytest.raises(DatabaseError, match="open"):
        sync_reference(reference, oltp)
    oltp.rollback()
    assert fetch(oltp, "SELECT count(*) FROM merchant_ref") == [(0,)]
