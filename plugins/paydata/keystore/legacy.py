"""Move data keys from where they used to live (OLTP ``customer_data_key``, reference
``merchant_data_key``) into the key store.

Before the key store existed, each source database kept its owners' wrapped keys in a table of its
own, so the database's change stream carried them. :func:`move_legacy_keys` copies every such row
into the key store (same key id, wrapped bytes and creation time), then deletes it from the source;
the source migrations then drop the emptied tables (OLTP ``V010``, reference ``V007``), which refuse
to run while a row is left. Batches are idempotent: a rerun after a crash copies nothing twice
and a key id present with different bytes is an error, never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2 import sql

from paydata.keystore.store import OWNERS, KeyStore, KeyStoreError
from paydata.sql import load_sql

# source database -> owner kind whose legacy table it holds
LEGACY_SOURCES = {"oltp": "customer", "reference": "merchant"}


@dataclass(frozen=True)
class LegacyMove:
    database: str
    table: str
    moved: int
    table_present: bool

    def as_dict(self) -> dict:
        return {"database": self.database, "table": self.table, "moved": self.moved,
                "table_present": self.table_present}


def _legacy(name: str, owner: str):
    table, owner_column = OWNERS[owner]
    return sql.SQL(load_sql(f"keystore/queries/store/{name}.sql")).format(
        table=sql.Identifier(table), owner_column=sql.Identifier(owner_column))


def move_legacy_keys(source_conn, database: str, store: KeyStore, batch_size: int = 1000) -> LegacyMove:
    """Move ``database``'s legacy data-key rows into ``store``; return how many moved.

    ``source_conn`` is a connection to ``database`` (``oltp`` or ``reference``) with no transaction
    open. Each batch is copied into the key store (committed) and then deleted from the source in
    one source transaction. Raises :class:`KeyStoreError` for an unknown database or a key id the
    key store holds with different bytes.
    """
    if database not in LEGACY_SOURCES:
        raise KeyStoreError(f"database must be one of {', '.join(LEGACY_SOURCES)}, got {database!r}")
    owner = LEGACY_SOURCES[database]
    table, _ = OWNERS[owner]
    with source_conn.cursor() as cursor:
        cursor.execute(load_sql("keystore/queries/store/legacy_table_exists.sql"), {"table": f"public.{table}"})
        present = cursor.fetchone()[0]
    source_conn.rollback()
    if not present:
        return LegacyMove(database, table, 0, False)
    moved, after = 0, 0
    insert = _legacy("insert_key_if_absent", owner)
    while True:
        with source_conn.cursor() as cursor:
            cursor.execute(_legacy("legacy_keys_select", owner), {"after": after, "batch_size": batch_size})
            rows = cursor.fetchall()
        source_conn.rollback()
        if not rows:
            break
        for owner_id, key_id, wrapped, created_at in rows:
            (same,) = store._execute(insert, {"key_id": key_id, "owner_id": owner_id,
                                              "wrapped_key": bytes(wrapped), "created_at": created_at}, fetch="one")
            if not same:
                raise KeyStoreError(
                    f"key id {key_id!r} of {owner} {owner_id} is already in the key store with other bytes "
                    "or another owner; refusing to overwrite it (investigate before rerunning)")
        with source_conn.cursor() as cursor:
            cursor.execute(_legacy("legacy_keys_delete", owner), {"owner_ids": [row[0] for row in rows]})
        source_conn.commit()
        moved += len(rows)
        after = rows[-1][0]
    return LegacyMove(database, table, moved, True)
