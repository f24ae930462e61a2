"""Fixtures of the warehouse tests: a throwaway warehouse database with the staging layout, and a
writer of staging rows that behaves like the CDC sink (mirror upsert, history append, offsets)."""

from __future__ import annotations

import datetime as dt

import pytest
from psycopg2 import sql

from tests.staging_layout import create_staging_layout

UTC = dt.UTC


def at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, tzinfo=UTC)


class Staging:
    """Writes staging rows the way the CDC sink does: mirror upsert, history append, offsets."""

    def __init__(self, conn):
        self.conn = conn
        self.lsn = {"reference": 1000, "oltp": 1000}

    def _next(self, source: str) -> int:
        self.lsn[source] += 10
        return self.lsn[source]

    def put(self, source: str, table: str, key: list[str], row: dict, *, commit_time=None,
            deleted=False, op="I", history=False):
        lsn = self._next(source)
        commit_time = commit_time or row.get("created_at") or dt.datetime.now(UTC)
        values = dict(row, _commit_lsn=lsn, _index_in_txn=0, _commit_time=commit_time, _is_deleted=deleted)
        columns = list(values)
        with self.conn.cursor() as cursor:
            cursor.execute(
                sql.SQL("INSERT INTO staging.{t} ({c}) VALUES ({v}) ON CONFLICT ({k}) DO UPDATE SET {u}").format(
                    t=sql.Identifier(f"{source}_{table}"),
                    c=sql.SQL(", ").join(map(sql.Identifier, columns)),
                    v=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                    k=sql.SQL(", ").join(map(sql.Identifier, key)),
                    u=sql.SQL(", ").join(
                        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns
                    ),
                ),
                [values[c] for c in columns],
            )
            if history:
                values["_op"] = op
                columns.append("_op")
                cursor.execute(
                    sql.SQL("INSERT INTO staging.{t} ({c}) VALUES ({v})").format(
                        t=sql.Identifier(f"{source}_{table}_history"),
                        c=sql.SQL(", ").join(map(sql.Identifier, columns)),
                        v=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                    ),
                    [values[c] for c in columns],
                )
            cursor.execute(
                "INSERT INTO staging.cdc_offsets (source, commit_lsn, index_in_txn) VALUES (%s, %s, 0) "
                "ON CONFLICT (source) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, index_in_txn = 0",
                (source, lsn),
            )
        self.conn.commit()
        return lsn

    def merchant(self, merchant_id, tier, when, op="U", mcc="5411", legal_name="Shop"):
        self.put("reference", "merchant", ["merchant_id"], {
            "merchant_id": merchant_id, "legal_name": legal_name, "mcc": mcc, "country_code": "DE",
            "default_currency_code": "EUR", "payout_schedule": "daily", "risk_tier_code": tier,
            "status": "active", "created_at": at(1, 0), "updated_at": when,
        }, commit_time=when, op=op, history=True)

    def reference_data(self):
        for code, numeric, units in (("USD", "840", 2), ("EUR", "978", 2), ("JPY", "392", 0)):
            self.put("reference", "currency", ["currency_code"],
                     {"currency_code": code, "numeric_code": numeric, "name": code, "minor_units": units})
        for code, alpha3, numeric in (("US", "USA", "840"), ("DE", "DEU", "276"), ("FR", "FRA", "250")):
            self.put("reference", "country", ["country_code"],
                     {"country_code": code, "alpha3_code": alpha3, "numeric_code": numeric, "name": code})
        for base, quote, day, rate in (("EUR", "USD", 1, "1.1"), ("EUR", "USD", 10, "1.2"),
                                       ("USD", "JPY", 1, "150")):
            self.put("reference", "fx_rate", ["base_currency_code", "quote_currency_code", "effective_date"],
                     {"base_currency_code": base, "quote_currency_code": quote,
                      "effective_date": dt.date(2026, 1, day), "rate": rate})

    def customer(self, token, merchant_id):
        self.put("oltp", "customer", ["customer_id"],
                 {"customer_id": token, "merchant_id": merchant_id, "country_code": "FR",
                  "created_at": at(1)})

    def card(self, payment_method_id, token):
        self.put("oltp", "payment_method", ["payment_method_id"],
                 {"payment_method_id": payment_method_id, "customer_id": token, "type": "card",
                  "brand": "visa", "funding": "credit", "exp_month": 1, "exp_year": 2030,
                  "bin_country_code": "FR", "created_at": at(1)})

    def payment(self, charge_id, merchant_id, token, payment_method_id, amount, when, currency="EUR",
                fee=30, balance_transaction_id=None):
        self.put("oltp", "payment_intent", ["payment_intent_id"],
                 {"payment_intent_id": charge_id, "merchant_id": merchant_id, "customer_id": token,
                  "amount": amount, "currency_code": currency, "status": "succeeded", "created_at": when})
        self.put("oltp", "charge", ["charge_id"],
                 {"charge_id": charge_id, "payment_intent_id": charge_id,
                  "payment_method_id": payment_method_id, "amount": amount, "currency_code": currency,
                  "status": "succeeded", "captured": True, "created_at": when})
        self.ledger(balance_transaction_id or charge_id, merchant_id, "charge", amount, when,
                    currency=currency, fee=fee, source_id=charge_id)

    def ledger(self, balance_transaction_id, merchant_id, kind, amount, when, currency="EUR", fee=0,
               source_id=None):
        self.put("oltp", "balance_transaction", ["balance_transaction_id"],
                 {"balance_transaction_id": balance_transaction_id, "merchant_id": merchant_id, "type": kind,
                  "source_id": source_id, "amount": amount, "fee": fee, "net": amount - fee,
                  "currency_code": currency, "created_at": when, "available_on": when + dt.timedelta(days=2)},
                 commit_time=when)


