"""Generated passwords and keys under ``<stack>/secrets`` (files 0600, created once, never rotated here)."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from pathlib import Path

from paydata.stack.config import StackConfig, StackError

KEY_LINE = re.compile(r"^([A-Za-z0-9_-]+):([A-Za-z0-9+/]{43}=)$")


def write_private(path: Path, data: bytes, uid: int | None = None, gid: int | None = None) -> None:
    """Atomically write ``data`` to ``path`` with mode 0600 (owned by ``uid``/``gid`` when given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o600)
        if uid is not None:
            os.fchown(fd, uid, gid if gid is not None else -1)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_secrets_dir(config: StackConfig) -> Path:
    # 0711: the Postgres server user must reach its own key file inside, but nobody may list the folder.
    config.secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.secrets_dir, 0o711)
    return config.secrets_dir


def ensure_password(config: StackConfig, role: str) -> str:
    """Return the stored password for Postgres ``role``, generating and storing one on first use."""
    return _ensure_password_file(config, config.password_file(role))


def ensure_mongo_password(config: StackConfig, user: str) -> str:
    """Return the stored password for MongoDB ``user``, generating and storing one on first use."""
    return _ensure_password_file(config, config.mongo_password_file(user))


def _ensure_password_file(config: StackConfig, path: Path) -> str:
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    ensure_secrets_dir(config)
    value = secrets.token_urlsafe(24)
    write_private(path, (value + "\n").encode())
    return value


def ensure_token(config: StackConfig, name: str, nbytes: int = 32) -> str:
    """Return the stored random url-safe token ``name`` (e.g. Airflow's JWT secret), creating it once."""
    path = config.secrets_dir / name
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    ensure_secrets_dir(config)
    value = secrets.token_urlsafe(nbytes)
    write_private(path, (value + "\n").encode())
    return value


# The Airflow UI/REST users of the local stack and their simple-auth-manager roles.
AIRFLOW_USERS = {"admin": "admin", "viewer": "viewer"}


def ensure_airflow_users(config: StackConfig) -> dict[str, str]:
    """The Airflow users' passwords (``{user: password}``), generated once into
    ``config.airflow_users_file`` (mode 0600), the JSON file Airflow's simple auth manager reads.

    A user missing from the file gets a new password; existing passwords are kept. A file that is not
    a JSON object is replaced (every user gets a new password).
    """
    path = config.airflow_users_file
    passwords: dict[str, str] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text() or "{}")
            if isinstance(loaded, dict):
                passwords = {str(k): str(v) for k, v in loaded.items() if v}
        except json.JSONDecodeError:
            passwords = {}
    missing = [user for user in AIRFLOW_USERS if user not in passwords]
    if missing or not path.exists():
        for user in missing:
            passwords[user] = secrets.token_urlsafe(18)
        ensure_secrets_dir(config)
        write_private(path, (json.dumps(passwords, indent=1) + "\n").encode())
    return {user: passwords[user] for user in AIRFLOW_USERS}


def ensure_fernet_key(config: StackConfig) -> str:
    """Airflow's Fernet key (urlsafe base64 of 32 bytes), created once."""
    path = config.secrets_dir / "airflow_fernet_key"
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    ensure_secrets_dir(config)
    value = base64.urlsafe_b64encode(os.urandom(32)).decode()
    write_private(path, (value + "\n").encode())
    return value


def render_key_line(key_id: str, key: bytes) -> str:
    """One ``<key_id>:<base64>`` line of a key file; keys are exactly 32 bytes."""
    if len(key) != 32:
        raise ValueError(f"key {key_id!r} must be 32 bytes, got {len(key)}")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", key_id):
        raise ValueError(f"key id {key_id!r} may only contain letters, digits, '_' and '-'")
    return f"{key_id}:{base64.b64encode(key).decode()}"


def parse_key_file(path: Path) -> list[tuple[str, bytes]]:
    """Parse a key file: one ``<key_id>:<base64 of 32 bytes>`` per line, the last line is the active key.

    Raises StackError naming the bad line when the file is empty or a line does not match.
    """
    keys: list[tuple[str, bytes]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        match = KEY_LINE.match(line.strip())
        if not match:
            raise StackError(
                f"{path}:{number} is not a '<key_id>:<base64 of 32 bytes>' line. The key file is damaged; "
                "restore it from a backup (data encrypted with it is unreadable without it). Delete it only "
                "if nothing was ever encrypted with it, then rerun `python -m paydata.stack up`."
            )
        keys.append((match.group(1), base64.b64decode(match.group(2))))
    if not keys:
        raise StackError(f"{path} holds no key; delete it and rerun `python -m paydata.stack up` to generate one")
    return keys


def ensure_key_file(path: Path, key_id: str = "k1") -> list[tuple[str, bytes]]:
    """Create ``path`` with one fresh key ``key_id`` if missing; validate it either way (never overwrites)."""
    if not path.exists():
        write_private(path, (render_key_line(key_id, os.urandom(32)) + "\n").encode())
    return parse_key_file(path)
