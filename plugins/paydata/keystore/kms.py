"""Key-encryption backends: what wraps and unwraps the data keys the key store holds.

A :class:`KeyWrapper` turns a 32-byte data key into an opaque wrapped form and back. Two
implementations share that shape:

* :class:`LocalKek` - the KEK ring from ``PAYDATA_KEK_FILE`` (``paydata.crypto.Envelope``,
  AES-256-GCM). The default, and what the local stack and compose use.
* :class:`VaultTransit` - HashiCorp Vault's transit secrets engine: the KEK never leaves Vault;
  wrapping is ``transit/encrypt``, unwrapping ``transit/decrypt``, KEK rotation is Vault's
  ``transit/keys/<name>/rotate`` followed by ``transit/rewrap``. A cloud KMS (AWS KMS ``Encrypt``/
  ``Decrypt``/``ReEncrypt``, GCP ``encrypt``/``decrypt``) fits the same five methods.

``PAYDATA_KMS`` chooses (``local``, the default, or ``vault``); see :func:`wrapper_from_env`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Protocol

from paydata.crypto import Envelope, IntegrityError, InvalidInput, UnknownKeyError, default_envelope
from paydata.crypto.errors import CryptoError, KeyConfigError
from paydata.crypto.keys import KEY_BYTES

KMS_ENV = "PAYDATA_KMS"
VAULT_ADDR_ENV = "VAULT_ADDR"
VAULT_TOKEN_ENV = "VAULT_TOKEN"
VAULT_TOKEN_FILE_ENV = "VAULT_TOKEN_FILE"
VAULT_KEY_ENV = "PAYDATA_VAULT_TRANSIT_KEY"
VAULT_MOUNT_ENV = "PAYDATA_VAULT_TRANSIT_MOUNT"


class KeyWrapper(Protocol):
    """Wraps data keys under a key-encryption key the wrapper holds or reaches."""

    def new_data_key(self) -> tuple[bytes, bytes]:
        """A fresh random data key as ``(plaintext, wrapped)``."""

    def unwrap(self, wrapped: bytes) -> bytes:
        """The plaintext data key; :class:`IntegrityError` if tampered, :class:`UnknownKeyError`
        if the KEK it names is gone."""

    def rewrap(self, wrapped: bytes) -> bytes:
        """``wrapped`` under the active KEK (unchanged if it already is)."""

    def needs_rewrap(self, wrapped: bytes) -> bool:
        """True when ``wrapped`` is not under the active KEK."""

    def kek_id_of(self, wrapped: bytes) -> str:
        """The id (or version) of the KEK that wrapped ``wrapped``."""

    @property
    def active_kek_id(self) -> str: ...

    def forget(self, wrapped: bytes) -> None:
        """Drop any cached plaintext of ``wrapped``."""


class LocalKek:
    """The KEK ring from the environment (``PAYDATA_KEK_FILE``), through :class:`Envelope`."""

    def __init__(self, envelope: Envelope | None = None) -> None:
        self._envelope = envelope

    @property
    def envelope(self) -> Envelope:
        return self._envelope or default_envelope()

    def new_data_key(self) -> tuple[bytes, bytes]:
        return self.envelope.new_data_key()

    def unwrap(self, wrapped: bytes) -> bytes:
        return self.envelope.unwrap(wrapped)

    def rewrap(self, wrapped: bytes) -> bytes:
        return self.envelope.rewrap(wrapped)

    def needs_rewrap(self, wrapped: bytes) -> bool:
        return self.envelope.needs_rewrap(wrapped)

    def kek_id_of(self, wrapped: bytes) -> str:
        from paydata.crypto import wrapped_kek_id

        return wrapped_kek_id(wrapped)

    @property
    def active_kek_id(self) -> str:
        return self.envelope.ring.active_id

    def forget(self, wrapped: bytes) -> None:
        self.envelope.forget(wrapped)

    def __repr__(self) -> str:
        return f"LocalKek(active={self.active_kek_id!r})"


# (method, path, JSON body or None) -> decoded JSON response; raises VaultError on HTTP errors.
Transport = Callable[[str, str, dict | None], dict]


class VaultError(CryptoError):
    """Vault refused a request or could not be reached; the message carries Vault's own errors."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


_VAULT_CIPHERTEXT = re.compile(rb"^vault:v(\d+):[A-Za-z0-9+/=]+$")


