"""Attack: the capture role decodes the change stream itself to read key material.

``paydata_cdc`` has REPLICATION. Table grants do not bind logical decoding: with its own slot and
``test_decoding`` it sees every change of every table in a database it can connect to. Before the
key store, the wrapped data keys lived in OLTP (``customer_data_key``) and reference
(``merchant_data_key``) and this attack read them all. Now no key material is written to a
database the role can decode, the role cannot connect to the key store, and it cannot open a
physical replication session (which would stream the WAL of every database, the key store's too).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid

import psycopg2
import psycopg2.extras
import pytest

from paydata.keystore import default_keystore
from paydata.oltp import app
from paydata.oltp.erasure import erase_customer
from paydata.oltp.keys import rotate_customer_data_key

pytestmark = pytest.mark.integration

NEXT_YEAR = dt.date.today().year + 1


def decode_everything(conn, slot: str) -> str:
    with conn.cursor() as cursor:
        cursor.execute("SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL)", (slot,))
        return "\n".join(row[0] for row in cursor.fetchall())


def own_slot(conn) -> str:
    slot = f"attacker_{uuid.uuid4().hex[:10]}"
    conn.autocommit = True
    with conn.cursor() as cursor:
        # Temporary: dropped when the session ends, so the test never leaves WAL pinned.
        cursor.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding', true)", (slot,))
    return slot


def test_a_capture_role_slot_with_test_decoding_sees_no_key_material(stack, cdc_connect, stack_oltp):
    from tests.security.conftest import MERCHANT

    oltp_attacker = cdc_connect("oltp")
    reference_attacker = cdc_connect("reference")
    oltp_slot, reference_slot = own_slot(oltp_attacker), own_slot(reference_attacker)
    keys = default_keystore()

    customer_id = app.create_customer(stack_oltp, MERCHANT, "mallory.target@example.com", "Target Person",
                                      "+1 555 0100 999", "US")
    card = app.add_card(stack_oltp, customer_id, "4242424242424242", 12, NEXT_YEAR)
    app.create_payment(stack_oltp, MERCHANT, customer_id, card, 2_500, outcome="succeeded",
                       ip_address="198.51.100.77", device_id="dev-target", session_id="sess-target")
    first_key = keys.key_ids("customer", customer_id)[0]
    first_wrapped = keys.wrapped("customer", first_key)
    rotate_customer_data_key(stack_oltp, customer_id, reason="suspected_exposure")
    second_key = keys.key_ids("customer", customer_id)[0]
    second_wrapped = keys.wrapped("customer", second_key)
    merchant_key = keys.create("merchant", 990_002)
    erase_customer(stack_oltp, customer_id, "data_subject_request")

    seen = decode_everything(oltp_attacker, oltp_slot) + decode_everything(reference_attacker, reference_slot)
    for conn in (oltp_attacker, reference_attacker):
        conn.close()  # its temporary slot goes with it and pins no WAL

    assert f"table public.customer: INSERT: customer_id[bigint]:{customer_id}" in seen, "the attack itself works"
    for wrapped in (first_wrapped, second_wrapped, merchant_key.wrapped):
        assert wrapped.hex() not in seen, "a wrapped data key reached a decodable change stream"
    assert not re.search(r"table \w+\.\w*data_key\b", seen), "a key table is written in a decodable database"
    assert "mallory.target" not in seen and "Target Person" not in seen


def test_the_capture_role_cannot_reach_the_key_store_or_stream_physical_wal(stack, cdc_connect):
    for database in ("keystore", "restore_drill_keystore"):
        with pytest.raises(psycopg2.OperationalError, match="pg_hba.conf rejects|permission denied"):
            cdc_connect(database)
    with pytest.raises(psycopg2.OperationalError, match="pg_hba.conf rejects"):
        cdc_connect("oltp", connection_factory=psycopg2.extras.PhysicalReplicationConnection)
    # Logical decoding of its own sources still works (that is its job).
    conn = cdc_connect("oltp", connection_factory=psycopg2.extras.LogicalReplicationConnection)
    assert not conn.closed
