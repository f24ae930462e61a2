"""The backup stream format: round trip, and every way a file can be wrong fails loudly."""

from __future__ import annotations

import io
import os
import struct

import pytest

from paydata.backup import catalog
from paydata.backup.stream import (
    MAGIC,
    BackupIntegrityError,
    BackupKey,
    decrypt_stream,
    encrypt_stream,
    read_header,
)
from paydata.crypto import KeyRing, UnknownKeyError

RING = KeyRing({"bk1": os.urandom(32)})


def sealed(data: bytes, chunk_size: int = 64, artifact: str = "oltp", backup_id: str = "20260101T000000Z",
           key: BackupKey | None = None) -> bytes:
    out = io.BytesIO()
    pieces = [data[i:i + 37] for i in range(0, len(data), 37)]
    encrypt_stream(pieces, out, key or BackupKey.new(RING), backup_id=backup_id, artifact=artifact,
                   chunk_size=chunk_size)
    return out.getvalue()


def opened(blob: bytes, ring: KeyRing = RING, **expect) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(blob), ring, **expect))


def frames(blob: bytes) -> tuple[bytes, list[bytes]]:
    """Split a file into its header part and its frames (length prefix included)."""
    handle = io.BytesIO(blob)
    read_header(handle)
    head = blob[:handle.tell()]
    parts = []
    while True:
        raw = handle.read(4)
        if not raw:
            return head, parts
        (length,) = struct.unpack(">I", raw)
        parts.append(raw + handle.read(length))


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 1000])
def test_round_trip_at_chunk_boundaries(size):
    data = os.urandom(size)
    blob = sealed(data)
    assert blob.startswith(MAGIC)
    assert opened(blob, expect_backup="20260101T000000Z", expect_artifact="oltp") == data


def test_plaintext_never_appears_in_the_file():
    data = b"alice@example.com,+1 555 0100 200," * 100
    blob = sealed(data)
    # whole values: a three-byte needle turns up by chance in a few kilobytes of random ciphertext
    assert b"alice@example.com" not in blob and b"+1 555 0100" not in blob


def test_a_flipped_bit_anywhere_after_the_header_fails():
    blob = bytearray(sealed(os.urandom(300)))
    head, _ = frames(bytes(blob))
    for position in (len(head) + 10, len(blob) // 2, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(BackupIntegrityError):
            opened(bytes(tampered))


def test_a_changed_header_fails():
    blob = sealed(b"x" * 200)
    tampered = blob.replace(b'"artifact":"oltp"', b'"artifact":"oltq"')
    with pytest.raises(BackupIntegrityError, match="failed authentication"):
        opened(tampered)


def test_truncation_at_a_chunk_boundary_and_inside_a_chunk_fails():
    blob = sealed(os.urandom(300))
    head, parts = frames(blob)
    with pytest.raises(BackupIntegrityError, match="truncated"):
        opened(head + b"".join(parts[:-1]))
    with pytest.raises(BackupIntegrityError, match="truncated"):
        opened(blob[:-5])
    with pytest.raises(BackupIntegrityError, match="no chunks"):
        opened(head)


def test_reordered_duplicated_and_appended_chunks_fail():
    blob = sealed(os.urandom(300))
    head, parts = frames(blob)
    with pytest.raises(BackupIntegrityError):
        opened(head + parts[1] + parts[0] + b"".join(parts[2:]))
    with pytest.raises(BackupIntegrityError):
        opened(head + parts[0] + b"".join(parts))
    with pytest.raises(BackupIntegrityError):
        opened(blob + parts[-1])


def test_a_chunk_from_another_file_of_the_same_backup_fails():
    key = BackupKey.new(RING)
    first, second = sealed(os.urandom(200), key=key), sealed(os.urandom(200), artifact="warehouse", key=key)
    head, parts = frames(first)
    _, others = frames(second)
    with pytest.raises(BackupIntegrityError):
        opened(head + others[0] + b"".join(parts[1:]))
    with pytest.raises(BackupIntegrityError, match="artifact"):
        opened(second, expect_artifact="oltp")


def test_wrong_or_missing_backup_kek_fails():
    blob = sealed(b"data" * 50)
    with pytest.raises(BackupIntegrityError, match="does not open"):
        opened(blob, KeyRing({"bk1": os.urandom(32)}))
    with pytest.raises(UnknownKeyError):
        opened(blob, KeyRing({"bk2": os.urandom(32)}))


def test_not_a_backup_file():
    with pytest.raises(BackupIntegrityError, match="magic"):
        opened(b"PGDMP\x01\x0e\x00" + os.urandom(100))


def test_manifest_is_sealed():
    key = BackupKey.new(RING)
    manifest = catalog.seal({"backup_id": "20260101T000000Z", "wrapped_key": key.wrapped.hex(),
                             "artifacts": [{"rows": 3}]}, key)
    assert catalog.verify(manifest, RING).plaintext == key.plaintext
    edited = {**manifest, "artifacts": [{"rows": 4}]}
    with pytest.raises(BackupIntegrityError, match="manifest"):
        catalog.verify(edited, RING)


def test_backup_ids_and_retention(tmp_path, monkeypatch):
    import datetime as dt

    assert catalog.backup_id_for(dt.datetime(2026, 3, 1, 2, tzinfo=dt.UTC)) == "20260301T020000Z"
    with pytest.raises(ValueError):
        catalog.check_id("../etc")
    monkeypatch.setenv(catalog.RETENTION_ENV, "0")
    with pytest.raises(ValueError, match="days"):
        catalog.retention_days()
    for backup_id, expires in (("20260101T000000Z", "2026-01-10T00:00:00+00:00"),
                               ("20260105T000000Z", "2026-02-10T00:00:00+00:00")):
        (tmp_path / backup_id).mkdir()
        catalog.write_json(tmp_path / backup_id / catalog.MANIFEST,
                           {"backup_id": backup_id, "started_at": backup_id, "expires_at": expires})
    now = dt.datetime(2026, 1, 20, tzinfo=dt.UTC)
    assert catalog.expire(tmp_path, now) == ["20260101T000000Z"]
    assert catalog.expire(tmp_path, now) == []
    assert [m["backup_id"] for m in catalog.list_backups(tmp_path)] == ["20260105T000000Z"]
