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

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from bson.decimal128 import Decimal128
from pymongo import InsertOne, ReplaceOne
from pymongo.client_session import ClientSession
from pymongo.database import Database

from paydata.cdc import failpoints
from paydata.cdc.document_map import DocumentMap
from paydata.cdc.model import CapturedChange, Position, TableSpec
from paydata.crypto.errors import InvalidInput
from paydata.crypto.pii import find_pii
from paydata.crypto.tokens import token_key_id

log = logging.getLogger(__name__)

MERCHANT_HISTORY_LIMIT = 10
OFFSETS_COLLECTION = "cdc_offsets"
TRUNCATIONS_COLLECTION = "cdc_truncations"
MAX_LSN = 2**63 - 1  # BSON int64; real LSNs stay far below

MERCHANT_PROFILES = "merchant_profiles"
CUSTOMERS = "customers"
PAYMENT_INTENTS = "payment_intents"
PAYMENTS = "payments"

# Personal-data kinds that must never reach Mongo. Phone numbers are not checked: a tokenised or
# numeric value never has the "+" form, and the national forms match too many references.
GUARDED_PII_KINDS = frozenset({"email", "pan", "ipv4", "ipv6"})

HISTORY_ATTRIBUTES = ("risk_tier_code", "mcc", "payout_schedule")


class MongoSinkError(RuntimeError):
    """The sink cannot apply a batch; nothing of the batch was committed (with transactions)."""


class UnsupportedChange(MongoSinkError, ValueError):
    """A change names a table, kind or value the Mongo document model does not handle."""


class PiiInDocument(MongoSinkError, ValueError):
    """A document about to be written holds personal data; the message names the field, never the value."""


class ConcurrentWrite(MongoSinkError):
    """A document changed between the batch's read and write: another writer is applying the same source."""


class DefinitionsNotApplied(MongoSinkError):
    """The collection definitions differ from the server and this sink's user may not change them."""


# MongoDB's "Unauthorized": the user's roles do not allow the operation.
UNAUTHORIZED = 13


@dataclass(frozen=True)
class DocumentModels:
    """The document maps of every table the manifests route to Mongo (their ``mongo:`` blocks)."""

    top_level: dict[tuple[str, str], DocumentMap]
    embedded: dict[tuple[str, str], DocumentMap]

    @property
    def supported(self) -> frozenset[tuple[str, str]]:
        return frozenset(self.top_level) | frozenset(self.embedded)

    def arrays(self) -> tuple[str, ...]:
        """The element arrays of a payment document, in manifest order."""
        return tuple(model.embed_array for model in self.embedded.values())


@functools.lru_cache(maxsize=4)
def _load_models(manifest_dir: str) -> DocumentModels:
    from paydata.cdc.manifest import load_manifest

    top_level: dict[tuple[str, str], DocumentMap] = {}
    embedded: dict[tuple[str, str], DocumentMap] = {}
    for path in sorted(Path(manifest_dir).glob("*.yaml")):
        manifest = load_manifest(path)
        for table in manifest.tables.values():
            model = table.document
            if model is None:
                continue
            if model.embedded and model.collection != PAYMENTS:
                raise UnsupportedChange(
                    f"{path}: {manifest.source}.{table.name} embeds into {model.collection!r}; the Mongo sink "
                    f"embeds elements only into {PAYMENTS!r} documents"
                )
            (embedded if model.embedded else top_level)[(manifest.source, table.name)] = model
    return DocumentModels(top_level, embedded)


def document_models() -> DocumentModels:
    """The document maps declared by the manifests in the manifest folder (read once per folder)."""
    from paydata import settings

    return _load_models(str(settings.cdc_manifest_dir()))


# ---------------------------------------------------------------------------------------------
# Pure document building


