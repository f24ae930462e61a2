"""Attacks on the OLTP audit trail, replayed: each is refused by the database or named by verify.

The application writes through ``audit_append`` as a member of ``oltp_app``; the attacker with the
most power short of the superuser is the schema owner (``oltp_owner``, used by migrations), who can
disable the table's triggers. ``verify_chain`` runs as a member of ``auditor``.
"""

from __future__ import annotations

import re

import psycopg2
import pytest

from paydata.oltp import audit

from .privilege_fixtures import SQLSTATE_DENIED, as_owner, login, migrated_database

pytestmark = pytest.mark.integration

EVENTS = 5


@pytest.fixture
def chain(stack, admin_connect):
    """A migrated OLTP database with customers 1-3 and five audit rows written by the application;
    yields ``{"owner", "app", "auditor"}`` connections."""
    groups = {"app": "oltp_app", "auditor": "auditor"}
    with migrated_database(stack, admin_connect, "sec_audit", "oltp_owner", "oltp", groups) as (dbname, owner, logins):
        with owner.cursor() as cursor:
            cursor.execute("INSERT INTO currency_ref (currency_code, minor_units) VALUES ('USD', 2)")
            cursor.execute("INSERT INTO merchant_ref (merchant_id, country_code, default_currency_code, status) "
                           "VALUES (1, 'US', 'USD', 'active')")
            cursor.execute("INSERT INTO customer (merchant_id) SELECT 1 FROM generate_series(1, 3)")
        owner.commit()
        conns = {label: login(stack, role, password, dbname) for label, (role, password) in logins.items()}
        with conns["app"].cursor() as cursor:
            for number in range(EVENTS):
                audit.record(cursor, "personal_data_read", "customer", number % 3 + 1,
                             reason="support_request", detail={"fields": ["email"]})
        conns["app"].commit()
        yield {"owner": owner, **conns}


def test_an_untouched_chain_verifies_and_names_its_head(chain):
    report = audit.verify_chain(chain["auditor"])
    assert report.ok and report.rows == report.head_position == EVENTS and report.broken_at is None
    with chain["auditor"].cursor() as cursor:
        cursor.execute("SELECT actor, encode(row_hash, 'hex') FROM audit_log ORDER BY chain_position DESC LIMIT 1")
        actor, head = cursor.fetchone()
    chain["auditor"].rollback()
    assert head == report.head_hash
    assert actor == chain["app"].info.user, "the actor is the login, not the function's owner"
    assert audit.verify_chain(chain["auditor"], anchor=(EVENTS, head)).ok


@pytest.mark.parametrize(("subject_table", "subject_id"), [("customer", 999), ("charge", 1), ("customer_data_key", 1)])
def test_a_forged_subject_is_refused(chain, subject_table, subject_id):
    with chain["app"].cursor() as cursor, pytest.raises(psycopg2.errors.ForeignKeyViolation):
        audit.record(cursor, "personal_data_read", subject_table, subject_id, reason="support_request")
    chain["app"].rollback()
    assert audit.verify_chain(chain["auditor"]).rows == EVENTS


@pytest.mark.parametrize("statement", [
    "INSERT INTO audit_log (action, subject_table, subject_id) VALUES ('customer_erased', 'customer', 1)",
    "UPDATE audit_log SET reason = 'legal_order'",
    "DELETE FROM audit_log",
    "UPDATE audit_chain_head SET chain_position = 0",
    "ALTER TABLE audit_log DISABLE TRIGGER audit_log_insert_only",
])
def test_the_application_cannot_write_around_the_function(chain, statement):
    with chain["app"].cursor() as cursor, pytest.raises(psycopg2.Error) as caught:
        cursor.execute(statement)
    chain["app"].rollback()
    assert caught.value.pgcode == SQLSTATE_DENIED


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET reason = 'legal_order'", "DELETE FROM audit_log", "TRUNCATE audit_log"])
def test_with_its_triggers_on_even_the_owner_cannot_change_a_row(chain, statement):
    with chain["owner"].cursor() as cursor, pytest.raises(psycopg2.errors.RestrictViolation):
        cursor.execute(statement)
    chain["owner"].rollback()


@pytest.mark.parametrize(("attack", "statements", "broken_at", "problem"), [
    ("edit", ["UPDATE audit_log SET reason = 'legal_order' WHERE chain_position = 3"], 3, "edited"),
    ("edit detail", ["UPDATE audit_log SET detail = '{\"fields\": []}' WHERE chain_position = 2"], 2, "edited"),
    ("delete", ["DELETE FROM audit_log WHERE chain_position = 2"], 2, "missing"),
    ("reorder", ["UPDATE audit_log SET chain_position = -chain_position WHERE chain_position IN (2, 3)",
                 "UPDATE audit_log SET chain_position = CASE chain_position WHEN -2 THEN 3 ELSE 2 END "
                 "WHERE chain_position < 0"], 2, "prev_hash"),
    ("delete the newest", ["DELETE FROM audit_log WHERE chain_position = 5"], 5, "removed from the end"),
    ("truncate", ["DELETE FROM audit_log"], 1, "removed from the end"),
    ("insert a forged row", [
        "INSERT INTO audit_log (action, subject_table, subject_id, chain_position, prev_hash, row_hash) "
        "SELECT 'customer_erased', 'customer', 1, chain_position + 1, row_hash, sha256('forged') "
        "FROM audit_chain_head"], 6, "edited"),
])
def test_tampering_with_the_triggers_off_is_named_by_verify(chain, attack, statements, broken_at, problem):
    as_owner(chain, *statements)
    report = audit.verify_chain(chain["auditor"])
    assert not report.ok, attack
    assert report.broken_at == broken_at and problem in report.problem, report


