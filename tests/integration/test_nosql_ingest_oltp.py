"""The ingest with real seeded customers: names and phones from OLTP, a PII scan, and erasure end to end."""

from __future__ import annotations

import datetime as dt

import pytest

from paydata.crypto import default_tokeniser
from paydata.crypto.fields import key_id_of
from paydata.generator import TrafficConfig
from paydata.generator.loader import load_traffic
from paydata.generator.reference import load_merchant_profiles, seed_reference
from paydata.keystore import default_keystore
from paydata.migrations import apply_migrations
from paydata.nosql import apply_definitions
from paydata.nosql.audit import pii_findings
from paydata.nosql.hygiene import erasure_hook
from paydata.nosql.loader import ingest_files, landing_files
from paydata.nosql.scrub import KnownValues, Safeguard
from paydata.oltp.erasure import ErasureSubject, erase_customer
from paydata.oltp.reference_sync import sync_reference

pytestmark = pytest.mark.integration

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def seeded(stack, admin_connect, fresh_database, fresh_keystore, tmp_path):
    ref = admin_connect(fresh_database(prefix="ing_ref"))
    oltp = admin_connect(fresh_database(prefix="ing_oltp"))
    apply_migrations(ref, "reference")
    apply_migrations(oltp, "oltp")
    seed_reference(ref, merchants=10, seed=5, fx_start=START.date(), fx_days=2)
    sync_reference(ref, oltp)
    landing = tmp_path / "landing"
    load_traffic(oltp, TrafficConfig(payments=1500, start=START, days=1, seed=21), load_merchant_profiles(ref),
                 progress=False, landing_dir=landing, workers=0)
    return oltp, landing


def _customers(oltp) -> list[tuple[int, str, str, str]]:
    """Every customer's decrypted (id, name, email, phone), with their keys from the key store."""
    keys = default_keystore()
    with oltp.cursor() as cursor:
        cursor.execute("SELECT customer_id, name_enc, email_enc, phone_enc FROM customer ORDER BY customer_id")
        rows = cursor.fetchall()
    oltp.rollback()
    return [(cid, *(keys.cipher("customer", key_id_of(bytes(blob))).decrypt(bytes(blob), table="customer",
                                                                           column=column, pk=cid)
                    for blob, column in ((name, "name"), (email, "email"), (phone, "phone"))))
            for cid, name, email, phone in rows]


def test_seeded_customers_never_reach_mongo_and_erasure_removes_their_sessions(seeded, mongo_db):
    oltp, landing = seeded
    apply_definitions(mongo_db)
    customers = _customers(oltp)
    tokeniser = default_tokeniser()
    known = KnownValues.from_oltp(oltp, tokeniser)
    assert len(known.names) >= len({c[1] for c in customers})

    report = ingest_files(mongo_db, landing, landing_files(landing), Safeguard(tokeniser, known))

    totals = report.totals()
    assert totals["lines"] == totals["loaded"] + totals["quarantined"] + totals["duplicates"] > 3000
    assert totals["quarantined"] == 0
    assert pii_findings(mongo_db, [c[1] for c in customers], [c[2] for c in customers],
                        [c[3] for c in customers], []) == []
    texts = [doc["text"] for doc in mongo_db["feedback"].find()]
    assert any("[name]" in text for text in texts) and any("[email]" in text for text in texts)

    with oltp.cursor() as cursor:
        cursor.execute("SELECT pi.customer_id, ch.session_id FROM charge ch JOIN payment_intent pi USING "
                       "(payment_intent_id) ORDER BY ch.charge_id LIMIT 1")
        customer_id, session_id = cursor.fetchone()
    oltp.rollback()
    session_token = tokeniser.tokenise(session_id, domain="session")
    assert mongo_db["sessions"].count_documents({"session_id": session_token}) == 1

    hooks = {"nosql": erasure_hook(mongo_db, landing)}
    result = erase_customer(oltp, customer_id, "data_subject_request", hooks=hooks)

    assert result.erased_now and result.hooks["nosql"]["sessions"] >= 1 and result.hooks["nosql"]["landing_lines"] >= 3
    assert mongo_db["sessions"].count_documents({"session_id": session_token}) == 0
    assert mongo_db["telemetry"].count_documents({"samples.session_id": session_token}) == 0
    assert all(session_id.encode() not in path.read_bytes() for path in landing.glob("**/*.jsonl"))
    again = erase_customer(oltp, customer_id, "data_subject_request", hooks=hooks)
    assert not again.erased_now and again.hooks == {}
    assert erasure_hook(mongo_db, landing)(ErasureSubject(customer_id, (), (session_id,), ()))["sessions"] == 0