def position_doc(position: Position) -> dict[str, int]:
    """``{lsn, idx}`` as stored in ``_pos``; raises :class:`UnsupportedChange` outside BSON int64."""
    if not 0 <= position.commit_lsn <= MAX_LSN:
        raise UnsupportedChange(f"commit LSN {position.commit_lsn} does not fit a BSON int64")
    return {"lsn": position.commit_lsn, "idx": position.index_in_txn}


def stored_position(document: dict[str, Any] | None) -> Position | None:
    """The ``_pos`` of a document or element, ``None`` if it has none (absent, or a stub)."""
    if not document or "_pos" not in document:
        return None
    pos = document["_pos"]
    return Position(int(pos["lsn"]), int(pos["idx"]))


def is_newer(position: Position, document: dict[str, Any] | None) -> bool:
    """True when a change at ``position`` must replace what ``document`` reflects."""
    current = stored_position(document)
    return current is None or position > current


def bson_value(value: Any) -> Any:
    """A captured value in a form BSON stores without loss of meaning.

    ``Decimal`` becomes ``Decimal128``; a ``date`` becomes midnight UTC; naive datetimes are
    taken as UTC (pgoutput's ``timestamp without time zone``); lists and dicts are converted deeply.
    """
    if isinstance(value, Decimal):
        return Decimal128(value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    if isinstance(value, list):
        return [bson_value(item) for item in value]
    if isinstance(value, dict):
        return {key: bson_value(item) for key, item in value.items()}
    return value


def _set_path(document: dict[str, Any], path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    if rest:
        _set_path(document.setdefault(head, {}), rest, value)
    else:
        document[head] = value


def _get_path(document: dict[str, Any], path: str) -> Any:
    head, _, rest = path.partition(".")
    value = document.get(head)
    return _get_path(value, rest) if rest and isinstance(value, dict) else (None if rest else value)


def _key_value(change: CapturedChange, key: str) -> Any:
    source = change.row if change.row is not None and key in change.row else change.key
    if key not in source or source[key] is None:
        raise UnsupportedChange(
            f"{change.source}.{change.table} change at {change.position} has no value for key {key!r}"
        )
    return source[key]


def document_id(change: CapturedChange) -> Any:
    """The ``_id`` of the top-level document ``change`` affects (embedded tables: the element id)."""
    model = _model_of(change)
    value = _key_value(change, model.key)
    if model.key_is_token:
        _require_token(value, change, model.key)
    return value


def moved_document_id(change: CapturedChange) -> Any:
    """The ``_id`` of the old key's document, for the update half of a key change."""
    model = _model_of(change)
    value = (change.moved_from or {}).get(model.key)
    if value is None:
        raise UnsupportedChange(
            f"{change.source}.{change.table} key change at {change.position} has no old value for key {model.key!r}"
        )
    return value


def _require_token(value: Any, change: CapturedChange, column: str) -> None:
    try:
        token_key_id(value)
    except InvalidInput:
        raise UnsupportedChange(
            f"{change.source}.{change.table}.{column} at {change.position} is not a paydata token: "
            "the capture manifest must tokenise it (policy tokenise:<domain>)"
        ) from None


def _model_of(change: CapturedChange) -> DocumentMap:
    models = document_models()
    found = models.top_level.get((change.source, change.table)) or models.embedded.get((change.source, change.table))
    if found is None:
        raise UnsupportedChange(
            f"the Mongo sink has no document model for {change.source}.{change.table} (no mongo: block in its "
            f"manifest); supported tables: {sorted('.'.join(t) for t in models.supported)}"
        )
    return found


def mapped_fields(model: DocumentMap, change: CapturedChange) -> dict[str, Any]:
    """Document fields (dotted paths) from the columns ``change.row`` carries.

    Unchanged-TOAST columns are absent from the row and therefore absent here, so merging keeps
    the stored value. Raises :class:`UnsupportedChange` when a token field holds a non-token.
    """
    row = change.row or {}
    fields: dict[str, Any] = {}
    for column, path in model.fields.items():
        if column not in row:
            continue
        value = row[column]
        if path in model.token_fields and value is not None:
            _require_token(value, change, column)
        fields[path] = bson_value(value)
    return fields


def merge_top_level(
    current: dict[str, Any] | None, change: CapturedChange, moved_from: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The document after applying ``change`` to ``current``, or ``None`` if the change is not newer.

    Insert/update/snapshot set the mapped fields (keeping unchanged-TOAST ones), clear ``deleted``
    and stamp ``_pos``; delete keeps the last values as a tombstone with ``deleted: true``. The
    update half of a key change takes its unchanged-TOAST fields from ``moved_from``, the document
    of the old key (the new key's document does not hold them). Payment documents keep their
    ``refunds``/``disputes``; merchant profiles extend ``history``. Pure: neither document is modified.
    """
    model = _model_of(change)
    if change.kind not in {"insert", "update", "snapshot", "delete"}:
        raise UnsupportedChange(f"merge_top_level cannot apply a {change.kind!r} change")
    if not is_newer(change.position, current):
        return None
    doc_id = document_id(change)
    document = _deep_copy(current) if current else {"_id": doc_id}
    if change.kind == "delete":
        document["deleted"] = True
    else:
        if moved_from is not None:
            for column in change.unchanged:
                path = model.fields.get(column)
                if path is not None and _get_path(moved_from, path) is not None:
                    _set_path(document, path, _deep_copy(_get_path(moved_from, path)))
        for path, value in mapped_fields(model, change).items():
            _set_path(document, path, value)
        document["deleted"] = False
        if model.collection == CUSTOMERS:
            document["erased"] = document.get("erased_at") is not None
        if model.collection == MERCHANT_PROFILES:
            _extend_history(document, change)
    if model.collection == PAYMENTS:
        for array in document_models().arrays():
            document.setdefault(array, [])
    document["_pos"] = position_doc(change.position)
    document["_commit_time"] = bson_value(change.commit_time)
    return document


def _extend_history(document: dict[str, Any], change: CapturedChange) -> None:
    history = document.setdefault("history", [])
    attributes = {name: document.get(name) for name in HISTORY_ATTRIBUTES}
    if history and all(history[-1].get(name) == value for name, value in attributes.items()):
        return
    history.append(
        {**attributes, "valid_from": bson_value(change.commit_time), "_pos": position_doc(change.position)}
    )
    del history[:-MERCHANT_HISTORY_LIMIT]


def merge_element(
    current: dict[str, Any] | None, change: CapturedChange
) -> dict[str, Any] | None:
    """A refund/dispute element after ``change``, or ``None`` if the change is not newer than ``current``."""
    model = document_models().embedded[(change.source, change.table)]
    if change.kind not in {"insert", "update", "snapshot", "delete"}:
        raise UnsupportedChange(f"merge_element cannot apply a {change.kind!r} change")
    if not is_newer(change.position, current):
        return None
    element = _deep_copy(current) if current else {model.key: _key_value(change, model.key)}
    if change.kind == "delete":
        element["deleted"] = True
    else:
        element.update(mapped_fields(model, change))
        element["deleted"] = False
    element["_pos"] = position_doc(change.position)
    return element


def new_payment_stub(charge_id: Any) -> dict[str, Any]:
    """A payment document holding only embedded elements until its charge arrives (no ``_pos``)."""
    return {"_id": charge_id, **{array: [] for array in document_models().arrays()}}


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value


def _may_hold_guarded_pii(text: str) -> bool:
    # Cheap necessary conditions: an email has "@", an IPv4 ".", an IPv6 ":", a PAN 13+ digits.
    if "@" in text or "." in text or ":" in text:
        return True
    return len(text) >= 13 and sum(ch.isdigit() for ch in text) >= 13


def pii_findings(document: Any, path: str = "") -> list[tuple[str, str]]:
    """``(field path, kind)`` for every string in ``document`` holding an email, card number or IP."""
    found: list[tuple[str, str]] = []
    if isinstance(document, dict):
        for key, value in document.items():
            found += pii_findings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += pii_findings(value, f"{path}.{index}")
    elif isinstance(document, str) and _may_hold_guarded_pii(document):
        found += [(path, kind) for kind, _ in find_pii(document) if kind in GUARDED_PII_KINDS]
    return found


def assert_no_pii(collection: str, documents: Iterable[dict[str, Any]]) -> None:
    """Raise :class:`PiiInDocument` naming collection, ``_id`` and field of the first finding."""
    for document in documents:
        findings = pii_findings(document)
        if findings:
            where = ", ".join(f"{path} ({kind})" for path, kind in findings)
            doc_id = document.get("_id")
            shown_id = doc_id if not any(path == "_id" for path, _ in findings) else "<redacted>"
            raise PiiInDocument(
                f"refusing to write {collection} document {shown_id!r}: personal data in {where}; "
                "the capture manifest must drop or tokenise the column"
            )


# ---------------------------------------------------------------------------------------------
# Batch application


@dataclass
class _Working:
    """Documents read for one segment of a batch and their in-memory state after merging."""

    docs: dict[str, dict[Any, dict[str, Any]]] = field(default_factory=dict)
    read_rev: dict[str, dict[Any, int | None]] = field(default_factory=dict)
    dirty: dict[str, set[Any]] = field(default_factory=dict)
    element_parent: dict[str, dict[Any, Any]] = field(default_factory=dict)  # array -> element id -> charge
    payments_by_intent: dict[Any, set[Any]] = field(default_factory=dict)

    def load(self, collection: str, documents: Iterable[dict[str, Any]]) -> None:
        docs = self.docs.setdefault(collection, {})
        revs = self.read_rev.setdefault(collection, {})
        for document in documents:
            docs[document["_id"]] = document
            revs[document["_id"]] = document.get("_rev", 0)
            if collection == PAYMENTS:
                self._index_payment(document)
                for model in document_models().embedded.values():
                    for element in document.get(model.embed_array, []):
                        self.element_parent.setdefault(model.embed_array, {})[element[model.key]] = document["_id"]

    def _index_payment(self, document: dict[str, Any]) -> None:
        intent_id = document.get("payment_intent_id")
        if intent_id is not None:
            self.payments_by_intent.setdefault(intent_id, set()).add(document["_id"])

    def get(self, collection: str, doc_id: Any) -> dict[str, Any] | None:
        return self.docs.get(collection, {}).get(doc_id)

    def put(self, collection: str, document: dict[str, Any]) -> None:
        self.docs.setdefault(collection, {})[document["_id"]] = document
        self.read_rev.setdefault(collection, {}).setdefault(document["_id"], None)
        self.dirty.setdefault(collection, set()).add(document["_id"])
        if collection == PAYMENTS:
            self._index_payment(document)


class MongoSink:
    """Applies captured changes to the Mongo document model; see the module docstring for guarantees."""

    name = "mongo"

    def __init__(self, database_factory: Callable[[], Database]):
        self._database_factory = database_factory
        self._database: Database | None = None
        self._transactions: bool | None = None

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = self._database_factory()
        return self._database

    @property
    def uses_transactions(self) -> bool:
        """True when the server runs multi-document transactions (replica set, mongos or SecantusDB)."""
        if self._transactions is None:
            hello = self.database.client.admin.command("hello")
            self._transactions = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
            if not self._transactions:
                log.warning(
                    "Mongo server is a standalone without transactions: batches are applied per "
                    "document, replay safety rests on the per-document position guards"
                )
        return self._transactions

    def prepare(self, specs: list[TableSpec]) -> None:
        """Create collections, validators and indexes from ``include/nosql`` (idempotent).

        When they are already in place this only reads (``listCollections``, ``listIndexes``), which
        the CDC writer may do; creating or changing them is the administrator's (``python -m
        paydata.nosql apply``, ``stack up``, the ``schema_migrate`` DAG). Raises
        :class:`DefinitionsNotApplied` when something is missing and the server refuses to let this
        user add it, and :class:`UnsupportedChange` if a spec routes a table to this sink that has no
        document model, or whose key differs from the one the model uses.
        """
        from pymongo.errors import OperationFailure

        from paydata import nosql

        routed = {(spec.source, spec.table): spec for spec in specs if self.name in spec.sinks}
        for (source, table), spec in routed.items():
            if (source, table) not in document_models().supported:
                raise UnsupportedChange(
                    f"manifest routes {source}.{table} to the mongo sink, which has no document model for it"
                )
            model = _model_of(CapturedChange(source, table, "insert", Position.zero(), datetime.now(UTC), {}, {}))
            if spec.key != (model.key,):
                raise UnsupportedChange(
                    f"{source}.{table} key {spec.key} differs from the Mongo model's key ({model.key},)"
                )
        if ("oltp", "charge") in routed and ("oltp", "payment_intent") not in routed:
            log.warning(
                "oltp.charge goes to mongo but oltp.payment_intent does not: payments will lack "
                "merchant_id and customer"
            )
        try:
            nosql.apply_definitions(self.database)
        except OperationFailure as exc:
            if exc.code != UNAUTHORIZED:
                raise
            raise DefinitionsNotApplied(
                f"the collection definitions of Mongo database {self.database.name!r} are not applied and this "
                f"user may not apply them ({exc.details.get('errmsg') if exc.details else exc}); run "
                "`python -m paydata.nosql apply` (administrator connection paydata_mongo)"
            ) from exc

    def applied_position(self, source: str) -> Position:
        """Highest position stored in ``cdc_offsets`` for ``source``; ``Position.zero()`` if none."""
        stored = self.database[OFFSETS_COLLECTION].find_one({"_id": source})
        if stored is None:
            return Position.zero()
        return Position(int(stored["lsn"]), int(stored["idx"]))

    def apply(self, source: str, changes: list[CapturedChange]) -> Position:
        """Apply ``changes`` (commit order) with the new offset; return the applied position.

        Changes at or below the stored offset (or below a truncate watermark) are skipped. All of
        the batch is validated and PII-checked before the first write. Raises
        :class:`UnsupportedChange` (bad change), :class:`PiiInDocument`, :class:`ConcurrentWrite`
        or a pymongo error; with transactions nothing of a failed batch is kept.
        """
        for change in changes:
            if change.source != source:
                raise UnsupportedChange(
                    f"batch for source {source!r} contains a change of {change.source!r}.{change.table}"
                )
            _model_of(change)
            if change.kind not in {"insert", "update", "delete", "truncate", "snapshot"}:
                raise UnsupportedChange(f"unknown change kind {change.kind!r}")
        if not self.uses_transactions:
            return self._apply(source, changes, None)
        with self.database.client.start_session() as session:
            return session.with_transaction(lambda s: self._apply(source, changes, s))

    def replay(self, source: str, change: CapturedChange) -> bool:
        """Apply one change below the stored offset (a dead letter re-read from the source).

        The offset stays; each document's and element's position guard keeps a newer version that
        is already stored (then nothing is written). Returns True; raises as :meth:`apply` does.
        """
        _model_of(change)
        if change.source != source or change.kind not in {"insert", "update", "delete", "snapshot"}:
            raise UnsupportedChange(f"cannot replay a {change.kind!r} change of {change.source}.{change.table}")
        if not self.uses_transactions:
            self._apply_segment([change], self._truncate_watermarks(source, None), None)
            return True
        with self.database.client.start_session() as session:
            session.with_transaction(
                lambda s: self._apply_segment([change], self._truncate_watermarks(source, s), s)
            )
        return True

    def _apply(self, source: str, changes: list[CapturedChange], session: ClientSession | None) -> Position:
        db = self.database
        applied = self._stored_position(source, session)
        pending = [change for change in changes if change.position > applied]
        if not pending:
            return applied
        watermarks = self._truncate_watermarks(source, session)
        segment: list[CapturedChange] = []
        for change in pending:
            if change.kind == "truncate":
                self._apply_segment(segment, watermarks, session)
                segment = []
                self._truncate(change, watermarks, session)
            else:
                segment.append(change)
        self._apply_segment(segment, watermarks, session)
        newest = max(change.position for change in pending)
        failpoints.reach("mongo.in_transaction")  # documents written, offset not yet
        db[OFFSETS_COLLECTION].replace_one(
            {"_id": source},
            {**position_doc(newest), "updated_at": datetime.now(UTC)},
            upsert=True,
            session=session,
        )
        return newest

    def _stored_position(self, source: str, session: ClientSession | None) -> Position:
        stored = self.database[OFFSETS_COLLECTION].find_one({"_id": source}, session=session)
        return Position.zero() if stored is None else Position(int(stored["lsn"]), int(stored["idx"]))

    def _truncate_watermarks(self, source: str, session: ClientSession | None) -> dict[str, Position]:
        found = self.database[TRUNCATIONS_COLLECTION].find({"source": source}, session=session)
        return {item["table"]: Position(int(item["lsn"]), int(item["idx"])) for item in found}

    # -- segments of inserts/updates/deletes ------------------------------------------------

    def _apply_segment(
        self, segment: list[CapturedChange], watermarks: dict[str, Position], session: ClientSession | None
    ) -> None:
        segment = [c for c in segment if c.table not in watermarks or c.position > watermarks[c.table]]
        if not segment:
            return
        working = self._read_affected(segment, session)
        embedded = document_models().embedded
        for change in segment:
            if (change.source, change.table) in embedded:
                self._merge_embedded(working, change)
            else:
                self._merge_top_level(working, change)
        self._write(working, session)

    def _read_affected(self, segment: list[CapturedChange], session: ClientSession | None) -> _Working:
        ids: dict[str, set[Any]] = {}
        intent_ids: set[Any] = set()
        element_ids: dict[str, set[Any]] = {}
        models = document_models()
        for change in segment:
            if (change.source, change.table) in models.embedded:
                model = models.embedded[(change.source, change.table)]
                element_ids.setdefault(model.embed_array, set()).add(_key_value(change, model.key))
                if change.row is not None and change.row.get(model.parent_key) is not None:
                    ids.setdefault(PAYMENTS, set()).add(change.row[model.parent_key])
                continue
            model = _model_of(change)
            ids.setdefault(model.collection, set()).add(document_id(change))
            if change.moved_from is not None and change.unchanged:
                ids[model.collection].add(moved_document_id(change))
            if model.collection == PAYMENT_INTENTS:
                intent_ids.add(document_id(change))
            if model.collection == PAYMENTS and change.row and change.row.get("payment_intent_id") is not None:
                ids.setdefault(PAYMENT_INTENTS, set()).add(change.row["payment_intent_id"])
        db = self.database
        working = _Working()
        for collection in (MERCHANT_PROFILES, CUSTOMERS, PAYMENT_INTENTS):
            if ids.get(collection):
                working.load(
                    collection, db[collection].find({"_id": {"$in": list(ids[collection])}}, session=session)
                )
        payment_filters: list[dict[str, Any]] = []
        if ids.get(PAYMENTS):
            payment_filters.append({"_id": {"$in": list(ids[PAYMENTS])}})
        if intent_ids:
            payment_filters.append({"payment_intent_id": {"$in": list(intent_ids)}})
        for model in models.embedded.values():
            if element_ids.get(model.embed_array):
                payment_filters.append({f"{model.embed_array}.{model.key}": {"$in": list(element_ids[model.embed_array])}})
        # One indexed query per filter instead of one $or: SecantusDB does not use the indexes for
        # an $or of $in branches and scans the collection once per branch value.
        found: dict[Any, dict[str, Any]] = {}
        for payment_filter in payment_filters:
            for document in db[PAYMENTS].find(payment_filter, session=session):
                found.setdefault(document["_id"], document)
        working.load(PAYMENTS, found.values())
        return working

    def _merge_top_level(self, working: _Working, change: CapturedChange) -> None:
        model = _model_of(change)
        current = working.get(model.collection, document_id(change))
        moved_from = None
        if change.moved_from is not None and change.unchanged:
            moved_from = working.get(model.collection, moved_document_id(change))
        merged = merge_top_level(current, change, moved_from)
        if merged is None:
            return
        if model.collection == PAYMENTS:
            self._denormalise_intent(working, merged)
        working.put(model.collection, merged)
        if model.collection == PAYMENT_INTENTS:
            for payment_id in sorted(working.payments_by_intent.get(merged["_id"], ()), key=str):
                payment = working.get(PAYMENTS, payment_id)
                if payment is None or payment.get("payment_intent_id") != merged["_id"]:
                    continue
                updated = _deep_copy(payment)
                self._denormalise_intent(working, updated)
                if updated != payment:
                    working.put(PAYMENTS, updated)

    @staticmethod
    def _denormalise_intent(working: _Working, payment: dict[str, Any]) -> None:
        intent = working.get(PAYMENT_INTENTS, payment.get("payment_intent_id"))
        if intent is not None:
            for name in ("merchant_id", "customer"):
                if name in intent:
                    payment[name] = intent[name]

    def _merge_embedded(self, working: _Working, change: CapturedChange) -> None:
        model = document_models().embedded[(change.source, change.table)]
        array = model.embed_array
        element_id = _key_value(change, model.key)
        parents = working.element_parent.setdefault(array, {})
        old_parent_id = parents.get(element_id)
        old_parent = working.get(PAYMENTS, old_parent_id) if old_parent_id is not None else None
        current = None
        if old_parent is not None:
            current = next((e for e in old_parent.get(array, []) if e[model.key] == element_id), None)
        if change.kind == "delete" and old_parent is None:
            log.info("ignoring delete of %s.%s %s: no stored element", change.source, change.table, element_id)
            return
        element = merge_element(current, change)
        if element is None:
            return
        target_id = (change.row or {}).get(model.parent_key, old_parent_id)
        if target_id is None:
            raise UnsupportedChange(f"{change.source}.{change.table} {element_id} has no {model.parent_key}")
        if old_parent is not None and old_parent_id != target_id:
            moved_from = _deep_copy(old_parent)
            moved_from[array] = [e for e in moved_from[array] if e[model.key] != element_id]
            working.put(PAYMENTS, moved_from)
        parent = working.get(PAYMENTS, target_id)
        parent = _deep_copy(parent) if parent is not None else new_payment_stub(target_id)
        elements = parent.setdefault(array, [])
        for index, existing in enumerate(elements):
            if existing[model.key] == element_id:
                elements[index] = element
                break
        else:
            elements.append(element)
        working.put(PAYMENTS, parent)
        parents[element_id] = target_id

    def _write(self, working: _Working, session: ClientSession | None) -> None:
        plans: list[tuple[str, list[InsertOne | ReplaceOne], int]] = []
        for collection, dirty_ids in working.dirty.items():
            documents = [working.docs[collection][doc_id] for doc_id in dirty_ids]
            assert_no_pii(collection, documents)
            operations: list[InsertOne | ReplaceOne] = []
            replaces = 0
            for document in documents:
                read_rev = working.read_rev[collection][document["_id"]]
                document["_rev"] = (read_rev or 0) + 1
                if read_rev is None:
                    operations.append(InsertOne(document))
                else:
                    operations.append(ReplaceOne({"_id": document["_id"], "_rev": read_rev}, document))
                    replaces += 1
            plans.append((collection, operations, replaces))
        for collection, operations, replaces in plans:
            if not operations:
                continue
            try:
                result = self.database[collection].bulk_write(operations, ordered=False, session=session)
            except Exception as exc:
                if _is_duplicate_key(exc):
                    raise ConcurrentWrite(
                        f"{collection}: a document appeared between read and write; is another "
                        "engine applying the same source?"
                    ) from exc
                raise
            if result.matched_count != replaces:
                raise ConcurrentWrite(
                    f"{collection}: {replaces - result.matched_count} document(s) changed between read "
                    "and write; is another engine applying the same source?"
                )

    # -- truncate ---------------------------------------------------------------------------

    def _truncate(
        self, change: CapturedChange, watermarks: dict[str, Position], session: ClientSession | None
    ) -> None:
        previous = watermarks.get(change.table)
        if previous is not None and change.position <= previous:
            return
        db = self.database
        at_or_below = _at_or_below(change.position)
        models = document_models()
        if (change.source, change.table) in models.embedded:
            array = models.embedded[(change.source, change.table)].embed_array
            keep_newer = {
                "$filter": {"input": f"${array}", "as": "e", "cond": _newer_expression("$$e._pos", change.position)}
            }
            db[PAYMENTS].update_many(
                {f"{array}.0": {"$exists": True}}, [{"$set": {array: keep_newer}}], session=session
            )
            empty = {name: {"$size": 0} for name in models.arrays()}
            db[PAYMENTS].delete_many({"_pos": {"$exists": False}, **empty}, session=session)
        else:
            collection = models.top_level[(change.source, change.table)].collection
            db[collection].delete_many(at_or_below, session=session)
            if collection == PAYMENTS:
                # Stubs carry no _pos of their own: they go when no element is newer than the truncate.
                stubs = db[PAYMENTS].find({"_pos": {"$exists": False}}, session=session)
                doomed = [
                    stub["_id"]
                    for stub in stubs
                    if not any(e_pos > change.position for e_pos in _element_positions(stub))
                ]
                if doomed:
                    db[PAYMENTS].delete_many({"_id": {"$in": doomed}}, session=session)
        db[TRUNCATIONS_COLLECTION].replace_one(
            {"_id": f"{change.source}.{change.table}"},
            {"source": change.source, "table": change.table, **position_doc(change.position)},
            upsert=True,
            session=session,
        )
        watermarks[change.table] = change.position


def _element_positions(payment: dict[str, Any]) -> list[Position]:
    positions = []
    for array in document_models().arrays():
        for element in payment.get(array, []):
            found = stored_position(element)
            if found is not None:
                positions.append(found)
    return positions


def _at_or_below(position: Position) -> dict[str, Any]:
    """Query filter: documents whose ``_pos`` is at or below ``position``."""
    return {
        "$or": [
            {"_pos.lsn": {"$lt": position.commit_lsn}},
            {"_pos.lsn": position.commit_lsn, "_pos.idx": {"$lte": position.index_in_txn}},
        ]
    }


def _newer_expression(pos_path: str, position: Position) -> dict[str, Any]:
    """Aggregation expression: the ``_pos`` at ``pos_path`` is above ``position``."""
    return {
        "$or": [
            {"$gt": [f"{pos_path}.lsn", position.commit_lsn]},
            {
                "$and": [
                    {"$eq": [f"{pos_path}.lsn", position.commit_lsn]},
                    {"$gt": [f"{pos_path}.idx", position.index_in_txn]},
                ]
            },
        ]
    }


def _is_duplicate_key(exc: Exception) -> bool:
    details = getattr(exc, "details", None) or {}
    errors = details.get("writeErrors", []) if isinstance(details, dict) else []
    return getattr(exc, "code", None) == 11000 or any(error.get("code") == 11000 for error in errors)
