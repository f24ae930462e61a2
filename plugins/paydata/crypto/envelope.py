"""Envelope encryption: per-owner data keys, stored only wrapped by the key-encryption key (KEK).

A wrapped data key is ``0x01 | len(kek_id) | kek_id | 12-byte nonce | AES-256-GCM(kek, data key)``
with the header as associated data, so the wrapped form names the KEK that opens it. KEK rotation
appends a key to the KEK file and re-wraps the (small) wrapped keys with :func:`rewrap_data_key`;
field ciphertexts are untouched because they are encrypted with the data keys, not the KEK.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import OrderedDict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paydata.crypto.errors import IntegrityError, InvalidInput, MalformedCiphertext
from paydata.crypto.keys import KEY_BYTES, KeyRing, kek_ring

WRAP_VERSION = 0x01
_NONCE_BYTES = 12
_TAG_BYTES = 16
_WRAP_LABEL = b"paydata/data-key/v1"


def _as_bytes(value: bytes | bytearray | memoryview, what: str) -> bytes:
    # psycopg2 returns bytea columns as memoryview.
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise InvalidInput(f"{what} must be bytes, got {type(value).__name__}")


def wrapped_kek_id(wrapped: bytes | bytearray | memoryview) -> str:
    """The id of the KEK a wrapped data key was wrapped under.

    Raises :class:`MalformedCiphertext` if ``wrapped`` is not a wrapped key of this format.
    """
    wrapped = _as_bytes(wrapped, "wrapped key")
    return _parse_wrapped(wrapped)[0]


def _parse_wrapped(wrapped: bytes) -> tuple[str, bytes, bytes, bytes]:
    if len(wrapped) < 2 or wrapped[0] != WRAP_VERSION:
        raise MalformedCiphertext("not a wrapped data key (unknown version byte or too short)")
    id_len = wrapped[1]
    header_end = 2 + id_len
    if len(wrapped) != header_end + _NONCE_BYTES + KEY_BYTES + _TAG_BYTES:
        raise MalformedCiphertext("wrapped data key has the wrong length (truncated or corrupted)")
    try:
        kek_id = wrapped[2:header_end].decode("ascii")
    except UnicodeDecodeError:
        raise MalformedCiphertext("wrapped data key has a corrupted KEK id") from None
    header = wrapped[:header_end]
    nonce = wrapped[header_end : header_end + _NONCE_BYTES]
    return kek_id, header, nonce, wrapped[header_end + _NONCE_BYTES :]


class Envelope:
    """Wraps and unwraps data keys with a KEK ring; keeps a bounded LRU cache of unwrapped keys.

    Thread-safe. The cache maps wrapped bytes to plaintext keys, so a deleted (shredded) wrapped
    key can only be served from it by a caller that still holds the wrapped bytes.
    """

    def __init__(self, ring: KeyRing, cache_size: int = 4096) -> None:
        self.ring = ring
        self._aead = {key_id: AESGCM(key) for key_id, key in ring}
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cache_size = max(0, cache_size)
        self._lock = threading.Lock()

    def wrap(self, data_key: bytes) -> bytes:
        """Wrap a 32-byte data key under the active KEK."""
        if not isinstance(data_key, bytes) or len(data_key) != KEY_BYTES:
            raise InvalidInput(f"a data key must be {KEY_BYTES} bytes")
        kek_id = self.ring.active_id
        kek_id_bytes = kek_id.encode("ascii")
        header = bytes((WRAP_VERSION, len(kek_id_bytes))) + kek_id_bytes
        nonce = os.urandom(_NONCE_BYTES)
        return header + nonce + self._aead[kek_id].encrypt(nonce, data_key, _WRAP_LABEL + header)

    def new_data_key(self) -> tuple[bytes, bytes]:
        """A fresh random data key as ``(plaintext_key, wrapped_key)``; store only the wrapped one."""
        data_key = secrets.token_bytes(KEY_BYTES)
        return data_key, self.wrap(data_key)

    def unwrap(self, wrapped: bytes | bytearray | memoryview) -> bytes:
        """The plaintext data key inside ``wrapped``.

        Raises :class:`UnknownKeyError` if the KEK it names is not in the ring,
        :class:`IntegrityError` if the wrapped key was altered or the KEK line was replaced.
        """
        wrapped = _as_bytes(wrapped, "wrapped key")
        with self._lock:
            cached = self._cache.get(wrapped)
            if cached is not None:
                self._cache.move_to_end(wrapped)
                return cached
        kek_id, header, nonce, sealed = _parse_wrapped(wrapped)
        self.ring.get(kek_id)  # raises UnknownKeyError with a helpful message
        try:
            data_key = self._aead[kek_id].decrypt(nonce, sealed, _WRAP_LABEL + header)
        except InvalidTag:
            raise IntegrityError(
                f"wrapped data key failed authentication under KEK {kek_id!r}: it was altered, "
                "or the KEK file holds a different key under that id"
            ) from None
        if self._cache_size:
            with self._lock:
                self._cache[wrapped] = data_key
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return data_key

    def rewrap(self, wrapped: bytes | bytearray | memoryview) -> bytes:
        """``wrapped`` re-wrapped under the active KEK; returned unchanged if it already is."""
        wrapped = _as_bytes(wrapped, "wrapped key")
        if wrapped_kek_id(wrapped) == self.ring.active_id:
            return wrapped
        return self.wrap(self.unwrap(wrapped))

    def needs_rewrap(self, wrapped: bytes | bytearray | memoryview) -> bool:
        """True if ``wrapped`` is not under the active KEK (a KEK rotation is pending for it)."""
        return wrapped_kek_id(wrapped) != self.ring.active_id

    def forget(self, wrapped: bytes | bytearray | memoryview) -> None:
        """Drop one unwrapped key from the cache (used when the owner's key is shredded)."""
        with self._lock:
            self._cache.pop(_as_bytes(wrapped, "wrapped key"), None)


_default_envelopes: dict[int, tuple[KeyRing, Envelope]] = {}


def default_envelope() -> Envelope:
    """The :class:`Envelope` for the KEK ring configured in the environment."""
    ring = kek_ring()
    entry = _default_envelopes.get(id(ring))
    if entry is None or entry[0] is not ring:
        entry = (ring, Envelope(ring))
        _default_envelopes.clear()
        _default_envelopes[id(ring)] = entry
    return entry[1]


def new_data_key() -> tuple[bytes, bytes]:
    """A fresh data key ``(plaintext_key, wrapped_key)`` wrapped under the active KEK from the environment."""
    return default_envelope().new_data_key()


def unwrap_data_key(wrapped: bytes | bytearray | memoryview) -> bytes:
    """Unwrap with the environment's KEK ring; see :meth:`Envelope.unwrap` for errors."""
    return default_envelope().unwrap(wrapped)


def rewrap_data_key(wrapped: bytes | bytearray | memoryview) -> bytes:
    """Re-wrap under the environment's active KEK; see :meth:`Envelope.rewrap`."""
    return default_envelope().rewrap(wrapped)
