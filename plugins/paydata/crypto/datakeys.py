"""Per-owner data keys and crypto-shredding.

Each owner (customer, merchant) gets one data key. Only its wrapped form is stored, in a table
such as ``customer_data_key(customer_id, key_id, wrapped_key, created_at)``; :func:`data_key_row`
produces the values for that row. Erasing an owner means deleting that row: their ciphertexts
then name a key id nobody can unwrap, and :class:`DataKeyResolver` raises :class:`KeyDestroyed`.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paydata.crypto.envelope import Envelope, default_envelope
from paydata.crypto.errors import KeyDestroyed
from paydata.crypto.fields import FieldCipher, PrimaryKey, key_id_of

WrappedKeyLookup = Callable[[str], bytes | bytearray | memoryview | None]


def new_data_key_id() -> str:
    """A random 16-hex-character data-key id (64 bits: unique across billions of owners)."""
    return secrets.token_hex(8)


@dataclass(frozen=True, repr=False)
class DataKey:
    """One owner's data key: its id, the plaintext key (memory only) and the wrapped key (to store)."""

    key_id: str
    plaintext: bytes
    wrapped: bytes

    def cipher(self) -> FieldCipher:
        return FieldCipher(self.plaintext, self.key_id)

    def __repr__(self) -> str:
        return f"DataKey(key_id={self.key_id!r})"


def new_owner_key(envelope: Envelope | None = None) -> DataKey:
    """A fresh data key for a new owner, wrapped under the active KEK (environment's by default)."""
    plaintext, wrapped = (envelope or default_envelope()).new_data_key()
    return DataKey(new_data_key_id(), plaintext, wrapped)


def data_key_row(
    customer_id: Any, data_key: DataKey, created_at: dt.datetime | None = None
) -> dict[str, Any]:
    """Column values for ``customer_data_key``; the plaintext key is deliberately not included."""
    return {
        "customer_id": customer_id,
        "key_id": data_key.key_id,
        "wrapped_key": data_key.wrapped,
        "created_at": created_at or dt.datetime.now(dt.UTC),
    }


class DataKeyResolver:
    """Finds the :class:`FieldCipher` for any ciphertext via a wrapped-key lookup.

    ``lookup(key_id)`` returns the stored wrapped key or ``None`` if it does not exist (e.g. a
    ``SELECT wrapped_key FROM customer_data_key WHERE key_id = %s``). Ciphers are cached (bounded
    LRU); after shredding an owner in this process call :meth:`forget` so the cache cannot outlive
    the deleted key. Thread-safe.
    """

    def __init__(
        self, lookup: WrappedKeyLookup, envelope: Envelope | None = None, max_cached: int = 1024
    ) -> None:
        self._lookup = lookup
        self._envelope = envelope
        self._ciphers: OrderedDict[str, tuple[FieldCipher, bytes]] = OrderedDict()
        self._max_cached = max(0, max_cached)
        self._lock = threading.Lock()

    def cipher(self, key_id: str) -> FieldCipher:
        """The cipher for ``key_id``; raises :class:`KeyDestroyed` if its wrapped key is gone."""
        with self._lock:
            entry = self._ciphers.get(key_id)
            if entry is not None:
                self._ciphers.move_to_end(key_id)
                return entry[0]
        wrapped = self._lookup(key_id)
        if wrapped is None:
            raise KeyDestroyed(
                f"data key {key_id!r} does not exist: its owner was erased (crypto-shredded) "
                "or the key row was never stored; the data under it is unrecoverable"
            )
        wrapped = bytes(wrapped)
        cipher = FieldCipher(self._envelope_in_use().unwrap(wrapped), key_id)
        if self._max_cached:
            with self._lock:
                self._ciphers[key_id] = (cipher, wrapped)
                if len(self._ciphers) > self._max_cached:
                    self._ciphers.popitem(last=False)
        return cipher

    def decrypt(
        self, blob: bytes | bytearray | memoryview | None, *, table: str, column: str, pk: PrimaryKey
    ) -> str | None:
        """Decrypt any ciphertext by the key id it carries; see :meth:`FieldCipher.decrypt`."""
        if blob is None:
            return None
        return self.cipher(key_id_of(blob)).decrypt(blob, table=table, column=column, pk=pk)

    def forget(self, key_id: str) -> None:
        """Drop ``key_id`` from the cache (call after deleting the owner's wrapped key)."""
        with self._lock:
            entry = self._ciphers.pop(key_id, None)
        if entry is not None:
            self._envelope_in_use().forget(entry[1])

    def _envelope_in_use(self) -> Envelope:
        return self._envelope or default_envelope()
