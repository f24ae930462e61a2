"""The NoSQL ingest's bulk decryption of known customers leaves an audit row, or returns nothing.

``KnownValues.from_oltp`` decrypts every customer's name and phone to build the scrubbing set. It
runs as the application role and writes one ``personal_data_read`` row per run about the whole
``customer`` table (who, purpose, fields, how many customers) in the reading transaction. A reader
that may select customers but not write the audit row gets an error, never the set.
"""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import sql

from paydata.crypto import default_tokeniser
from paydata.nosql.scrub import KnownValues
from paydata.oltp import app, audit

from .privilege_fixtures import SQLSTATE_DENIED, login, migrated_database

pytestmark = pytest.mark.integration

CUSTOMERS = [("Ada Lovelace", "+44 20 7946 0018"), ("Grace Hopper", "+1 212 555 0147"), ("Alan Turing", None)]


@pytest.fixture
def oltp(stack, admin_connect, fresh_keystore):
    """A migrated OLTP database with three encrypted customers; ``{"owner", "app", "reader", ...}``."""
    groups = {"app": "oltp_app", "auditor": "auditor", "reader": None}
    with migrated_database(stack, admin_connect, "sec_bulk_read", "oltp_owner", "oltp", groups) as (dbname, owner, logins):
        with owner.cursor() as cursor:
            cursor.execute("INSERT INTO currency_ref (currency_code, minor_units) VALUES ('USD', 2)")
            cursor.execute("INSERT INTO merchant_ref (merchant_id, country_code, default_currency_code, status) "
                           "VALUES (1, 'US', 'USD', 'active')")
        owner.commit()
        ids = [app.create_customer(owner, 1, f"c{number}@example.com", name, phone)
               for number, (name, phone) in enumerate(CUSTOMERS)]
        with owner.cursor() as cursor:  # a reader of customers outside every group: no audit function
            cursor.execute(sql.SQL("GRANT SELECT ON customer TO {}").format(sql.Identifier(logins["reader"][0])))
        owner.commit()
        conns = {label: login(stack, role, password, dbname) for label, (role, password) in logins.items()}
        yield {"owner": owner, "ids": ids, "logins": logins, **conns}


def bulk_reads(conn) -> list[dict]:
    return [event for event in audit.audit_events(conn, "customer") if event["subject_id"] is None]


def test_the_bulk_decryption_writes_one_audit_row_per_run(oltp):
    tokeniser = default_tokeniser()
    known = KnownValues.from_oltp(oltp["app"], tokeniser)
    assert known.names == KnownValues.from_plaintext(tokeniser, [name for name, _ in CUSTOMERS]).names
    assert len(known.phones) >= 2

    events = bulk_reads(oltp["auditor"])
    assert len(events) == 1
    event = events[0]
    assert (event["action"], event["subject_table"], event["reason"]) == (
        "personal_data_read", "customer", "pii_scrubbing")
    assert event["actor"] == oltp["logins"]["app"][0], "who: the login that decrypted"
    assert event["detail"] == {"fields": ["name", "phone"], "subjects": 3, "skipped": 0, "job": "nosql_ingest"}

    KnownValues.from_oltp(oltp["app"], tokeniser, purpose="pii_rescan")
    assert [e["reason"] for e in bulk_reads(oltp["auditor"])] == ["pii_scrubbing", "pii_rescan"]
    assert audit.verify_chain(oltp["auditor"]).ok, "the rows are links of the hash chain"


def test_a_customer_whose_key_is_gone_is_counted_as_skipped(oltp):
    from paydata.keystore import default_keystore

    default_keystore().destroy("customer", oltp["ids"][0])
    KnownValues.from_oltp(oltp["app"], default_tokeniser())
    assert bulk_reads(oltp["auditor"])[0]["detail"]["subjects"] == 2
    assert bulk_reads(oltp["auditor"])[0]["detail"]["skipped"] == 1


def test_a_reader_that_cannot_write_the_audit_row_gets_nothing(oltp):
    with pytest.raises(psycopg2.Error) as caught:
        KnownValues.from_oltp(oltp["reader"], default_tokeniser())
    assert caught.value.pgcode == SQLSTATE_DENIED
    assert bulk_reads(oltp["auditor"]) == []
    with pytest.raises(ValueError, match="reason"):
        KnownValues.from_oltp(oltp["app"], default_tokeniser(), purpose="Free text, not a code")
    assert bulk_reads(oltp["auditor"]) == []