def http_transport(addr: str, token: str, namespace: str | None = None, timeout: float = 10.0,
                   cafile: str | None = None) -> Transport:
    """A transport over Vault's HTTP API (TLS verified against ``cafile`` or the system store)."""
    import ssl

    if not addr.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise KeyConfigError(f"{VAULT_ADDR_ENV}={addr!r}: use https:// (plain http only for a local dev server)")
    context = ssl.create_default_context(cafile=cafile) if addr.startswith("https://") else None

    def send(method: str, path: str, body: dict | None) -> dict:
        request = urllib.request.Request(
            f"{addr.rstrip('/')}/v1/{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"X-Vault-Token": token, "Content-Type": "application/json",
                     **({"X-Vault-Namespace": namespace} if namespace else {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                errors = json.loads(exc.read() or b"{}").get("errors") or []
            except ValueError:
                errors = []
            raise VaultError(f"Vault {method} {path}: HTTP {exc.code}: {'; '.join(errors) or exc.reason}",
                             status=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise VaultError(f"Vault {method} {path}: cannot reach {addr} ({exc})") from None

    return send


class VaultTransit:
    """Data keys wrapped by a Vault transit key (``aes256-gcm96``); the KEK never leaves Vault.

    The wrapped form is Vault's ciphertext string (``vault:v<version>:<base64>``) as ASCII bytes,
    so the KEK "id" is the key version. Vault keeps old versions for decryption down to the key's
    ``min_decryption_version``; raising it after a rewrap retires the old KEK versions, as removing
    a line from the local KEK file does.
    """

    def __init__(self, transport: Transport, key_name: str, mount: str = "transit") -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", key_name or ""):
            raise KeyConfigError(f"Vault transit key name {key_name!r}: letters, digits, '_', '.', '-'")
        if not re.fullmatch(r"[A-Za-z0-9_/-]{1,128}", mount or ""):
            raise KeyConfigError(f"Vault transit mount {mount!r}: letters, digits, '_', '-', '/'")
        self._send = transport
        self.key_name = key_name
        self.mount = mount.strip("/")
        self._latest: int | None = None
        self._lock = threading.Lock()

    def _path(self, operation: str) -> str:
        return f"{self.mount}/{operation}/{self.key_name}"

    def _call(self, operation: str, body: dict | None = None, method: str = "POST") -> dict:
        try:
            return self._send(method, self._path(operation), body).get("data") or {}
        except VaultError as exc:
            text = str(exc).lower()
            if "message authentication failed" in text or "invalid ciphertext" in text:
                raise IntegrityError(f"Vault refused the wrapped data key: {exc}") from None
            if "min_decryption_version" in text or "archived" in text:
                raise UnknownKeyError(f"the KEK version that wrapped this key is retired in Vault: {exc}") from None
            raise

    @staticmethod
    def _version(wrapped: bytes) -> int:
        match = _VAULT_CIPHERTEXT.match(bytes(wrapped))
        if match is None:
            raise IntegrityError("not a Vault transit ciphertext ('vault:v<N>:<base64>')")
        return int(match.group(1))

    def latest_version(self, refresh: bool = False) -> int:
        with self._lock:
            if self._latest is None or refresh:
                data = self._call("keys", method="GET")
                self._latest = int(data["latest_version"])
            return self._latest

    def new_data_key(self) -> tuple[bytes, bytes]:
        data = self._call("datakey/plaintext", {"bits": KEY_BYTES * 8})
        plaintext = base64.b64decode(data["plaintext"])
        if len(plaintext) != KEY_BYTES:
            raise IntegrityError(f"Vault returned a {len(plaintext)}-byte data key, expected {KEY_BYTES}")
        return plaintext, data["ciphertext"].encode("ascii")

    def wrap(self, data_key: bytes) -> bytes:
        if not isinstance(data_key, bytes) or len(data_key) != KEY_BYTES:
            raise InvalidInput(f"a data key must be {KEY_BYTES} bytes")
        data = self._call("encrypt", {"plaintext": base64.b64encode(data_key).decode()})
        return data["ciphertext"].encode("ascii")

    def unwrap(self, wrapped: bytes) -> bytes:
        self._version(wrapped)
        data = self._call("decrypt", {"ciphertext": bytes(wrapped).decode("ascii")})
        return base64.b64decode(data["plaintext"])

    def rewrap(self, wrapped: bytes) -> bytes:
        if not self.needs_rewrap(wrapped):
            return bytes(wrapped)
        data = self._call("rewrap", {"ciphertext": bytes(wrapped).decode("ascii")})
        return data["ciphertext"].encode("ascii")

    def needs_rewrap(self, wrapped: bytes) -> bool:
        return self._version(wrapped) != self.latest_version()

    def kek_id_of(self, wrapped: bytes) -> str:
        return f"{self.key_name}:v{self._version(wrapped)}"

    @property
    def active_kek_id(self) -> str:
        return f"{self.key_name}:v{self.latest_version()}"

    def forget(self, wrapped: bytes) -> None:
        """Nothing is cached here: every unwrap asks Vault."""

    def __repr__(self) -> str:
        return f"VaultTransit(mount={self.mount!r}, key={self.key_name!r})"


def wrapper_from_env() -> KeyWrapper:
    """The wrapper ``PAYDATA_KMS`` names: ``local`` (default) or ``vault``.

    ``vault`` reads ``VAULT_ADDR``, ``VAULT_TOKEN`` or ``VAULT_TOKEN_FILE``,
    ``PAYDATA_VAULT_TRANSIT_KEY`` (required), ``PAYDATA_VAULT_TRANSIT_MOUNT`` (default ``transit``),
    ``VAULT_NAMESPACE`` and ``VAULT_CACERT``. Raises :class:`KeyConfigError` naming what is missing.
    """
    kind = os.environ.get(KMS_ENV, "local").strip().lower() or "local"
    if kind == "local":
        return LocalKek()
    if kind != "vault":
        raise KeyConfigError(f"{KMS_ENV}={kind!r}: expected 'local' or 'vault'")
    addr = os.environ.get(VAULT_ADDR_ENV, "").strip()
    token = os.environ.get(VAULT_TOKEN_ENV, "").strip()
    token_file = os.environ.get(VAULT_TOKEN_FILE_ENV, "").strip()
    if token_file and not token:
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise KeyConfigError(f"{VAULT_TOKEN_FILE_ENV}={token_file}: cannot read ({exc})") from None
    key_name = os.environ.get(VAULT_KEY_ENV, "").strip()
    missing = [name for name, value in ((VAULT_ADDR_ENV, addr), (f"{VAULT_TOKEN_ENV} or {VAULT_TOKEN_FILE_ENV}", token),
                                        (VAULT_KEY_ENV, key_name)) if not value]
    if missing:
        raise KeyConfigError(f"{KMS_ENV}=vault needs {', '.join(missing)}")
    transport = http_transport(addr, token, os.environ.get("VAULT_NAMESPACE") or None,
                               cafile=os.environ.get("VAULT_CACERT") or None)
    return VaultTransit(transport, key_name, os.environ.get(VAULT_MOUNT_ENV, "transit"))
