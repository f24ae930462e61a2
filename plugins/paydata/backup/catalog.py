"""The backup folder: one sub-folder per backup with its encrypted files and ``manifest.json``.

A backup is written into ``.<id>.partial`` and renamed to ``<id>`` only once every file and the
manifest are on disk, so a folder without the dot is always complete. The manifest lists each
file with its ciphertext size and SHA-256, the plaintext size and SHA-256, and the row counts and
checksums of every table or collection; it is authenticated with AES-GCM (an empty message, the
manifest as associated data) under the backup's data key, so an edited manifest is detected.
Retention: every manifest carries ``expires_at``; :func:`expire` deletes what has expired.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paydata.backup.stream import BackupIntegrityError, BackupKey
from paydata.crypto import IntegrityError, KeyRing

MANIFEST = "manifest.json"
DRILL = "drill.json"
BACKUP_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z(-[a-z0-9]{1,16})?$")
DEFAULT_RETENTION_DAYS = 35
RETENTION_ENV = "PAYDATA_BACKUP_RETENTION_DAYS"
BACKUP_DIR_ENV = "PAYDATA_BACKUP_DIR"


class BackupNotFound(LookupError):
    """No (complete) backup with that id, or none at all."""


def backup_root() -> Path:
    """``PAYDATA_BACKUP_DIR``, else ``<stack dir>/backups``."""
    from paydata import settings

    raw = os.environ.get(BACKUP_DIR_ENV, "").strip()
    return Path(raw) if raw else settings.stack_dir() / "backups"


def retention_days() -> int:
    raw = os.environ.get(RETENTION_ENV, "").strip()
    if not raw:
        return DEFAULT_RETENTION_DAYS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{RETENTION_ENV}={raw!r}: expected a whole number of days >= 1")
    return int(raw)


def backup_id_for(moment: dt.datetime, label: str | None = None) -> str:
    """The id of the backup for ``moment`` (UTC, second precision), e.g. ``20260301T020000Z``."""
    text = moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + (f"-{label}" if label else "")
    if not BACKUP_ID.match(text):
        raise ValueError(f"invalid backup label {label!r}: lower-case letters and digits, at most 16")
    return text


def check_id(backup_id: str) -> str:
    if not isinstance(backup_id, str) or not BACKUP_ID.match(backup_id):
        raise ValueError(f"invalid backup id {backup_id!r}: expected e.g. 20260301T020000Z")
    return backup_id


def _canonical(manifest: dict) -> bytes:
    return json.dumps({k: v for k, v in manifest.items() if k != "mac"}, sort_keys=True,
                      separators=(",", ":")).encode()


def seal(manifest: dict, key: BackupKey) -> dict:
    nonce = os.urandom(12)
    tag = AESGCM(key.plaintext).encrypt(nonce, b"", b"paydata/backup-manifest/v1" + _canonical(manifest))
    return {**manifest, "mac": (nonce + tag).hex()}


def verify(manifest: dict, ring: KeyRing) -> BackupKey:
    """Check the manifest's MAC; return the backup's data key. :class:`BackupIntegrityError` otherwise."""
    try:
        key = BackupKey.unwrap(bytes.fromhex(manifest["wrapped_key"]), ring)
        raw = bytes.fromhex(manifest["mac"])
        AESGCM(key.plaintext).decrypt(raw[:12], raw[12:], b"paydata/backup-manifest/v1" + _canonical(manifest))
    except (KeyError, ValueError, InvalidTag, IntegrityError) as exc:
        raise BackupIntegrityError(f"manifest of backup {manifest.get('backup_id')!r} failed "
                                   f"authentication: altered, or another backup KEK ({type(exc).__name__})") from None
    return key


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_manifest(root: Path, backup_id: str) -> dict:
    path = root / check_id(backup_id) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupNotFound(f"no complete backup {backup_id!r} in {root}") from None
    except ValueError:
        raise BackupIntegrityError(f"{path} is not valid JSON") from None


def list_backups(root: Path) -> list[dict]:
    """Manifests of every complete backup, oldest first (unverified; see :func:`verify`)."""
    if not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and BACKUP_ID.match(child.name) and (child / MANIFEST).exists():
            found.append(load_manifest(root, child.name))
    return sorted(found, key=lambda m: (m["started_at"], m["backup_id"]))


def latest(root: Path) -> dict:
    backups = list_backups(root)
    if not backups:
        raise BackupNotFound(f"no complete backup in {root}")
    return backups[-1]


def expire(root: Path, now: dt.datetime) -> list[str]:
    """Delete every backup whose ``expires_at`` is at or before ``now`` and partial folders older
    than a day; return the ids deleted. Idempotent for a given ``now``."""
    removed = []
    for manifest in list_backups(root):
        if dt.datetime.fromisoformat(manifest["expires_at"]) <= now:
            shutil.rmtree(root / manifest["backup_id"])
            removed.append(manifest["backup_id"])
    if root.is_dir():
        for child in root.iterdir():
            if child.name.endswith(".partial") and child.is_dir():
                age = now.timestamp() - child.stat().st_mtime
                if age > 86_400:
                    shutil.rmtree(child)
    return removed


def read_drill(root: Path, backup_id: str) -> dict | None:
    path = root / check_id(backup_id) / DRILL
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
