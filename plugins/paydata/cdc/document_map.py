"""How a captured table becomes MongoDB documents: the ``mongo:`` block of its manifest entry.

A table routed to the ``mongo`` sink declares, beside its column policies::

    mongo:
      collection: payments            # the collection its documents (or parent documents) live in
      fields:                         # column -> document field (dotted path); nothing else is written
        amount: amount
        device_id: device.device_id   # an embedded sub-document
        ip_address: device.ip_token
      token_fields: [device.ip_token] # fields that must hold a paydata token when written
      embed: {array: refunds, parent: charge_id}   # only for tables embedded in a parent's array

The document's ``_id`` (or the element's id) is the table's single key column. ``fields`` is a
whitelist: a column kept by the capture policy but not listed never reaches Mongo, so a free-text
column captured for the warehouse (``failure_message``) cannot leak into a document. A field may
only name a captured column, and a token field only a tokenised one. The sink's behaviour per
collection (merchant history, the customer's erased flag, payments denormalising their intent and
embedding refunds and disputes) is described in :mod:`paydata.cdc.sinks.mongo`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_PATH = re.compile(r"^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62}){0,3}$")
_COLLECTION = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_RESERVED_FIELDS = frozenset({"_id", "_pos", "_rev", "_commit_time", "deleted"})
_KEYS = frozenset({"collection", "fields", "token_fields", "embed"})


class DocumentMapError(ValueError):
    """The ``mongo:`` block is malformed; the message names the place."""


@dataclass(frozen=True)
class DocumentMap:
    """One captured table's place in the Mongo document model (see the module docstring)."""

    collection: str
    key: str
    fields: Mapping[str, str]
    token_fields: frozenset[str] = frozenset()
    key_is_token: bool = False  # the key column is tokenised: the document id must be a token
    embed_array: str | None = None
    parent_key: str | None = None

    @property
    def embedded(self) -> bool:
        return self.embed_array is not None


def parse_document_map(raw: object, key: tuple[str, ...], policies: Mapping[str, Any], where: str) -> DocumentMap:
    """The :class:`DocumentMap` of a ``mongo:`` block. ``policies`` maps each manifest column to its
    :class:`paydata.cdc.manifest.ColumnPolicy` (``action`` keep / tokenise / drop)."""
    if not isinstance(raw, Mapping):
        raise DocumentMapError(f"{where}: expected a mapping with {sorted(_KEYS)}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise DocumentMapError(f"{where}: unknown keys {sorted(unknown)}")
    collection = raw.get("collection")
    if not isinstance(collection, str) or not _COLLECTION.match(collection):
        raise DocumentMapError(f"{where}.collection: expected a collection name, got {collection!r}")
    if len(key) != 1:
        raise DocumentMapError(f"{where}: a Mongo document needs a single key column, the table has {list(key)}")
    fields = raw.get("fields")
    if not isinstance(fields, Mapping) or not fields:
        raise DocumentMapError(f"{where}.fields: expected a non-empty mapping of column: field path")
    for column, path in fields.items():
        policy = policies.get(column)
        if policy is None or policy.action == "drop":
            raise DocumentMapError(f"{where}.fields.{column}: only captured columns (keep or tokenise) can be written")
        if not isinstance(path, str) or not _PATH.match(path) or path.split(".")[0] in _RESERVED_FIELDS:
            raise DocumentMapError(f"{where}.fields.{column}: {path!r} is not a usable field path")
    token_fields = raw.get("token_fields", [])
    if not isinstance(token_fields, list) or not all(isinstance(path, str) for path in token_fields):
        raise DocumentMapError(f"{where}.token_fields: expected a list of field paths")
    column_of = {path: column for column, path in fields.items()}
    for path in token_fields:
        if path not in column_of:
            raise DocumentMapError(f"{where}.token_fields: {path!r} is not one of the fields")
        if policies[column_of[path]].action != "tokenise":
            raise DocumentMapError(f"{where}.token_fields: {path!r} comes from {column_of[path]!r}, which is not tokenised")
    embed_array = parent_key = None
    if "embed" in raw:
        embed = raw["embed"]
        if not isinstance(embed, Mapping) or set(embed) != {"array", "parent"}:
            raise DocumentMapError(f"{where}.embed: expected {{array: <field>, parent: <column>}}")
        embed_array, parent_key = embed["array"], embed["parent"]
        if not isinstance(embed_array, str) or not _PATH.match(embed_array) or "." in embed_array:
            raise DocumentMapError(f"{where}.embed.array: {embed_array!r} is not a top-level field name")
        parent_policy = policies.get(parent_key)
        if parent_policy is None or parent_policy.action != "keep":
            raise DocumentMapError(f"{where}.embed.parent: {parent_key!r} must be a kept column (the parent's _id)")
    return DocumentMap(collection, key[0], dict(fields), frozenset(token_fields),
                       policies[key[0]].action == "tokenise", embed_array, parent_key)
