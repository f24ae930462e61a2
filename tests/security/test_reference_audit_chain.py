"""Attacks on the reference database's audit trail (migration V009), replayed like the OLTP ones.

The reference writers are owner jobs (the KEK rewrap of merchant keys), so the attacker here is
the schema owner ``reference_owner`` with the triggers switched off; ``verify_chain`` runs as a
member of ``auditor``. Each forgery, edit, deletion and reordering is refused or named by verify.
"""

from __future__ import annotations

import json

import psycopg2
import pytest

from paydata.oltp import audit

from .privilege_fixtures import SQLSTATE_DENIED, as_owner, login, migrated_database

pytestmark = pytest.mark.integration

EVENTS = 5


def record(cursor, action: str, subject_table: str, subject_id: int | None) -> int:
    return audit.record(cursor, action, subject_table, subject_id, reason="kek_rotation",
                        detail={"rewrapped": 1}, database="reference")


@pytest.fixture
def chain(stack, admin_connect):
    """A migrated reference database with one merchant and five audit rows written by its owner;
    yields ``{"owner", "auditor", "other", "merchant_id"}``."""
    groups = {"auditor": "auditor", "other": "oltp_app"}
    with migrated_database(stack, admin_connect, "sec_ref_audit", "reference_owner", "reference",
                           groups) as (dbname, owner, logins):
        with owner.cursor() as cursor:
            cursor.execute("INSERT INTO currency (currency_code, numeric_code, name, minor_units) "
                           "VALUES ('USD', '840', 'US Dollar', 2)")
            cursor.execute("INSERT INTO country (country_code, alpha3_code, numeric_code, name) "
                           "VALUES ('US', 'USA', '840', 'United States')")
            cursor.execute("INSERT INTO merchant_risk_tier VALUES ('low', 'Low risk', 0)")
            cursor.execute("INSERT INTO merchant (legal_name, mcc, country_code, default_currency_code, "
                           "risk_tier_code) VALUES ('Acme', '5411', 'US', 'USD', 'low') RETURNING merchant_id")
            merchant_id = cursor.fetchone()[0]
            for number in range(EVENTS):
                if number % 2:
                    record(cursor, "data_keys_rewrapped", "merchant_data_key", None)
                else:
                    record(cursor, "merchant_data_key_rotated", "merchant", merchant_id)
        owner.commit()
        conns = {label: login(stack, role, password, dbname) for label, (role, password) in logins.items()}
        yield {"owner": owner, "merchant_id": merchant_id, **conns}


def verify(chain, **kwargs) -> audit.ChainReport:
    return audit.verify_chain(chain["auditor"], database="reference", **kwargs)


def test_an_untouched_reference_chain_verifies_and_its_actor_is_the_login(chain):
    report = verify(chain)
    assert report.ok and report.rows == report.head_position == EVENTS
    with chain["auditor"].cursor() as cursor:
        cursor.execute("SELECT DISTINCT actor FROM audit_log")
        assert cursor.fetchall() == [("reference_owner",)]
    chain["auditor"].rollback()
    assert verify(chain, anchor=(EVENTS, report.head_hash)).ok


@pytest.mark.parametrize(("subject_table", "subject_id"), [
    ("merchant", 999_999), ("currency", 1), ("merchant_data_key", 1)])
def test_a_forged_subject_is_refused(chain, subject_table, subject_id):
    with chain["owner"].cursor() as cursor, pytest.raises(psycopg2.errors.ForeignKeyViolation):
        record(cursor, "merchant_data_key_rotated", subject_table, subject_id)
    chain["owner"].rollback()
    assert verify(chain).rows == EVENTS


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET reason = 'legal_order'", "DELETE FROM audit_log", "TRUNCATE audit_log"])
def test_with_its_triggers_on_even_the_owner_cannot_change_a_row(chain, statement):
    with chain["owner"].cursor() as cursor, pytest.raises(psycopg2.errors.RestrictViolation):
        cursor.execute(statement)
    chain["owner"].rollback()


@pytest.mark.parametrize(("who", "statement"), [
    ("auditor", "INSERT INTO audit_log (action, subject_table) VALUES ('data_keys_rewrapped', 'merchant_data_key')"),
    ("auditor", "UPDATE audit_chain_head SET chain_position = 0"),
    ("auditor", "SELECT audit_append('data_keys_rewrapped', 'merchant_data_key', NULL, 'kek_rotation', '{}')"),
    ("auditor", "ALTER TABLE audit_log DISABLE TRIGGER audit_log_insert_only"),
    ("other", "SELECT count(*) FROM audit_log"),
    ("other", "SELECT audit_append('data_keys_rewrapped', 'merchant_data_key', NULL, 'kek_rotation', '{}')"),
])
def test_no_other_role_writes_or_reads_around_the_chain(chain, who, statement):
    with chain[who].cursor() as cursor, pytest.raises(psycopg2.Error) as caught:
        cursor.execute(statement)
    chain[who].rollback()
    assert caught.value.pgcode == SQLSTATE_DENIED


@pytest.mark.parametrize(("attack", "statements", "broken_at", "problem"), [
    ("edit", ["UPDATE audit_log SET reason = 'legal_order' WHERE chain_position = 3"], 3, "edited"),
    ("edit detail", ["UPDATE audit_log SET detail = '{\"rewrapped\": 9}' WHERE chain_position = 2"], 2, "edited"),
    ("delete", ["DELETE FROM audit_log WHERE chain_position = 2"], 2, "missing"),
    ("reorder", ["UPDATE audit_log SET chain_position = -chain_position WHERE chain_position IN (2, 3)",
                 "UPDATE audit_log SET chain_position = CASE chain_position WHEN -2 THEN 3 ELSE 2 END "
                 "WHERE chain_position < 0"], 2, "prev_hash"),
    ("delete the newest", ["DELETE FROM audit_log WHERE chain_position = 5"], 5, "removed from the end"),
    ("delete everything", ["DELETE FROM audit_log"], 1, "removed from the end"),
    ("forge a row", [
        "INSERT INTO audit_log (action, subject_table, chain_position, prev_hash, row_hash) "
        "SELECT 'data_keys_rewrapped', 'merchant_data_key', chain_position + 1, row_hash, sha256('forged') "
        "FROM audit_chain_head"], 6, "edited"),
])
def test_tampering_with_the_triggers_off_is_named_by_verify(chain, attack, statements, broken_at, problem):
    as_owner(chain, *statements)
    report = verify(chain)
    assert not report.ok, attack
    assert report.broken_at == broken_at and problem in report.problem, report


def test_the_cli_verifies_the_reference_chain_and_exits_1_when_broken(chain, monkeypatch, capsys):
    from paydata.oltp.__main__ import AUDITOR_CONNECTIONS, main

    auditor = chain["auditor"].info
    monkeypatch.setenv("AIRFLOW_CONN_" + AUDITOR_CONNECTIONS["reference"].upper(), json.dumps({
        "conn_type": "postgres", "host": auditor.host, "port": auditor.port, "login": auditor.user,
        "password": auditor.password, "schema": auditor.dbname}))
    assert main(["audit-verify", "--db", "reference"]) == 0
    assert json.loads(capsys.readouterr().out)["reference"]["ok"] is True
    as_owner(chain, "DELETE FROM audit_log WHERE chain_position = 4")
    assert main(["audit-verify", "--db", "reference"]) == 1
    report = json.loads(capsys.readouterr().out)["reference"]
    assert report["broken_at"] == 4 and "missing" in report["problem"]
