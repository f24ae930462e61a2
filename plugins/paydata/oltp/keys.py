"""Key rotation for stored data keys (the keys themselves live in the key store).

* KEK rotation: after ``python -m paydata.crypto rotate-kek`` appended a new key-encryption key
  (or the KMS key was rotated), :func:`rewrap_data_keys` re-wraps every data key of one owner
  kind in the key store under it. Field ciphertexts are not touched (they are under the data
  keys, which do not change). Once no key names an old KEK, the old KEK may be retired.
* Data-key rotation: :func:`rotate_customer_data_key` gives one customer a new data key and
  re-encrypts their fields under it, e.g. when that key may have been exposed.

Both write an ``audit_log`` row in the owner's source database.
"""

from __future__ import annotations

from dataclasses import dataclass

from paydata.crypto import reencrypt
from paydata.keystore import KeyStore, RewrapResult, default_keystore
from paydata.oltp import audit
from paydata.oltp._db import oltp_sql, transaction
from paydata.oltp.app import CUSTOMER_FIELDS, CUSTOMER_TABLE
from paydata.oltp.errors import InvalidRequest, NotFound

# data-key table -> (source database whose audit log records it, owner kind in the key store)
DATA_KEY_TABLES = {
    "customer_data_key": ("oltp", "customer"),
    "merchant_data_key": ("reference", "merchant"),
}
ROTATION_REASONS = ("scheduled_rotation", "suspected_exposure", "kek_rotation")


def rewrap_data_keys(conn, table: str, batch_size: int = 500, reason: str = "kek_rotation", *,
                     keys: KeyStore | None = None) -> RewrapResult:
    """Re-wrap every data key of ``table``'s owners not under the active KEK; return counts.

    ``table`` is ``customer_data_key`` (``conn`` to OLTP) or ``merchant_data_key`` (``conn`` to
    the reference DB): the keys are in the key store, ``conn`` receives the audit row. Batches
    are short; a key rotated or destroyed meanwhile is skipped, never resurrected. Idempotent:
    with nothing left to do it returns ``rewrapped == 0``. One audit row per run that rewrapped
    anything. Raises :class:`InvalidRequest` for another table,
    :class:`paydata.crypto.UnknownKeyError` if a key names a KEK no longer available,
    :class:`paydata.crypto.IntegrityError` for a tampered wrapped key.
    """
    if table not in DATA_KEY_TABLES:
        raise InvalidRequest(f"table must be one of {', '.join(DATA_KEY_TABLES)}; got {table!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise InvalidRequest(f"batch_size must be a positive integer, got {batch_size!r}")
    database, owner = DATA_KEY_TABLES[table]
    result = (keys or default_keystore()).rewrap(owner, batch_size)
    if result.rewrapped:
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


def rotate_customer_data_key(conn, customer_id: int, reason: str = "scheduled_rotation", *,
                             keys: KeyStore | None = None) -> DataKeyRotation:
    """Give a customer a new data key and re-encrypt their fields under it.

    The customer row is locked, the new key is stored in the key store, every non-NULL ``*_enc``
    field is decrypted with the old key and encrypted with the new one (same row binding) and
    committed; then the old key is destroyed in the key store. A failure before the OLTP commit
    leaves an unused new key (destroyed with the customer's keys at erasure); the ciphertexts are
    never without their key. Old copies downstream no longer decrypt once the old key is gone:
    run this only after downstream stores can be refreshed from OLTP. Raises :class:`NotFound`
    for an unknown customer, :class:`InvalidRequest` for an erased customer or an unknown reason.
    """
    from paydata.crypto import key_id_of

    if isinstance(customer_id, bool) or not isinstance(customer_id, int) or customer_id <= 0:
        raise InvalidRequest(f"customer_id must be a positive integer id, got {customer_id!r}")
    if reason not in ROTATION_REASONS:
        raise InvalidRequest(f"rotation reason must be one of {', '.join(ROTATION_REASONS)}; got {reason!r}")
    keys = keys or default_keystore()
    params = {"customer_id": customer_id}
    with transaction(conn, f"rotate data key of customer {customer_id}") as cursor:
        cursor.execute(oltp_sql("customer_lock"), params)
        found = cursor.fetchone()
        if found is None:
            raise NotFound(f"customer {customer_id} does not exist")
        row = dict(zip([column.name for column in cursor.description], found, strict=True))
        blobs = [row[f"{field}_enc"] for field in CUSTOMER_FIELDS if row[f"{field}_enc"] is not None]
        if row["erased_at"] is not None or not blobs:
            raise InvalidRequest(f"customer {customer_id} was erased: there is no data key to rotate")
        old_key_id = key_id_of(blobs[0])
        old_cipher = keys.cipher(CUSTOMER_TABLE, old_key_id)
        new_key = keys.create(CUSTOMER_TABLE, customer_id)
        new_cipher = new_key.cipher()
        values = {
            f"{field}_enc": reencrypt(row[f"{field}_enc"], old_cipher, new_cipher,
                                      table=CUSTOMER_TABLE, column=field, pk=customer_id)
            for field in CUSTOMER_FIELDS
        }
        cursor.execute(oltp_sql("customer_set_ciphertexts"), {"customer_id": customer_id, **values})
        reencrypted = sum(1 for value in values.values() if value is not None)
        audit.record(cursor, "customer_data_key_rotated", "customer", customer_id, reason=reason,
                     detail={"old_data_key_id": old_key_id, "new_data_key_id": new_key.key_id,
                             "fields_reencrypted": reencrypted})
    keys.retire(CUSTOMER_TABLE, customer_id, old_key_id)
    return DataKeyRotation(customer_id, old_key_id, new_key.key_id, reencrypted)
