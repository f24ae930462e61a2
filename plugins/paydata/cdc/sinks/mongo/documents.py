"""The Mongo sink's document model as pure functions: the document maps from the manifests, how a
captured change merges into a stored document or embedded element, positions, BSON values, and
the personal-data check every document passes before it is written. No database access here.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from bson.decimal128 import Decimal128

from paydata.cdc.document_map import DocumentMap
from paydata.cdc.model import CapturedChange, Position
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


_current_models: tuple[str | None, DocumentModels] | None = None


def document_models() -> DocumentModels:
    """The document maps declared by the manifests in the manifest folder (read once per folder).

    Called for every change a batch merges: the folder's environment variable is the cache key, so
    the common case is one dictionary lookup.
    """
    global _current_models
    from paydata import settings

    override = os.environ.get(settings.CDC_MANIFEST_DIR_VARIABLE)
    current = _current_models
    if current is None or current[0] != override:
        current = _current_models = (override, _load_models(str(settings.cdc_manifest_dir())))
    return current[1]


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