def test_a_chain_rewritten_with_the_owners_rights_is_caught_only_against_an_anchor(chain):
    anchor = audit.verify_chain(chain["auditor"])
    # The owner edits row 2, then recomputes every later link and the head, as the trigger would.
    as_owner(chain, "UPDATE audit_log SET reason = 'legal_order' WHERE chain_position = 2", """
        DO $$
        DECLARE r record; previous bytea;
        BEGIN
            SELECT row_hash INTO previous FROM audit_log WHERE chain_position = 1;
            FOR r IN SELECT * FROM audit_log WHERE chain_position >= 2 ORDER BY chain_position LOOP
                UPDATE audit_log SET prev_hash = previous,
                    row_hash = audit_row_hash(r.chain_position, r.audit_log_id, r.actor, r.action, r.subject_table,
                                              r.subject_id, r.reason, r.detail, r.occurred_at, previous)
                WHERE audit_log_id = r.audit_log_id RETURNING row_hash INTO previous;
            END LOOP;
            UPDATE audit_chain_head SET row_hash = previous;
        END $$""")
    assert audit.verify_chain(chain["auditor"]).ok, "a consistent rewrite passes on its own"
    report = audit.verify_chain(chain["auditor"], anchor=(anchor.head_position, anchor.head_hash))
    assert not report.ok and report.broken_at == EVENTS and "rewritten" in report.problem


def test_the_cli_exits_1_and_names_the_broken_link(chain, monkeypatch, capsys):
    import json

    from paydata import settings
    from paydata.oltp.__main__ import main

    as_owner(chain, "UPDATE audit_log SET reason = 'legal_order' WHERE chain_position = 4")
    auditor = chain["auditor"].info
    monkeypatch.setenv("AIRFLOW_CONN_" + settings.OLTP_AUDITOR_CONN_ID.upper(), json.dumps({
        "conn_type": "postgres", "host": auditor.host, "port": auditor.port, "login": auditor.user,
        "password": chain["auditor"].info.password, "schema": auditor.dbname}))
    assert main(["audit-verify", "--db", "oltp"]) == 1
    report = json.loads(capsys.readouterr().out)["oltp"]
    assert report["broken_at"] == 4 and not report["ok"]
    with pytest.raises(SystemExit):
        main(["audit-verify", "--anchor", "not-an-anchor"])
    assert "anchor must look like" in capsys.readouterr().err


def test_reading_a_customer_through_the_application_leaves_an_audit_row_and_a_log_line(stack, stack_oltp):
    """On the real stack, as the application's own login (``paydata_oltp_app``)."""
    from paydata import settings
    from paydata.oltp import app
    from paydata.stack import pgroles
    from paydata.stack.postgres import resolve_binaries

    from .conftest import MERCHANT

    conn = settings.pg_connect(settings.OLTP_APP_CONN_ID)
    auditor = settings.pg_connect(settings.OLTP_AUDITOR_CONN_ID)
    try:
        customer_id = app.create_customer(conn, MERCHANT, "reader@example.com", name="Rita Reader")
        log_offset = stack.pg_log.stat().st_size
        assert app.read_customer(conn, customer_id, purpose="fraud_review")["email"] == "reader@example.com"
        events = audit.audit_events(auditor, "customer", customer_id)
        assert [(e["action"], e["actor"], e["reason"], e["detail"]) for e in events] == [
            ("personal_data_read", "paydata_app", "fraud_review", {"fields": ["email", "name"]})]
        assert "reader@example.com" not in str(events) and "Rita" not in str(events)
        assert audit.verify_chain(auditor).ok
        with pytest.raises(audit.InvalidRequest, match="purpose"):
            app.read_customer(conn, customer_id, purpose="asked by reader@example.com")
    finally:
        conn.close()
        auditor.close()
    with open(stack.pg_log, "rb") as handle:
        handle.seek(log_offset)
        logged = handle.read().decode(errors="replace")
    has_pgaudit = pgroles.pgaudit_library(resolve_binaries(stack.pg_binaries).bin_dir) is not None
    # One entry per log record: a statement's continuation lines carry no prefix of their own.
    lines = [entry for entry in re.split(r"\n(?=\d{4}-\d\d-\d\d )", logged) if "user=paydata_app db=oltp" in entry]
    if has_pgaudit:
        assert any("AUDIT: SESSION" in line and "customer" in line for line in lines), logged[-2000:]
    else:
        assert any("statement:" in line and "FROM customer" in line for line in lines), logged[-2000:]
        assert any("statement:" in line and "audit_append" in line for line in lines), logged[-2000:]
