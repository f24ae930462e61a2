"""Field-level encryption: AES-256-GCM bound to (table, column, primary key).

A ciphertext is self-describing bytes::

    0x01 | len(key_id) | key_id (ASCII) | 12-byte random nonce | ciphertext + 16-byte tag

``key_id`` is the id of the owner's data key, so the right wrapped key can be fetched before
decrypting (:func:`key_id_of`). The associated data covers the header and the (table, column,
primary key) the value belongs to, so a ciphertext copied to another row or column, or with any
byte changed, fails authentication instead of decrypting to something wrong.
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paydata.crypto.errors import IntegrityError, InvalidInput, MalformedCiphertext, WrongKeyError
from paydata.crypto.keys import KEY_BYTES, validate_key_id

FIELD_VERSION = 0x01
_NONCE_BYTES = 12
_TAG_BYTES = 16
_FIELD_LABEL = b"paydata/field/v1"

PrimaryKey = str | int | uuid.UUID | tuple[str | int | uuid.UUID, ...]


def _length_prefixed(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _pk_part(value: object) -> bytes:
    # bool is an int subclass; True silently meaning row 1 would be a bug.
    if isinstance(value, bool) or not isinstance(value, str | int | uuid.UUID):
        raise InvalidInput(f"primary key parts must be str, int or UUID, got {type(value).__name__}")
    text = str(value)
    if not text:
        raise InvalidInput("primary key must not be empty")
    return _length_prefixed(text.encode("utf-8"))


def _encode_pk(pk: PrimaryKey) -> bytes:
    # int 42 and str "42" encode alike on purpose: drivers differ in which one they return.
    if isinstance(pk, tuple):
        if not pk:
            raise InvalidInput("composite primary key must not be empty")
        return b"T" + len(pk).to_bytes(2, "big") + b"".join(_pk_part(part) for part in pk)
    return b"S" + _pk_part(pk)


@lru_cache(maxsize=1024)
def _location(table: str, column: str) -> bytes:
    for name, value in (("table", table), ("column", column)):
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"{name} must be a non-empty string, got {value!r}")
    return _length_prefixed(table.encode("utf-8")) + _length_prefixed(column.encode("utf-8"))


def _as_blob(blob: bytes | bytearray | memoryview) -> bytes:
    if isinstance(blob, bytes):
        return blob
    if isinstance(blob, bytearray | memoryview):
        return bytes(blob)
    raise InvalidInput(f"ciphertext must be bytes, got {type(blob).__name__}")


def key_id_of(blob: bytes | bytearray | memoryview) -> str:
    """The data-key id a ciphertext was written under.

    Raises :class:`MalformedCiphertext` if ``blob`` is not a field ciphertext of this format.
    """
    blob = _as_blob(blob)
    if len(blob) < 2 or blob[0] != FIELD_VERSION:
        raise MalformedCiphertext("not a paydata field ciphertext (unknown version byte or too short)")
    header_end = 2 + blob[1]
    if len(blob) < header_end + _NONCE_BYTES + _TAG_BYTES:
        raise MalformedCiphertext("field ciphertext is truncated")
    try:
        return blob[2:header_end].decode("ascii")
    except UnicodeDecodeError:
        raise MalformedCiphertext("field ciphertext has a corrupted key id") from None


class FieldCipher:
    """Encrypts and decrypts column values with one owner's 32-byte data key.

    Create one per data key and reuse it: the AES-GCM context is built once. ``None`` passes
    through both ways so nullable columns need no special casing. ``repr`` never shows the key.
    """

    __slots__ = ("_aead", "_header", "_key_id", "_ad_prefix")

    def __init__(self, data_key: bytes, key_id: str) -> None:
        if not isinstance(data_key, bytes) or len(data_key) != KEY_BYTES:
            raise InvalidInput(f"a data key must be {KEY_BYTES} bytes")
        validate_key_id(key_id)
        key_id_bytes = key_id.encode("ascii")
        self._key_id = key_id
        self._aead = AESGCM(data_key)
        self._header = bytes((FIELD_VERSION, len(key_id_bytes))) + key_id_bytes
        self._ad_prefix = _FIELD_LABEL + self._header

    @property
    def key_id(self) -> str:
        return self._key_id

    def __repr__(self) -> str:
        return f"FieldCipher(key_id={self._key_id!r})"

    def encrypt(self, plaintext: str | None, *, table: str, column: str, pk: PrimaryKey) -> bytes | None:
        """Encrypt ``plaintext`` for the cell (table, column, pk); ``None`` returns ``None``.

        Every call uses a fresh random nonce, so equal plaintexts give different ciphertexts (use
        a blind index for equality lookups). Raises :class:`InvalidInput` for a non-str value or
        an empty table/column/pk.
        """
        if plaintext is None:
            return None
        if not isinstance(plaintext, str):
            raise InvalidInput(f"plaintext must be str or None, got {type(plaintext).__name__}")
        aad = self._ad_prefix + _location(table, column) + _encode_pk(pk)
        nonce = os.urandom(_NONCE_BYTES)
        return self._header + nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), aad)

    def decrypt(
        self, blob: bytes | bytearray | memoryview | None, *, table: str, column: str, pk: PrimaryKey
    ) -> str | None:
        """The plaintext of a ciphertext written by :meth:`encrypt` for the same cell.

        ``None`` returns ``None``. Raises :class:`WrongKeyError` if ``blob`` names another data
        key, :class:`MalformedCiphertext` if it is not a ciphertext, and :class:`IntegrityError`
        if it was altered or belongs to another table/column/row. Never returns unverified data.
        """
        if blob is None:
            return None
        blob = _as_blob(blob)
        header = self._header
        if not blob.startswith(header):
            found = key_id_of(blob)
            raise WrongKeyError(
                f"ciphertext for {table}.{column} was written under data key {found!r}, "
                f"not {self._key_id!r}; fetch that owner's key (key_id_of(blob))"
            )
        if len(blob) < len(header) + _NONCE_BYTES + _TAG_BYTES:
            raise MalformedCiphertext(f"ciphertext for {table}.{column} (pk {pk!r}) is truncated")
        nonce_end = len(header) + _NONCE_BYTES
        aad = self._ad_prefix + _location(table, column) + _encode_pk(pk)
        try:
            plaintext = self._aead.decrypt(blob[len(header) : nonce_end], blob[nonce_end:], aad)
        except InvalidTag:
            raise IntegrityError(
                f"ciphertext for {table}.{column} (pk {pk!r}) failed authentication: it was altered, "
                "copied from another row or column, or the data key is wrong"
            ) from None
        return plaintext.decode("utf-8")


def reencrypt(
    blob: bytes | bytearray | memoryview | None,
    old_cipher: FieldCipher,
    new_cipher: FieldCipher,
    *,
    table: str,
    column: str,
    pk: PrimaryKey,
) -> bytes | None:
    """Decrypt with ``old_cipher`` and encrypt with ``new_cipher`` for the same cell (data-key rotation).

    A value already under ``new_cipher``'s key id is returned unchanged, so an interrupted rotation
    can simply be run again. Raises whatever :meth:`FieldCipher.decrypt` raises.
    """
    if blob is None:
        return None
    blob = _as_blob(blob)
    if key_id_of(blob) == new_cipher.key_id and old_cipher.key_id != new_cipher.key_id:
        new_cipher.decrypt(blob, table=table, column=column, pk=pk)  # verify before keeping it
        return blob
    plaintext = old_cipher.decrypt(blob, table=table, column=column, pk=pk)
    return new_cipher.encrypt(plaintext, table=table, column=column, pk=pk)
