"""Key rotation for stored data keys.

* KEK rotation: after ``python -m paydata.crypto rotate-kek`` appended a new key-encryption key,
  :func:`rewrap_data_keys` re-wraps every stored data key under it. Field ciphertexts are not
  touched (they are under the data keys, which do not change). Once no row names an old KEK, the
  old KEK line may be retired.
* Data-key rotation: :func:`rotate_customer_data_key` gives one customer a new data key and
  re-encrypts their fields under it, e.g. when that key may have been exposed.

Both write an ``audit_log`` row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg2.extras
from psycopg2 import sql

from paydata.crypto import FieldCipher, default_envelope, new_owner_key, reencrypt
from paydata.oltp import audit
from paydata.oltp._db import oltp_sql, reference_sql, transaction
from paydata.oltp.app import CUSTOMER_FIELDS, CUSTOMER_TABLE
from paydata.oltp.errors import InvalidRequest, NotFound

# data-key table -> (database holding it, owner column)
DATA_KEY_TABLES = {
    "customer_data_key": ("oltp", "customer_id"),
    "merchant_data_key": ("reference", "merchant_id"),
}
ROTATION_REASONS = ("scheduled_rotation", "suspected_exposure", "kek_rotation")


@dataclass(frozen=True)
class RewrapResult:
    table: str
    active_kek_id: str
    rewrapped: int   # rows now wrapped under the active KEK that were not before
    skipped: int     # rows replaced or deleted while this run was working on them (left alone)
    batches: int

    def as_dict(self) -> dict:
        return {"table": self.table, "active_kek_id": self.active_kek_id, "rewrapped": self.rewrapped,
                "skipped": self.skipped, "batches": self.batches}


def rewrap_data_keys(conn, table: str, batch_size: int = 500, reason: str = "kek_rotation") -> RewrapResult:
    """Re-wrap every data key in ``table`` that is not under the active KEK; return counts.

    ``table`` is ``customer_data_key`` (``conn`` to OLTP) or ``merchant_data_key`` (``conn`` to
    the reference DB). Works in batches of ``batch_size`` rows, one short transaction each, so
    writers are never blocked for long; an interrupted run simply continues on the next call.
    Each row is updated only if it still holds the wrapped key that was read (a key rotated or
    shredded meanwhile is skipped, never resurrected). Idempotent: with nothing left to do it
    returns ``rewrapped == 0``. One audit row per run that rewrapped anything.

    Raises :class:`InvalidRequest` for another table, :class:`paydata.crypto.UnknownKeyError` if
    a row names a KEK no longer in the ring, :class:`paydata.crypto.IntegrityError` for a
    tampered wrapped key.
    """
    if table not in DATA_KEY_TABLES:
        raise InvalidRequest(f"table must be one of {', '.join(DATA_KEY_TABLES)}; got {table!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise InvalidRequest(f"batch_size must be a positive integer, got {batch_size!r}")
    database, owner_column = DATA_KEY_TABLES[table]
    load = oltp_sql if database == "oltp" else reference_sql
    identifiers = {"table": sql.Identifier(table), "owner_column": sql.Identifier(owner_column)}
    select_batch = sql.SQL(load("data_keys_pending_rewrap")).format(**identifiers)
    update_batch = sql.SQL(load("data_key_rewrap_update")).format(**identifiers)
    envelope = default_envelope()
    active = envelope.ring.active_id
    after, rewrapped, skipped, batches = 0, 0, 0, 0
    while True:
        with transaction(conn, f"rewrap {table}") as cursor:
            cursor.execute(select_batch, {"after": after, "active_kek_id": active, "batch_size": batch_size})
            rows = cursor.fetchall()
            if not rows:
                break
            batches += 1
            after = rows[-1][0]
            values = [
                (owner_id, bytes(wrapped), envelope.rewrap(wrapped))
                for owner_id, wrapped in rows
                if envelope.needs_rewrap(wrapped)
            ]
            updated = psycopg2.extras.execute_values(
                cursor, update_batch, values, template="(%s, %s::bytea, %s::bytea)", fetch=True
            ) if values else []
            rewrapped += len(updated)
            skipped += len(values) - len(updated)
    result = RewrapResult(table, active, rewrapped, skipped, batches)
    if rewrapped:
        with transaction(conn, f"audit rewrap of {table}") as cursor:
            audit.record(cursor, "data_keys_rewrapped", table, None, reason=reason,
                         detail=result.as_dict(), database=database)
    return result


@dataclass(frozen=True)
class DataKeyRotation:
    customer_id: int
    old_key_id: str
    new_key_id: str
    fields_reencrypted: int


def rotate_customer_data_key(conn, customer_id: int, reason: str = "scheduled_rotation") -> DataKeyRotation:
    """Give a customer a new data key and re-encrypt their fields under it, in one transaction.

    The customer and key rows are locked, every non-NULL ``*_enc`` field is decrypted with the old
    key and encrypted with the new one (same row binding), and the key row is replaced. The old
    key id then exists nowhere, so old copies of the ciphertext downstream no longer decrypt: run
    this only after downstream stores have the new values or can be refreshed from OLTP.
    Raises :class:`NotFound` for an unknown customer, :class:`InvalidRequest` for an erased
    customer (nothing left to rotate) or an unknown reason.
    """
    if isinstance(customer_id, bool) or not isinstance(customer_id, int) or customer_id <= 0:
        raise InvalidRequest(f"customer_id must be a positive integer id, got {customer_id!r}")
    if reason not in ROTATION_REASONS:
        raise InvalidRequest(f"rotation reason must be one of {', '.join(ROTATION_REASONS)}; got {reason!r}")
    params = {"customer_id": customer_id}
    new_key = new_owner_key()
    with transaction(conn, f"rotate data key of customer {customer_id}") as cursor:
        cursor.execute(oltp_sql("customer_lock"), params)
        found = cursor.fetchone()
        if found is None:
            raise NotFound(f"customer {customer_id} does not exist")
        row = dict(zip([column.name for column in cursor.description], found, strict=True))
        cursor.execute(oltp_sql("customer_data_key_lock"), params)
        key_row = cursor.fetchone()
        if row["erased_at"] is not None or key_row is None:
            raise InvalidRequest(f"customer {customer_id} was erased: there is no data key to rotate")
        old_key_id, old_wrapped = key_row[0], bytes(key_row[1])
        old_cipher = FieldCipher(default_envelope().unwrap(old_wrapped), old_key_id)
        new_cipher = new_key.cipher()
        values = {
            f"{field}_enc": reencrypt(row[f"{field}_enc"], old_cipher, new_cipher,
                                      table=CUSTOMER_TABLE, column=field, pk=customer_id)
            for field in CUSTOMER_FIELDS
        }
        cursor.execute(oltp_sql("customer_data_key_replace"), {
            "customer_id": customer_id, "key_id": new_key.key_id, "wrapped_key": new_key.wrapped,
            "created_at": dt.datetime.now(dt.UTC),
        })
        cursor.execute(oltp_sql("customer_set_ciphertexts"), {"customer_id": customer_id, **values})
        reencrypted = sum(1 for value in values.values() if value is not None)
        audit.record(cursor, "customer_data_key_rotated", "customer", customer_id, reason=reason,
                     detail={"old_data_key_id": old_key_id, "new_data_key_id": new_key.key_id,
                             "fields_reencrypted": reencrypted})
    default_envelope().forget(old_wrapped)
    return DataKeyRotation(customer_id, old_key_id, new_key.key_id, reencrypted)
