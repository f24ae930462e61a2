"""The MongoDB sink: CDC changes become operational documents in the ``paydata`` database.

Document model (reasoning in ``docs/mongo.md``). Which columns become which fields, in which
collection, and which tables are embedded where, is data: the ``mongo:`` block of each table in the
capture manifests (:mod:`paydata.cdc.document_map`, :func:`document_models`). What is code here is
the behaviour per collection:

* ``merchant_profiles`` from ``reference.merchant``: ``_id`` merchant_id, current attributes and a
  ``history`` array of the last :data:`MERCHANT_HISTORY_LIMIT` risk tier / MCC / payout schedule versions.
* ``customers`` from ``oltp.customer``: ``_id`` is the customer token; no personal data.
* ``payment_intents`` from ``oltp.payment_intent``: the charge's merchant and customer live on the
  intent, so the sink keeps intents to denormalise ``merchant_id`` and ``customer`` into payments.
* ``payments`` from ``oltp.charge``: ``_id`` charge_id, an embedded ``device`` sub-document, a
  ``session_id`` reference into ``sessions``, and embedded ``refunds`` / ``disputes`` arrays fed by
  ``oltp.refund`` / ``oltp.dispute``. A refund or dispute that arrives before its charge creates a
  stub payment (no ``_pos``) that the charge fills in later.

Exactly-once. Every document and every embedded element carries ``_pos: {lsn, idx}``, the
position of the source change it reflects. A batch is applied in one transaction when the server
supports them (replica set, mongos, SecantusDB): the affected documents are read, every change is
merged in memory in commit order and only if its position is greater than the stored one, and
each changed document is written back with one bulk write, conditional on the ``_rev`` it was read
with (a concurrent writer makes the batch fail instead of losing an update). The offsets document
``cdc_offsets {_id: source, lsn, idx}`` is written in the same transaction. Without transactions
each document write is still atomic and guarded, so replaying a batch after a crash skips what
was applied and redoes the rest. Deletes leave tombstones (``deleted: true`` with the delete's
position) so an older change replayed later cannot resurrect the row; a TRUNCATE removes the
documents at or below its position and records a per-table watermark in ``cdc_truncations``
below which changes of that table are ignored.

Before anything is written, every string in every document is checked with
:func:`paydata.crypto.pii.find_pii`; an email, card number or IP address raises
:class:`PiiInDocument` and the batch writes nothing.
"""

from paydata.cdc.sinks.mongo.documents import (
    CUSTOMERS,
    GUARDED_PII_KINDS,
    HISTORY_ATTRIBUTES,
    MAX_LSN,
    MERCHANT_HISTORY_LIMIT,
    MERCHANT_PROFILES,
    OFFSETS_COLLECTION,
    PAYMENT_INTENTS,
    PAYMENTS,
    TRUNCATIONS_COLLECTION,
    UNAUTHORIZED,
    ConcurrentWrite,
    DefinitionsNotApplied,
    DocumentModels,
    MongoSinkError,
    PiiInDocument,
    UnsupportedChange,
    assert_no_pii,
    bson_value,
    document_id,
    document_models,
    is_newer,
    mapped_fields,
    merge_element,
    merge_top_level,
    moved_document_id,
    new_payment_stub,
    pii_findings,
    position_doc,
    stored_position,
)
from paydata.cdc.sinks.mongo.sink import MongoSink

__all__ = [
    "CUSTOMERS",
    "GUARDED_PII_KINDS",
    "HISTORY_ATTRIBUTES",
    "MAX_LSN",
    "MERCHANT_HISTORY_LIMIT",
    "MERCHANT_PROFILES",
    "OFFSETS_COLLECTION",
    "PAYMENTS",
    "PAYMENT_INTENTS",
    "TRUNCATIONS_COLLECTION",
    "UNAUTHORIZED",
    "ConcurrentWrite",
    "DefinitionsNotApplied",
    "DocumentModels",
    "MongoSink",
    "MongoSinkError",
    "PiiInDocument",
    "UnsupportedChange",
    "assert_no_pii",
    "bson_value",
    "document_id",
    "document_models",
    "is_newer",
    "mapped_fields",
    "merge_element",
    "merge_top_level",
    "moved_document_id",
    "new_payment_stub",
    "pii_findings",
    "position_doc",
    "stored_position",
]
