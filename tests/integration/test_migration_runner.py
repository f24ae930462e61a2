"""The migration runner against real Postgres databases."""

from __future__ import annotations

import shutil
import threading
import uuid

import psycopg2
import pytest
from psycopg2 import sql

from paydata import migrations
from paydata.migrations import MigrationError, apply_migrations, discover_migrations, pending_migrations

pytestmark = pytest.mark.integration


def relations(conn) -> set[str]:
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        )
        names = {row[0] for row in cursor.fetchall()}
    conn.rollback()
    return names


@pytest.mark.parametrize("database", migrations.MANAGED_DATABASES)
def test_apply_creates_schema_records_history_and_second_apply_is_a_noop(
    stack, admin_connect, fresh_database, database
):
    conn = admin_connect(fresh_database(prefix=f"mig_{database}"))
    expected = [m.label for m in discover_migrations(database)]

    assert [m.label for m in pending_migrations(conn, database)] == expected
    assert apply_migrations(conn, database) == expected
    assert apply_migrations(conn, database) == []
    assert pending_migrations(conn, database) == []

    with conn.cursor() as cursor:
        cursor.execute("SELECT version, filename, checksum FROM schema_migrations ORDER BY version")
        history = cursor.fetchall()
    assert history == [(m.version, m.path.name, m.checksum) for m in discover_migrations(database)]
    tables = relations(conn)
    if database == "reference":
        assert {"currency", "country", "fx_rate", "merchant_risk_tier", "merchant"} <= tables
        assert "merchant_data_key" not in tables, "data keys live in the key store"
    elif database == "oltp":
        assert {
            "currency_ref", "merchant_ref", "customer", "payment_method",
            "payment_intent", "charge", "refund", "dispute", "payout", "balance_transaction",
        } <= tables
        assert "customer_data_key" not in tables, "data keys live in the key store"
    elif database == "warehouse":
        # The warehouse's tables come from the jobs that fill them; its migrations set up roles.
        with conn.cursor() as cursor:
            cursor.execute("SELECT nspname FROM pg_namespace")
            schemas = {row[0] for row in cursor.fetchall()}
        conn.rollback()
        assert {"staging", "marts", "analytics", "features", "ml", "security"} <= schemas
    else:
        assert {"customer_data_key", "merchant_data_key", "key_destruction", "key_table_compaction"} <= tables


def copy_migrations(tmp_path, database):
    shutil.copytree(migrations.migrations_dir(database), migrations.migrations_dir(database, tmp_path))
    return tmp_path


def test_editing_an_applied_migration_is_a_checksum_error_naming_the_file(
    stack, admin_connect, fresh_database, tmp_path
):
    root = copy_migrations(tmp_path, "reference")
    conn = admin_connect(fresh_database(prefix="mig_sum"))
    apply_migrations(conn, "reference", sql_root=root)

    edited = migrations.migrations_dir("reference", root) / "V002__fx_rate.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")

    with pytest.raises(MigrationError, match=r"checksum mismatch for .*V002__fx_rate\.sql"):
        apply_migrations(conn, "reference", sql_root=root)
    with pytest.raises(MigrationError, match=r"checksum mismatch for .*V002__fx_rate\.sql"):
        pending_migrations(conn, "reference", sql_root=root)


def test_migrations_applied_from_another_folder_are_not_applied_again(stack, admin_connect, fresh_database, tmp_path):
    """Applied history is kept by version, file name and checksum, not by folder: a deployment migrated
    from files elsewhere (include/sql/<database>/ before the tree had migrations/) re-applies nothing."""
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(migrations.migrations_dir("reference"), elsewhere / "reference" / "migrations")
    conn = admin_connect(fresh_database(prefix="mig_moved"))
    applied = apply_migrations(conn, "reference", sql_root=elsewhere)
    assert applied == [m.label for m in discover_migrations("reference")]

    assert pending_migrations(conn, "reference") == []
    assert apply_migrations(conn, "reference") == []


