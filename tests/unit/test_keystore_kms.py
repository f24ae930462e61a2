"""The key-encryption backends: the local KEK ring and Vault transit (against a fake Vault)."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paydata.crypto import Envelope, IntegrityError, KeyRing, UnknownKeyError
from paydata.crypto.errors import KeyConfigError
from paydata.keystore.kms import LocalKek, VaultError, VaultTransit, wrapper_from_env


class FakeVault:
    """Vault's transit engine as documented (encrypt, decrypt, rewrap, datakey, keys, rotate),
    with real AES-GCM underneath, so wrapped keys behave like Vault's: ``vault:v<N>:<base64>``."""

    def __init__(self, name: str = "paydata-kek") -> None:
        self.name = name
        self.versions = {1: os.urandom(32)}
        self.min_decryption_version = 1
        self.calls: list[tuple[str, str]] = []

    def rotate(self) -> None:
        self.versions[max(self.versions) + 1] = os.urandom(32)

    def _seal(self, plaintext: bytes) -> str:
        version = max(self.versions)
        nonce = os.urandom(12)
        sealed = AESGCM(self.versions[version]).encrypt(nonce, plaintext, None)
        return f"vault:v{version}:" + base64.b64encode(nonce + sealed).decode()

    def _open(self, ciphertext: str) -> bytes:
        try:
            _, version, payload = ciphertext.split(":", 2)
            version = int(version[1:])
            raw = base64.b64decode(payload)
        except ValueError:
            raise VaultError("Vault: HTTP 400: invalid ciphertext", status=400) from None
        if version < self.min_decryption_version:
            raise VaultError("Vault: HTTP 400: ciphertext version is disallowed by policy "
                             "(too old): min_decryption_version", status=400)
        try:
            return AESGCM(self.versions[version]).decrypt(raw[:12], raw[12:], None)
        except Exception:
            raise VaultError("Vault: HTTP 400: cipher: message authentication failed", status=400) from None

    def __call__(self, method: str, path: str, body: dict | None) -> dict:
        self.calls.append((method, path))
        mount, operation, *rest = path.split("/")
        if operation == "datakey":
            operation, rest = "datakey/" + rest[0], rest[1:]
        assert mount == "transit" and rest == [self.name], path
        if operation == "keys" and method == "GET":
            return {"data": {"latest_version": max(self.versions), "type": "aes256-gcm96"}}
        if operation == "encrypt":
            return {"data": {"ciphertext": self._seal(base64.b64decode(body["plaintext"]))}}
        if operation == "decrypt":
            return {"data": {"plaintext": base64.b64encode(self._open(body["ciphertext"])).decode()}}
        if operation == "rewrap":
            return {"data": {"ciphertext": self._seal(self._open(body["ciphertext"]))}}
        if operation == "datakey/plaintext":
            key = os.urandom(body["bits"] // 8)
            return {"data": {"plaintext": base64.b64encode(key).decode(), "ciphertext": self._seal(key)}}
        raise VaultError(f"Vault {method} {path}: HTTP 404: unsupported path", status=404)


@pytest.fixture
def vault():
    return FakeVault()


def test_vault_transit_wraps_and_unwraps_data_keys(vault):
    wrapper = VaultTransit(vault, "paydata-kek")
    plaintext, wrapped = wrapper.new_data_key()
    assert len(plaintext) == 32 and wrapped.startswith(b"vault:v1:")
    assert plaintext not in wrapped and base64.b64encode(plaintext) not in wrapped
    assert wrapper.unwrap(wrapped) == plaintext
    assert wrapper.kek_id_of(wrapped) == "paydata-kek:v1" == wrapper.active_kek_id
    assert wrapper.unwrap(wrapper.wrap(plaintext)) == plaintext


def test_vault_key_rotation_then_rewrap_and_retiring_old_versions(vault):
    wrapper = VaultTransit(vault, "paydata-kek")
    plaintext, wrapped = wrapper.new_data_key()
    vault.rotate()
    assert wrapper.latest_version(refresh=True) == 2
    assert wrapper.needs_rewrap(wrapped)
    rewrapped = wrapper.rewrap(wrapped)
    assert rewrapped.startswith(b"vault:v2:") and not wrapper.needs_rewrap(rewrapped)
    assert wrapper.rewrap(rewrapped) == rewrapped, "already under the active version: unchanged"
    assert wrapper.unwrap(rewrapped) == plaintext
    vault.min_decryption_version = 2
    with pytest.raises(UnknownKeyError, match="retired"):
        wrapper.unwrap(wrapped)


def test_vault_tampering_and_garbage_fail_loudly(vault):
    wrapper = VaultTransit(vault, "paydata-kek")
    _, wrapped = wrapper.new_data_key()
    head, payload = wrapped.rsplit(b":", 1)
    raw = bytearray(base64.b64decode(payload))
    raw[-1] ^= 1
    with pytest.raises(IntegrityError, match="Vault refused"):
        wrapper.unwrap(head + b":" + base64.b64encode(bytes(raw)))
    with pytest.raises(IntegrityError, match="not a Vault transit ciphertext"):
        wrapper.unwrap(b"\x01\x02kek-one" + os.urandom(60))


def test_vault_configuration_errors_name_what_is_missing(monkeypatch):
    for name in ("VAULT_ADDR", "VAULT_TOKEN", "VAULT_TOKEN_FILE", "PAYDATA_VAULT_TRANSIT_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PAYDATA_KMS", "vault")
    with pytest.raises(KeyConfigError, match="VAULT_ADDR.*PAYDATA_VAULT_TRANSIT_KEY"):
        wrapper_from_env()
    monkeypatch.setenv("VAULT_ADDR", "http://vault.internal:8200")
    monkeypatch.setenv("VAULT_TOKEN", "s.token")
    monkeypatch.setenv("PAYDATA_VAULT_TRANSIT_KEY", "paydata-kek")
    with pytest.raises(KeyConfigError, match="https"):
        wrapper_from_env()
    monkeypatch.setenv("VAULT_ADDR", "https://vault.internal:8200")
    assert isinstance(wrapper_from_env(), VaultTransit)
    monkeypatch.setenv("PAYDATA_KMS", "hsm")
    with pytest.raises(KeyConfigError, match="'local' or 'vault'"):
        wrapper_from_env()
    with pytest.raises(KeyConfigError, match="key name"):
        VaultTransit(FakeVault(), "bad name/../x")


def test_local_kek_is_the_envelope_with_key_ids():
    ring = KeyRing({"kek-one": os.urandom(32)})
    wrapper = LocalKek(Envelope(ring))
    plaintext, wrapped = wrapper.new_data_key()
    assert wrapper.unwrap(wrapped) == plaintext and wrapper.kek_id_of(wrapped) == "kek-one"
    rotated = LocalKek(Envelope(KeyRing({"kek-one": ring.get("kek-one"), "kek-two": os.urandom(32)})))
    assert rotated.needs_rewrap(wrapped) and rotated.kek_id_of(rotated.rewrap(wrapped)) == "kek-two"
    assert "kek" in repr(wrapper) and plaintext.hex() not in repr(wrapper)


def test_local_is_the_default(monkeypatch):
    monkeypatch.delenv("PAYDATA_KMS", raising=False)
    assert isinstance(wrapper_from_env(), LocalKek)
