"""The Mongo sink: batches of captured changes applied to the documents (:mod:`.documents`), with
their offsets, in one transaction; truncates; preparing the collections. See :mod:`paydata.cdc.sinks.mongo`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import InsertOne, ReplaceOne
from pymongo.client_session import ClientSession
from pymongo.database import Database

from paydata.cdc import failpoints
from paydata.cdc.model import CapturedChange, Position, TableSpec
from paydata.cdc.sinks.mongo.documents import (
    CUSTOMERS,
    MERCHANT_PROFILES,
    OFFSETS_COLLECTION,
    PAYMENT_INTENTS,
    PAYMENTS,
    TRUNCATIONS_COLLECTION,
    UNAUTHORIZED,
    ConcurrentWrite,
    DefinitionsNotApplied,
    UnsupportedChange,
    _deep_copy,
    _key_value,
    _model_of,
    assert_no_pii,
    document_id,
    document_models,
    merge_element,
    merge_top_level,
    moved_document_id,
    new_payment_stub,
    position_doc,
    stored_position,
)
from paydata.cdc.sinks.mongo.transactions import run_transaction_retrying_conflicts

log = logging.getLogger(__name__)


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

        def transaction() -> Position:
            with self.database.client.start_session() as session:
                return session.with_transaction(lambda s: self._apply(source, changes, s))

        return run_transaction_retrying_conflicts(transaction)

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

        def transaction() -> None:
            with self.database.client.start_session() as session:
                session.with_transaction(
                    lambda s: self._apply_segment([change], self._truncate_watermarks(source, s), s)
                )

        run_transaction_retrying_conflicts(transaction)
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
