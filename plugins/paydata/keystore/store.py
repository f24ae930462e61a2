"""The key store: wrapped data keys of customers and merchants, in their own database.

:class:`KeyStore` is the one interface the application uses for data keys: create an owner's key,
find the cipher for a ciphertext, destroy an owner's keys (erasure), replace a key (rotation) and
re-wrap every key under a new KEK. Keys are wrapped by a :class:`paydata.keystore.kms.KeyWrapper`
(the local KEK ring, or a KMS such as Vault transit); the database holds only wrapped keys.

The key store's database is reached through the ``paydata_keystore`` connection; no capture or
analyst role may connect to it, so wrapped keys never appear in a change stream a replication
slot can decode (docs/security.md, *Key custody*). Each call is its own short autocommit
statement: key rows commit before the source database's transaction that uses them, so a failure
between the two leaves at most an unused key, never a ciphertext without its key.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass

from psycopg2 import sql

from paydata import settings
from paydata.crypto import DataKey, FieldCipher, KeyDestroyed, new_data_key_id
from paydata.keystore.kms import KeyWrapper, wrapper_from_env
from paydata.sql import load_sql

# owner kind -> (key table, owner column)
OWNERS = {
    "customer": ("customer_data_key", "customer_id"),
    "merchant": ("merchant_data_key", "merchant_id"),
}
DESTRUCTION_REASONS = ("erasure", "rotation", "retention_expired")


class KeyStoreError(RuntimeError):
    """The key store could not do what was asked (bad owner, unreachable database...)."""


def _owner(owner: str) -> tuple[str, str]:
    try:
        return OWNERS[owner]
    except KeyError:
        raise KeyStoreError(f"owner must be one of {', '.join(OWNERS)}, got {owner!r}") from None


def _owner_id(owner_id) -> int:
    if isinstance(owner_id, bool) or not isinstance(owner_id, int) or owner_id <= 0:
        raise KeyStoreError(f"owner id must be a positive integer, got {owner_id!r}")
    return owner_id


def statement(name: str, owner: str):
    table, owner_column = _owner(owner)
    return sql.SQL(load_sql(f"keystore/queries/store/{name}.sql")).format(
        table=sql.Identifier(table), owner_column=sql.Identifier(owner_column))


def plain_statement(name: str) -> str:
    return load_sql(f"keystore/queries/store/{name}.sql")


@dataclass(frozen=True)
class RewrapResult:
    table: str
    active_kek_id: str
    rewrapped: int   # keys now under the active KEK that were not before
    skipped: int     # keys deleted or replaced while this run was working on them
    batches: int

    def as_dict(self) -> dict:
        return {"table": self.table, "active_kek_id": self.active_kek_id, "rewrapped": self.rewrapped,
                "skipped": self.skipped, "batches": self.batches}


class KeyStore:
    """Data keys in the key store database, wrapped by ``wrapper``; thread-safe.

    ``connect()`` returns a new psycopg2 connection to the key store (default: the
    ``paydata_keystore`` connection); each thread gets its own. Unwrapped keys are cached per key
    id (bounded LRU, memory only); :meth:`destroy` drops the owner's from this process's cache.
    """

    def __init__(self, connect: Callable | None = None, wrapper: KeyWrapper | None = None,
                 max_cached: int = 4096) -> None:
        self._connect = connect or (lambda: settings.pg_connect(settings.KEYSTORE_CONN_ID))
        self._wrapper = wrapper
        self._local = threading.local()
        self._ciphers: OrderedDict[tuple[str, str], FieldCipher] = OrderedDict()
        self._max_cached = max(0, max_cached)
        self._lock = threading.Lock()
        self._connections: list = []

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def wrapper(self) -> KeyWrapper:
        if self._wrapper is None:
            self._wrapper = wrapper_from_env()
        return self._wrapper

    def connection(self):
        """This thread's autocommit connection to the key store (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect()
            conn.autocommit = True
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _execute(self, query, params=None, fetch: str | None = "all"):
        import psycopg2

        try:
            with self.connection().cursor() as cursor:
                cursor.execute(query, params)
                if fetch == "one":
                    return cursor.fetchone()
                if fetch == "all":
                    return cursor.fetchall()
                return None
        except psycopg2.Error as exc:
            raise KeyStoreError(f"key store: {exc.pgerror or exc}".strip()) from exc

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            if not conn.closed:
                conn.close()

    # -- keys ----------------------------------------------------------------------------------

    def new_key(self) -> DataKey:
        """A fresh data key wrapped by the active KEK; not stored (see :meth:`store`)."""
        plaintext, wrapped = self.wrapper.new_data_key()
        return DataKey(new_data_key_id(), plaintext, wrapped)

    def store(self, owner: str, owner_id: int, key: DataKey, created_at: dt.datetime | None = None) -> None:
        """Store ``key``'s wrapped form for ``owner_id`` (committed when this returns)."""
        self._execute(statement("insert_key", owner), {
            "key_id": key.key_id, "owner_id": _owner_id(owner_id), "wrapped_key": key.wrapped,
            "created_at": created_at}, fetch=None)

    def create(self, owner: str, owner_id: int, created_at: dt.datetime | None = None) -> DataKey:
        """A new data key for ``owner_id``, stored before it is returned."""
        key = self.new_key()
        self.store(owner, owner_id, key, created_at)
        return key

    def wrapped(self, owner: str, key_id: str) -> bytes | None:
        """The stored wrapped key ``key_id`` of ``owner``'s table, or None if there is none."""
        row = self._execute(statement("select_wrapped", owner), {"key_id": key_id}, fetch="one")
        return None if row is None else bytes(row[0])

    def cipher(self, owner: str, key_id: str) -> FieldCipher:
        """The cipher of data key ``key_id``; :class:`KeyDestroyed` if the key does not exist."""
        _owner(owner)
        with self._lock:
            cached = self._ciphers.get((owner, key_id))
            if cached is not None:
                self._ciphers.move_to_end((owner, key_id))
                return cached
        wrapped = self.wrapped(owner, key_id)
        if wrapped is None:
            raise KeyDestroyed(
                f"data key {key_id!r} is not in the key store: its {owner} was erased (the key "
                "destroyed) or it was never stored; the data under it is unrecoverable")
        cipher = FieldCipher(self.wrapper.unwrap(wrapped), key_id)
        self.wrapper.forget(wrapped)
        if self._max_cached:
            with self._lock:
                self._ciphers[(owner, key_id)] = cipher
                if len(self._ciphers) > self._max_cached:
                    self._ciphers.popitem(last=False)
        return cipher

    def key_ids(self, owner: str, owner_id: int) -> list[str]:
        """Ids of the keys ``owner_id`` holds (oldest first; two only mid-rotation)."""
        rows = self._execute(statement("select_owner_keys", owner), {"owner_id": _owner_id(owner_id)})
        return [key_id for (key_id,) in rows]

    def destroy(self, owner: str, owner_id: int, reason: str = "erasure") -> list[str]:
        """Delete every key of ``owner_id`` and record the destruction; return the key ids.

        Idempotent: a second call returns ``[]``. The bytes of a deleted key stay in the table's
        file and in the WAL until the erasure window closes them (:mod:`paydata.keystore.window`).
        """
        if reason not in DESTRUCTION_REASONS:
            raise KeyStoreError(f"destruction reason must be one of {', '.join(DESTRUCTION_REASONS)}")
        rows = self._execute(statement("delete_owner_keys", owner),
                             {"owner_id": _owner_id(owner_id), "owner_table": owner, "reason": reason})
        destroyed = [key_id for (key_id,) in rows]
        self.forget(owner, *destroyed)
        return destroyed

    def retire(self, owner: str, owner_id: int, key_id: str) -> bool:
        """Delete one replaced key of ``owner_id`` (after a rotation); True if it existed."""
        rows = self._execute(statement("delete_key", owner), {
            "key_id": key_id, "owner_id": _owner_id(owner_id), "owner_table": owner, "reason": "rotation"})
        self.forget(owner, key_id)
        return bool(rows)

    def forget(self, owner: str, *key_ids: str) -> None:
        """Drop cached ciphers of ``key_ids`` in this process."""
        with self._lock:
            for key_id in key_ids:
                self._ciphers.pop((owner, key_id), None)

    def count(self, owner: str) -> int:
        return self._execute(statement("count_keys", owner), fetch="one")[0]

    # -- bulk and maintenance ------------------------------------------------------------------

    @contextmanager
    def bulk(self) -> Generator[BulkKeyLoader, None, None]:
        """A bulk loader on a connection of its own: ``copy()`` chunks, then ``commit()``.

        Leaving the block without ``commit()`` (or on an error) rolls every chunk back.
        """
        loader = BulkKeyLoader(self._connect())
        try:
            yield loader
        finally:
            loader.close()

    def rewrap(self, owner: str, batch_size: int = 500) -> RewrapResult:
        """Re-wrap every key of ``owner``'s table not under the active KEK, in batches.

        Each batch is one statement; a key deleted or replaced meanwhile is skipped (compare-and-
        set), never resurrected. Idempotent: with nothing left it returns ``rewrapped == 0``.
        """
        import psycopg2.extras

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise KeyStoreError(f"batch_size must be a positive integer, got {batch_size!r}")
        table, _ = _owner(owner)
        wrapper = self.wrapper
        active = wrapper.active_kek_id
        after, rewrapped, skipped, batches = "", 0, 0, 0
        while True:
            rows = self._execute(statement("keys_pending_rewrap", owner), {"after": after, "batch_size": batch_size})
            if not rows:
                break
            batches += 1
            after = rows[-1][0]
            values = [(key_id, bytes(wrapped), wrapper.rewrap(bytes(wrapped)))
                      for key_id, wrapped in rows if wrapper.needs_rewrap(bytes(wrapped))]
            if not values:
                continue
            with self.connection().cursor() as cursor:
                updated = psycopg2.extras.execute_values(
                    cursor, statement("rewrap_update", owner).as_string(cursor), values,
                    template="(%s, %s::bytea, %s::bytea)", fetch=True)
            rewrapped += len(updated)
            skipped += len(values) - len(updated)
        return RewrapResult(table, active, rewrapped, skipped, batches)


