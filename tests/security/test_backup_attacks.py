"""Attacks on the backups: read PII from them, alter them, restore them with the wrong key.

A backup of the real stack (every database, the key store included, and Mongo) is taken into a
temporary folder; the bytes on disk must hold no plaintext PII and no key material, the restore
drill must reconcile, and a flipped bit, a truncated file, an edited manifest, a swapped file or
another backup KEK must each stop the restore with an error.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil

import pytest

from paydata import settings
from paydata.backup import BackupIntegrityError, catalog, restore_drill, take_backup
from paydata.crypto import KeyRing
from paydata.keystore import default_keystore
from paydata.oltp import app
from tests.security.conftest import MERCHANT

pytestmark = pytest.mark.integration

NEXT_YEAR = dt.date.today().year + 1


@pytest.fixture(scope="module")
def backed_up(stack, stack_oltp, tmp_path_factory):
    email, name = f"backup.subject.{os.getpid()}@example.com", "Backup Subject"
    customer_id = app.create_customer(stack_oltp, MERCHANT, email, name, "+1 555 0100 777", "US")
    app.add_card(stack_oltp, customer_id, "4242424242424242", 12, NEXT_YEAR)
    keys = default_keystore()
    wrapped = keys.wrapped("customer", keys.key_ids("customer", customer_id)[0])
    root = tmp_path_factory.mktemp("backups")
    manifest = take_backup(root, catalog.backup_id_for(dt.datetime.now(dt.UTC)))
    return {"root": root, "manifest": manifest, "email": email, "name": name, "wrapped": wrapped}


def test_backup_bytes_hold_no_plaintext_pii_or_key_material(backed_up):
    root, manifest = backed_up["root"], backed_up["manifest"]
    assert {a["artifact"] for a in manifest["artifacts"]} == {"reference", "oltp", "warehouse", "keystore", "mongo"}
    assert all(a["tables"] for a in manifest["artifacts"] if a["artifact"] != "mongo")
    needles = [backed_up["email"].encode(), backed_up["name"].encode(), backed_up["wrapped"],
               b"PGDMP", b"customer_data_key", b"4242424242424242"]  # the manifest names tables, holds no data
    for path in (root / manifest["backup_id"]).iterdir():
        data = path.read_bytes()
        for needle in needles if path.suffix == ".pdbk" else needles[:3]:
            assert needle not in data, f"{path.name} holds {needle[:20]!r} in clear"
    modes = {oct((root / manifest["backup_id"] / a["file"]).stat().st_mode & 0o777) for a in manifest["artifacts"]}
    assert modes == {"0o600"}


def test_restore_drill_reconciles_with_the_manifest(backed_up):
    result = restore_drill(backed_up["root"], backed_up["manifest"]["backup_id"])
    assert result.ok, result.problems
    drill = catalog.read_drill(backed_up["root"], backed_up["manifest"]["backup_id"])
    assert drill["ok"] and drill["finished_lsn"]
    # The drill keeps no copy: its scratch databases are empty again.
    conn = settings.pg_connect(settings.OLTP_CONN_ID, dbname=settings.restore_drill_database("oltp"))
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
        assert cursor.fetchone() == (0,)
    conn.close()


def copy_of(backed_up, tmp_path):
    source = backed_up["root"] / backed_up["manifest"]["backup_id"]
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return tmp_path, backed_up["manifest"]["backup_id"], target


@pytest.mark.parametrize("damage", ["flip", "truncate", "swap", "manifest"])
def test_an_altered_backup_fails_loudly(backed_up, tmp_path, damage):
    root, backup_id, folder = copy_of(backed_up, tmp_path)
    oltp, keystore = folder / "oltp.pdbk", folder / "keystore.pdbk"
    if damage == "flip":
        data = bytearray(oltp.read_bytes())
        data[len(data) // 2] ^= 0x04
        oltp.write_bytes(bytes(data))
    elif damage == "truncate":
        oltp.write_bytes(oltp.read_bytes()[:-100])
    elif damage == "swap":
        oltp.write_bytes(keystore.read_bytes())
    else:
        text = (folder / catalog.MANIFEST).read_text().replace('"rows": ', '"rows": 1', 1)
        (folder / catalog.MANIFEST).write_text(text)
    with pytest.raises(BackupIntegrityError):
        restore_drill(root, backup_id)


def test_a_wrong_backup_kek_fails_loudly(backed_up, tmp_path):
    root, backup_id, _ = copy_of(backed_up, tmp_path)
    other = KeyRing({backed_up["manifest"]["kek_id"]: os.urandom(32)})
    with pytest.raises(BackupIntegrityError, match="another backup KEK|does not open"):
        restore_drill(root, backup_id, ring=other)