@pytest.fixture
def warehouse(stack, admin_connect, fresh_database):
    conn = admin_connect(fresh_database(prefix="warehouse"))
    create_staging_layout(conn, admin_connect)
    return conn


@pytest.fixture
def staging(warehouse):
    return Staging(warehouse)


class RoleWarehouse:
    """A warehouse owned by the stack's real owner role, migrated and given the marts and the
    staging layout by it; :meth:`member` opens a connection as a new login in a group role."""

    def __init__(self, stack, admin, dbname: str, owner):
        self.stack, self.admin, self.dbname, self.owner = stack, admin, dbname, owner
        self._made: list[tuple[str, object]] = []

    def connect(self, user: str, password: str):
        import psycopg2

        return psycopg2.connect(host=str(self.stack.pg_socket_dir), port=self.stack.pg_port, user=user,
                                password=password, dbname=self.dbname, connect_timeout=5)

    def member(self, group: str):
        import secrets
        import uuid

        role, password = f"{group[:20]}_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(16)
        with self.admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s IN ROLE {}").format(
                sql.Identifier(role), sql.Identifier(group)), (password,))
            cursor.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(self.dbname), sql.Identifier(role)))
        conn = self.connect(role, password)
        self._made.append((role, conn))
        return conn

    def close(self) -> None:
        for role, conn in self._made:
            conn.close()
            with self.admin.cursor() as cursor:
                cursor.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                    sql.Identifier(self.dbname), sql.Identifier(role)))
                cursor.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        self.owner.close()


@pytest.fixture
def role_warehouse(stack, admin_connect, fresh_database):
    """:class:`RoleWarehouse` on a new database: migrations, marts and staging layout applied by
    ``warehouse_owner`` (as the migrate step does), named-table grants applied after them."""
    from paydata.migrations import apply_migrations
    from paydata.settings import DATABASE_OWNERS
    from paydata.warehouse import ensure_marts

    owner_role = DATABASE_OWNERS["warehouse"]
    dbname = fresh_database(prefix="warehouse_roles", owner=owner_role)
    admin = admin_connect("postgres")
    admin.autocommit = True
    warehouse = RoleWarehouse(stack, admin, dbname, None)
    warehouse.owner = warehouse.connect(owner_role, stack.password_file(owner_role).read_text().strip())
    apply_migrations(warehouse.owner, "warehouse")
    ensure_marts(warehouse.owner)
    create_staging_layout(warehouse.owner, admin_connect)
    with warehouse.owner.cursor() as cursor:
        cursor.execute("SELECT security.apply_table_grants()")
    warehouse.owner.commit()
    try:
        yield warehouse
    finally:
        warehouse.close()