class BulkKeyLoader:
    """COPYs key rows (``owner_id, key_id, wrapped_key (\\\\x hex), created_at`` text lines) in one
    transaction; see :meth:`KeyStore.bulk`."""

    def __init__(self, conn) -> None:
        self._conn = conn
        self.rows = 0

    def copy(self, owner: str, tsv: bytes) -> None:
        import psycopg2

        try:
            with self._conn.cursor() as cursor:
                cursor.copy_expert(statement("copy_keys_in", owner).as_string(cursor), io.BytesIO(tsv))
                self.rows += cursor.rowcount
        except psycopg2.Error as exc:
            raise KeyStoreError(f"key store bulk load: {exc.pgerror or exc}".strip()) from exc

    def commit(self) -> None:
        self._conn.commit()

    def close(self) -> None:
        if not self._conn.closed:
            self._conn.rollback()
            self._conn.close()


_default: KeyStore | None = None
_default_lock = threading.Lock()


def default_keystore() -> KeyStore:
    """The process-wide key store: the ``paydata_keystore`` connection and ``PAYDATA_KMS``'s wrapper."""
    global _default
    with _default_lock:
        if _default is None:
            _default = KeyStore()
        return _default


def set_default_keystore(store: KeyStore | None) -> KeyStore | None:
    """Replace the process-wide key store (tests, tools); returns the previous one."""
    global _default
    with _default_lock:
        previous, _default = _default, store
        return previous
