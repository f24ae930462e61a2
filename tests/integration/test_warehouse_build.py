"""Warehouse marts built from a staging layer in a throwaway database (real Postgres, no mocks).

The ``warehouse`` and ``staging`` fixtures are in conftest.py."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg2
import pytest
from psycopg2 import sql

from paydata.migrations import apply_migrations
from paydata.warehouse import (
    BuildInputError,
    QualityCheckError,
    ReconciliationError,
    StagingBehindError,
    build,
    check_quality,
    freshness,
    reconcile,
    refresh_aggregates,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_keystore")]

UTC = dt.UTC
MART_TABLES = {
    "fct_balance_transaction": "balance_transaction_id",
    "dim_merchant": "merchant_version_id",
    "dim_customer": "customer_id",
    "dim_payment_method": "payment_method_id",
    "dim_currency": "currency_code",
    "dim_country": "country_code",
    "dim_date": "date_id",
}


def at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, tzinfo=UTC)


def snapshot(conn) -> dict[str, list[tuple]]:
    tables = {}
    with conn.cursor() as cursor:
        for table, key in MART_TABLES.items():
            cursor.execute(sql.SQL("SELECT * FROM marts.{} ORDER BY {}").format(
                sql.Identifier(table), sql.Identifier(key)))
            tables[table] = cursor.fetchall()
    conn.rollback()
    return tables


def fact_indexes(conn) -> dict[str, tuple[str, bool]]:
    """Every index of the fact table: name -> (catalog definition, valid)."""
    return {name: (definition, valid) for name, definition, valid in query(
        conn, "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
              "JOIN pg_class c ON c.oid = i.indexrelid "
              "WHERE i.indrelid = 'marts.fct_balance_transaction'::regclass")}


def query(conn, statement, params=None):
    with conn.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall()
    conn.rollback()
    return rows


def seed_story(staging) -> list:
    """Merchant 1 changes risk tier twice; payments before, between and after; yields batches."""
    staging.reference_data()
    staging.merchant(1, "low", at(1, 0), op="S")
    staging.customer("tok_alice", 1)
    staging.card(10, "tok_alice")
    staging.payment(100, 1, "tok_alice", 10, 5000, at(3))
    yield "before first change"
    staging.merchant(1, "medium", at(5))
    staging.merchant(1, "medium", at(6), legal_name="Shop GmbH")  # type 1 only: no new version
    staging.payment(101, 1, "tok_alice", 10, 7000, at(7))
    yield "between changes"
    staging.merchant(1, "high", at(10), legal_name="Shop GmbH")
    staging.payment(102, 1, "tok_alice", 10, 9000, at(12), currency="JPY", fee=0)
    staging.ledger(103, 1, "payout", -4000, at(13))
    yield "after second change"


def test_merchant_with_two_tier_changes_has_three_versions_and_payments_join_the_valid_one(warehouse, staging):
    for _ in seed_story(staging):
        pass
    report = build(warehouse)
    assert report["rows"]["facts_written"] == 4

    versions = query(warehouse, "SELECT version_number, risk_tier_code, legal_name, valid_from, valid_to, is_current "
                                "FROM marts.dim_merchant WHERE merchant_id = 1 ORDER BY version_number")
    assert [(v[0], v[1], v[2]) for v in versions] == [(1, "low", "Shop GmbH"), (2, "medium", "Shop GmbH"),
                                                     (3, "high", "Shop GmbH")]
    assert [(v[3], v[4]) for v in versions][1:] == [(at(5), at(10)), (at(10), versions[2][4])]
    assert versions[0][4] == at(5) and [v[5] for v in versions] == [False, False, True]
    assert query(warehouse, "SELECT valid_from::text FROM marts.dim_merchant WHERE version_number = 1 "
                            "UNION ALL SELECT valid_to::text FROM marts.dim_merchant WHERE is_current") == [
        ("-infinity",), ("infinity",)]

    joined = dict(query(warehouse, "SELECT f.balance_transaction_id, m.risk_tier_code FROM marts.fct_balance_transaction f "
                                   "JOIN marts.dim_merchant m USING (merchant_version_id)"))
    assert joined == {100: "low", 101: "medium", 102: "high", 103: "high"}

    usd = dict(query(warehouse, "SELECT balance_transaction_id, amount_usd FROM marts.fct_balance_transaction"))
    # EUR on Jan 3/7: the Jan 1 rate 1.1; Jan 13: the Jan 10 rate 1.2; JPY: inverse of USD->JPY 150
    assert usd == {100: Decimal("55.00"), 101: Decimal("77.00"), 102: Decimal("60.00"), 103: Decimal("-48.00")}

    assert check_quality(warehouse) == {"facts_checked": 4, "charges_checked": 3}
    assert refresh_aggregates(warehouse)["agg_daily_merchant_volume"] == "initial"
    assert refresh_aggregates(warehouse)["agg_daily_merchant_volume"] == "concurrent"
    assert query(warehouse, "SELECT count(*) FROM analytics.daily_merchant_volume")[0][0] == 4
    assert query(warehouse, "SELECT refund_rate, charge_count FROM analytics.refund_dispute_rates")[0][1] == 3
    fresh = {row["table_name"]: row for row in freshness(warehouse)}
    assert fresh["fct_balance_transaction"]["source_lsn"] == staging.lsn["oltp"]
    assert fresh["dim_merchant"]["source_lsn"] == staging.lsn["reference"]
    assert fresh["fct_balance_transaction"]["source_commit_at"] == at(13)


def test_incremental_builds_equal_a_full_rebuild_row_for_row_and_rerun_changes_nothing(warehouse, staging):
    # a merchant whose history arrives after its first payment makes the paths differ in between
    for step in seed_story(staging):
        if step == "between changes":
            staging.payment(200, 2, "tok_bob", 20, 1500, at(8))
        build(warehouse)
    staging.merchant(2, "low", at(2, 0), op="S")
    staging.customer("tok_bob", 2)
    staging.card(20, "tok_bob")
    staging.put("reference", "fx_rate", ["base_currency_code", "quote_currency_code", "effective_date"],
                {"base_currency_code": "EUR", "quote_currency_code": "USD",
                 "effective_date": dt.date(2026, 1, 7), "rate": "1.15"})
    build(warehouse)
    incremental = snapshot(warehouse)
    assert len(incremental["fct_balance_transaction"]) == 5
    assert not any(row for row in query(warehouse, "SELECT 1 FROM marts.dim_merchant WHERE is_inferred"))
    assert dict(query(warehouse, "SELECT balance_transaction_id, amount_usd FROM marts.fct_balance_transaction "
                                 "WHERE balance_transaction_id IN (101, 200)")) == {101: Decimal("80.50"), 200: Decimal("17.25")}

    assert build(warehouse)["up_to_date"] is True
    with warehouse.cursor() as cursor:  # replay every window from the start
        cursor.execute("UPDATE marts.build_state SET commit_lsn = 0, index_in_txn = -1")
    warehouse.commit()
    replay = build(warehouse)
    assert replay["rows"]["facts_written"] == 0 and replay["rows"]["facts_repointed"] == 0
    assert snapshot(warehouse) == incremental

    # an index added outside marts.sql survives a rebuild too: the catalog is the definition
    with warehouse.cursor() as cursor:
        cursor.execute("CREATE INDEX fct_operator_amount_idx ON marts.fct_balance_transaction (amount DESC) "
                       "WHERE amount < 0")
    warehouse.commit()
    indexes_before = fact_indexes(warehouse)
    assert len(indexes_before) == 9 and all(valid for _, valid in indexes_before.values())
    rebuilt = build(warehouse, full_rebuild=True)
    assert rebuilt["full_rebuild"] and rebuilt["rows"]["inferred_merchants"] == 0
    assert snapshot(warehouse) == incremental
    assert fact_indexes(warehouse) == indexes_before
    assert sorted(rebuilt["fact_indexes_rebuilt"]) == sorted(
        name for name in indexes_before if name != "fct_balance_transaction_pkey")
    assert build(warehouse)["up_to_date"] is True
    assert build(warehouse, full_rebuild=True)["rows"]["facts_written"] == 5


def test_failing_full_rebuild_leaves_indexes_and_data_as_they_were(warehouse, staging):
    for _ in seed_story(staging):
        pass
    build(warehouse)
    before = snapshot(warehouse)
    indexes_before = fact_indexes(warehouse)
    assert "fct_balance_transaction_merchant_idx" in indexes_before

    # the rebuild re-derives every staged ledger row, so one broken row fails it after the indexes
    # were dropped and before they are recreated
    with warehouse.cursor() as cursor:
        cursor.execute("UPDATE staging.oltp_balance_transaction SET fee = -1 WHERE balance_transaction_id = 103")
    warehouse.commit()
    with pytest.raises(BuildInputError, match="balance_transaction 103: fee -1 is negative"):
        build(warehouse, full_rebuild=True)
    assert snapshot(warehouse) == before
    assert fact_indexes(warehouse) == indexes_before

    # a failure after the indexes are back (a quality check) rolls back just as completely
    with warehouse.cursor() as cursor:
        cursor.execute("UPDATE staging.oltp_balance_transaction SET fee = 0 WHERE balance_transaction_id = 103")
        cursor.execute("DELETE FROM staging.reference_country")  # merchants now name unknown countries
    warehouse.commit()
    with pytest.raises(QualityCheckError, match="dim_merchant.country_code"):
        build(warehouse, full_rebuild=True)
    assert snapshot(warehouse) == before
    assert fact_indexes(warehouse) == indexes_before


def test_fact_before_its_merchant_and_customer_gets_inferred_members_later_completed(warehouse, staging):
    staging.reference_data()
    staging.payment(300, 3, "tok_carol", 30, 2500, at(4))
    staging.payment(301, 3, "tok_carol", 30, 2600, at(9))
    report = build(warehouse)
    assert report["rows"]["inferred_merchants"] == 1 and report["rows"]["inferred_customers"] == 1
    assert query(warehouse, "SELECT is_inferred, valid_from::text, valid_to::text FROM marts.dim_merchant "
                            "WHERE merchant_id = 3") == [(True, "-infinity", "infinity")]
    assert query(warehouse, "SELECT is_inferred, merchant_id FROM marts.dim_customer") == [(True, 3)]
    assert query(warehouse, "SELECT count(*) FROM marts.fct_balance_transaction")[0][0] == 2
    check_quality(warehouse)

    staging.merchant(3, "low", at(1), op="S")
    staging.merchant(3, "high", at(6))
    report = build(warehouse)
    assert report["rows"]["facts_repointed"] == 1 and report["rows"]["facts_written"] == 0
    staging.customer("tok_carol", 3)
    staging.card(30, "tok_carol")
    report = build(warehouse)
    assert report["rows"]["facts_written"] == 2  # the card's country reaches both facts
    assert query(warehouse, "SELECT is_inferred FROM marts.dim_customer") == [(False,)]
    joined = dict(query(warehouse, "SELECT f.balance_transaction_id, m.risk_tier_code || ':' || m.is_inferred "
                                   "FROM marts.fct_balance_transaction f JOIN marts.dim_merchant m "
                                   "USING (merchant_version_id)"))
    assert joined == {300: "low:false", 301: "high:false"}
    assert query(warehouse, "SELECT DISTINCT card_country_code FROM marts.fct_balance_transaction") == [("FR",)]
    check_quality(warehouse)


def test_bad_staged_rows_stop_the_build_naming_them_and_load_nothing_until_fixed(warehouse, staging):
    staging.reference_data()
    staging.merchant(1, "low", at(1), op="S")
    staging.ledger(400, 1, "adjustment", 100, at(3))
    build(warehouse)
    before = snapshot(warehouse)
    state_before = query(warehouse, "SELECT * FROM marts.build_state ORDER BY source")

    staging.ledger(401, 1, "adjustment", 700, at(4))
    staging.ledger(402, 1, "fee", -50, at(4), fee=-5)
    staging.ledger(403, 1, "adjustment", 900, at(4), currency="XTS")
    with pytest.raises(BuildInputError) as failure:
        build(warehouse)
    message = str(failure.value)
    assert "balance_transaction 402: fee -5 is negative" in message
    assert "balance_transaction 403: unknown currency XTS" in message
    assert "401" not in message
    assert snapshot(warehouse) == before
    assert query(warehouse, "SELECT * FROM marts.build_state ORDER BY source") == state_before

    staging.ledger(402, 1, "fee", -50, at(4), fee=0)
    staging.put("reference", "currency", ["currency_code"],
                {"currency_code": "XTS", "numeric_code": "963", "name": "Testing", "minor_units": 2})
    report = build(warehouse)
    assert report["rows"]["facts_written"] == 3
    assert query(warehouse, "SELECT count(*) FROM marts.fct_balance_transaction")[0][0] == 4


def test_deleted_ledger_row_is_refused_and_staging_behind_the_marts_asks_for_rebuild(warehouse, staging):
    staging.reference_data()
    staging.merchant(1, "low", at(1), op="S")
    staging.put("oltp", "balance_transaction", ["balance_transaction_id"],
                {"balance_transaction_id": 500, "merchant_id": 1, "type": "adjustment", "amount": 5, "fee": 0,
                 "net": 5, "currency_code": "EUR", "created_at": at(2), "available_on": at(2)}, deleted=True)
    with pytest.raises(BuildInputError, match="500: deleted at source, but the ledger is append-only"):
        build(warehouse)

    with warehouse.cursor() as cursor:
        cursor.execute("UPDATE staging.oltp_balance_transaction SET _is_deleted = false")
    warehouse.commit()
    build(warehouse)
    with warehouse.cursor() as cursor:
        cursor.execute("UPDATE staging.cdc_offsets SET commit_lsn = 1 WHERE source = 'oltp'")
    warehouse.commit()
    with pytest.raises(StagingBehindError, match="rebuild"):
        build(warehouse)


@pytest.fixture
def oltp(stack, admin_connect, fresh_database):
    conn = admin_connect(fresh_database(prefix="warehouse_oltp"))
    apply_migrations(conn, "oltp")
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO currency_ref (currency_code, minor_units) VALUES ('EUR', 2)")
        cursor.execute("INSERT INTO merchant_ref (merchant_id, country_code, default_currency_code, status) "
                       "VALUES (1, 'DE', 'EUR', 'active')")
    conn.commit()
    return conn


def post_ledger(oltp_conn, staging, amount: int, when: dt.datetime) -> int:
    with oltp_conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO balance_transaction (merchant_id, type, amount, fee, net, currency_code, created_at, "
            "available_on) VALUES (1, 'adjustment', %s, 0, %s, 'EUR', %s, %s) RETURNING balance_transaction_id",
            (amount, amount, when, when),
        )
        row_id = cursor.fetchone()[0]
    oltp_conn.commit()
    staging.ledger(row_id, 1, "adjustment", amount, when)
    return row_id


def test_reconciliation_passes_when_equal_and_names_the_differing_day(warehouse, staging, oltp):
    staging.reference_data()
    staging.merchant(1, "low", at(1), op="S")
    for day, amount in ((3, 100), (3, 250), (4, -75), (5, 40)):
        post_ledger(oltp, staging, amount, at(day))
    window = build(warehouse)["fact_window"]
    assert window["first_day"] == "2026-01-03" and window["last_day"] == "2026-01-05"
    assert reconcile(warehouse, oltp, **window) == {"days": 3, "groups": 3}

    with warehouse.cursor() as cursor:  # the warehouse lost a row of Jan 4
        cursor.execute("DELETE FROM marts.fct_balance_transaction WHERE amount = -75")
    warehouse.commit()
    with pytest.raises(ReconciliationError) as failure:
        reconcile(warehouse, oltp, **window)
    assert failure.value.differences == [{
        "day": "2026-01-04", "currency_code": "EUR", "oltp_rows": 1, "oltp_amount": -75,
        "warehouse_rows": 0, "warehouse_amount": 0,
    }]
    assert "1 day(s) 2026-01-04" in str(failure.value)


def test_build_needs_staging_tables(stack, admin_connect, fresh_database):
    conn = admin_connect(fresh_database(prefix="warehouse_empty"))
    with pytest.raises(psycopg2.errors.UndefinedTable, match="staging"):
        build(conn)


@pytest.fixture
def loader_warehouse(role_warehouse):
    """A warehouse migrated and defined by its real owner, with the staging layout, and a connection
    as a throwaway member of ``warehouse_loader``: ``(owner, loader)``."""
    return role_warehouse.owner, role_warehouse.member("warehouse_loader")


def test_the_loader_builds_rebuilds_and_refreshes_a_migrated_warehouse_without_owning_anything(loader_warehouse):
    from paydata.warehouse.schema import MartsNotDefined

    from .conftest import Staging

    owner, loader = loader_warehouse
    staging = Staging(owner)
    for _ in seed_story(staging):
        build(loader)
    incremental = snapshot(owner)
    assert len(incremental["fct_balance_transaction"]) == 4
    indexes_before = fact_indexes(owner)

    rebuilt = build(loader, full_rebuild=True)  # TRUNCATE and the index drop through the owner's functions
    assert sorted(rebuilt["fact_indexes_rebuilt"]) == sorted(
        name for name in indexes_before if name != "fct_balance_transaction_pkey")
    assert snapshot(owner) == incremental
    assert fact_indexes(owner) == indexes_before
    assert query(owner, "SELECT count(*) FROM security.rebuild_dropped_index") == [(0,)]
    assert set(refresh_aggregates(loader)) == {"agg_daily_merchant_volume", "agg_authorisation_rate",
                                               "agg_refund_dispute_rate"}
    assert query(owner, "SELECT count(*) FROM marts.agg_daily_merchant_volume")[0][0] > 0
    assert set(refresh_aggregates(loader).values()) == {"concurrent"}
    assert query(owner, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'marts'") == [
        ("warehouse_owner",)], "the loader created nothing"

    # definitions older than the code: the loader may not apply them, so it stops and names the step
    with owner.cursor() as cursor:
        cursor.execute("UPDATE security.applied_definitions SET checksum = 'stale'")
    owner.commit()
    with pytest.raises(MartsNotDefined, match="paydata.migrations apply --db warehouse"):
        build(loader)


def test_a_failed_loader_rebuild_leaves_data_and_indexes_as_they_were(loader_warehouse):
    from .conftest import Staging

    owner, loader = loader_warehouse
    for _ in seed_story(Staging(owner)):
        pass
    build(loader)
    before, indexes_before = snapshot(owner), fact_indexes(owner)
    with owner.cursor() as cursor:
        cursor.execute("UPDATE staging.oltp_balance_transaction SET fee = -1 WHERE balance_transaction_id = 103")
    owner.commit()
    with pytest.raises(BuildInputError):
        build(loader, full_rebuild=True)
    assert snapshot(owner) == before
    assert fact_indexes(owner) == indexes_before
    assert query(owner, "SELECT count(*) FROM security.rebuild_dropped_index") == [(0,)]