def test_failing_migration_rolls_back_alone_and_names_the_file(stack, admin_connect, fresh_database, tmp_path):
    folder = migrations.migrations_dir("scratch", tmp_path)
    folder.mkdir(parents=True)
    (folder / "V001__good.sql").write_text("CREATE TABLE good (id int PRIMARY KEY);\n")
    (folder / "V002__half_done.sql").write_text(
        "CREATE TABLE half (id int PRIMARY KEY);\nINSERT INTO missing_table VALUES (1);\n"
    )
    (folder / "V003__never_reached.sql").write_text("CREATE TABLE never (id int);\n")
    conn = admin_connect(fresh_database(prefix="mig_fail"))

    with pytest.raises(MigrationError, match=r"V002__half_done\.sql failed .*missing_table"):
        apply_migrations(conn, "scratch", sql_root=tmp_path)

    assert {"good", "schema_migrations"} == relations(conn)
    assert [m.label for m in pending_migrations(conn, "scratch", sql_root=tmp_path)] == ["002", "003"]

    # Fixing the file lets the run continue where it stopped.
    (folder / "V002__half_done.sql").write_text("CREATE TABLE half (id int PRIMARY KEY);\n")
    assert apply_migrations(conn, "scratch", sql_root=tmp_path) == ["002", "003"]


def test_open_transaction_is_refused(stack, admin_connect, fresh_database):
    conn = admin_connect(fresh_database(prefix="mig_tx"))
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
    with pytest.raises(MigrationError, match="no open transaction"):
        apply_migrations(conn, "reference")
    conn.rollback()


def test_concurrent_runners_apply_each_migration_once(stack, admin_connect, fresh_database, tmp_path):
    folder = migrations.migrations_dir("race", tmp_path)
    folder.mkdir(parents=True)
    # pg_sleep widens the window in which an unlocked second runner would start the same migration.
    (folder / "V001__slow.sql").write_text("SELECT pg_sleep(0.5);\nCREATE TABLE slow (id int);\n")
    (folder / "V002__after.sql").write_text("CREATE TABLE after_slow (id int);\n")
    dbname = fresh_database(prefix="mig_race")
    connections = [admin_connect(dbname), admin_connect(dbname)]
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run(conn):
        try:
            results.append(apply_migrations(conn, "race", sql_root=tmp_path))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(results) == [[], ["001", "002"]]


def test_migrations_apply_as_a_non_superuser_owner_and_grant_cdc_reads(stack, admin_connect, fresh_database):
    owner = f"mig_owner_{uuid.uuid4().hex[:8]}"
    created_cdc_role = False
    admin = admin_connect("postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = 'paydata_cdc'")
        if cursor.fetchone() is None:
            cursor.execute("CREATE ROLE paydata_cdc NOLOGIN")
            created_cdc_role = True
    databases = {name: fresh_database(prefix=f"mig_own_{name}") for name in migrations.MANAGED_DATABASES}
    conns = {}
    try:
        for name, dbname in databases.items():
            conn = conns[name] = admin_connect(dbname)
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
                # The warehouse's migration creates its schemas, as its database owner may.
                cursor.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                    sql.Identifier(dbname), sql.Identifier(owner)))
                cursor.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
            conn.autocommit = False
            assert apply_migrations(conn, name)

        def can_read(name, table):
            with conns[name].cursor() as cursor:
                cursor.execute("SELECT has_table_privilege('paydata_cdc', %s, 'SELECT')", (table,))
                allowed = cursor.fetchone()[0]
            conns[name].rollback()
            return allowed

        assert can_read("reference", "merchant") and can_read("reference", "fx_rate")
        assert can_read("oltp", "charge") and can_read("oltp", "balance_transaction")
        assert not can_read("oltp", "audit_log")
        assert not can_read("keystore", "customer_data_key") and not can_read("keystore", "merchant_data_key")
    finally:
        for conn in conns.values():
            conn.rollback()
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute("RESET ROLE")
                cursor.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(owner)))
                if created_cdc_role:
                    cursor.execute("DROP OWNED BY paydata_cdc")
            conn.close()
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))
            if created_cdc_role:
                cursor.execute("DROP ROLE paydata_cdc")


def test_psycopg2_errors_do_not_leak_the_lock(stack, admin_connect, fresh_database, tmp_path):
    folder = migrations.migrations_dir("locked", tmp_path)
    folder.mkdir(parents=True)
    (folder / "V001__broken.sql").write_text("THIS IS NOT SQL;\n")
    dbname = fresh_database(prefix="mig_lock")
    conn = admin_connect(dbname)
    with pytest.raises(MigrationError):
        apply_migrations(conn, "locked", sql_root=tmp_path)

    other = admin_connect(dbname)
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", (migrations.ADVISORY_LOCK_KEY,))
        assert cursor.fetchone()[0] is True
        cursor.execute("SELECT pg_advisory_unlock(%s)", (migrations.ADVISORY_LOCK_KEY,))
    other.rollback()
    assert isinstance(conn, psycopg2.extensions.connection) and not conn.closed
