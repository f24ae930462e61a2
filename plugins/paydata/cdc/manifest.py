"""The capture manifest: which tables and columns leave a source database, and in what form.

A manifest (``include/cdc/<source>.yaml``) lists every column of every captured table with one
policy:

* ``keep``: the value is copied as decoded;
* ``tokenise:<domain>``: the value is replaced by its deterministic keyed token
  (:func:`paydata.crypto.tokenise`), so stores join on it without being able to recover it;
* ``drop``: the value never leaves the source (it is not even read by the snapshot).

The manifest is checked twice: its shape when loaded (:func:`load_manifest`, :class:`ManifestError`)
and against the source catalog at the start of every run (:meth:`Manifest.check_catalog`): a
manifest column missing from the source is an error naming it (a dropped or renamed column would
otherwise be captured as NULL forever); a source column the manifest does not list is a warning and
is ignored (an ``ADD COLUMN`` must not stop the pipeline, and must not leak a new PII column
either). The same two rules apply to every decoded change (:meth:`Manifest.capture_raw`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml

from paydata.cdc.capturer import SOURCE_SCHEMA, PolicyCapture, _RowPlan
from paydata.cdc.capturer import (
    SchemaDriftError as SchemaDriftError,  # re-exported: part of the manifest's contract
)
from paydata.cdc.document_map import DocumentMap, DocumentMapError, parse_document_map
from paydata.cdc.model import TableSpec
from paydata.cdc.pgoutput import Relation
from paydata.settings import REPO_ROOT

log = logging.getLogger(__name__)

MANIFEST_DIR = REPO_ROOT / "include" / "cdc"  # the shipped manifests; settings.cdc_manifest_dir() may point elsewhere
KNOWN_SINKS = frozenset({"warehouse", "mongo"})

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DOMAIN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_TOP_LEVEL_KEYS = {"source", "slot", "publication", "tables"}
_TABLE_KEYS = {"key", "sinks", "history", "columns", "on_error", "mongo"}
ON_ERROR_POLICIES = ("dead_letter", "stop")

PolicyAction = Literal["keep", "tokenise", "drop"]


class ManifestError(ValueError):
    """The manifest is malformed or disagrees with the source catalog; the message names the place."""


@dataclass(frozen=True)
class ColumnPolicy:
    action: PolicyAction
    domain: str | None = None

    @classmethod
    def parse(cls, text: object, where: str) -> ColumnPolicy:
        """``keep`` | ``drop`` | ``tokenise:<domain>``; ManifestError naming ``where`` otherwise."""
        if text == "keep":
            return cls("keep")
        if text == "drop":
            return cls("drop")
        if isinstance(text, str) and text.startswith("tokenise:"):
            domain = text.partition(":")[2]
            if _DOMAIN.match(domain):
                return cls("tokenise", domain)
        raise ManifestError(
            f"{where}: policy {text!r} is not one of 'keep', 'drop', 'tokenise:<domain>' "
            "(domain: lowercase letters, digits, '_')"
        )


@dataclass(frozen=True)
class SourceColumn:
    """A column as the source catalog describes it."""

    name: str
    type_oid: int
    sql_type: str


SourceCatalog = Mapping[str, Mapping[str, SourceColumn]]
"""table -> column name -> :class:`SourceColumn`, in the source's column order."""


@dataclass(frozen=True)
class TableManifest:
    name: str
    key: tuple[str, ...]
    sinks: tuple[str, ...]
    history: bool
    columns: Mapping[str, ColumnPolicy]
    # A change the policy cannot be applied to (a value that cannot be tokenised): recorded as a dead
    # letter while the stream goes on, or the run stops (tables where a gap corrupts what is built on them).
    on_error: str = "dead_letter"
    document: DocumentMap | None = None  # the table's Mongo document map (tables routed to the mongo sink)

    @cached_property
    def captured_columns(self) -> tuple[str, ...]:
        """Columns that leave the source (kept or tokenised), in manifest order."""
        return tuple(name for name, policy in self.columns.items() if policy.action != "drop")

    @cached_property
    def column_names(self) -> frozenset[str]:
        return frozenset(self.columns)

    @cached_property
    def captured_policies(self) -> tuple[tuple[str, str | None], ...]:
        """``(column, tokenise domain or None for keep)`` for each captured column (the hot path's plan)."""
        return tuple(
            (name, self.columns[name].domain if self.columns[name].action == "tokenise" else None)
            for name in self.captured_columns
        )


@dataclass
class Manifest(PolicyCapture):
    """A validated manifest; see the module docstring for the rules it enforces. Applying its policy
    to rows and changes is :class:`paydata.cdc.capturer.PolicyCapture`'s job (the methods and the
    runtime caches below: token memos, per-relation row plans)."""

    source: str
    slot: str
    publication: str
    tables: dict[str, TableManifest]
    origin: str = "<mapping>"
    tokenise: Callable[..., str] | None = None
    _warned: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _pinned_tokenise: Callable[..., str] | None = field(default=None, repr=False)
    _row_plans: dict[int, tuple[Relation, _RowPlan | None]] = field(default_factory=dict, repr=False)
    _token_memos: dict[tuple[str, Any], dict[str, str]] = field(default_factory=dict, repr=False)
    _memo_tokeniser: Any = field(default=None, repr=False)
    _memo_active: bool = field(default=False, repr=False)
    _token_function: Callable[[str], Callable[[str], str]] | None = field(default=None, repr=False)
    _token_functions: dict[str, Callable[[str], str]] = field(default_factory=dict, repr=False)

    def tables_for_sink(self, sink: str) -> list[str]:
        return [name for name, table in self.tables.items() if sink in table.sinks]

    @property
    def sink_names(self) -> set[str]:
        return {sink for table in self.tables.values() for sink in table.sinks}

    # -- catalog ---------------------------------------------------------------------------------

    def check_catalog(self, catalog: SourceCatalog) -> list[str]:
        """Compare the manifest with the source catalog; return warnings, raise ManifestError on errors.

        Errors: a captured table missing from the source, a manifest column missing from its table
        (named in the message). Warnings: source columns the manifest does not list (ignored).
        """
        errors: list[str] = []
        warnings: list[str] = []
        for name, table in self.tables.items():
            columns = catalog.get(name)
            if not columns:
                errors.append(f"table {SOURCE_SCHEMA}.{name} does not exist in source {self.source!r}")
                continue
            for column in table.columns:
                if column not in columns:
                    errors.append(
                        f"column {name}.{column} is in the manifest ({self.origin}) but not in source "
                        f"{self.source!r}: it was dropped or renamed; update the manifest"
                    )
            for column in columns:
                if column not in table.columns:
                    warnings.append(
                        f"column {name}.{column} exists in source {self.source!r} but not in the manifest: "
                        "ignored (add it with a policy to capture it)"
                    )
        if errors:
            raise ManifestError("; ".join(errors))
        for warning in warnings:
            log.warning(warning)
        return warnings

    def table_specs(self, catalog: SourceCatalog) -> list[TableSpec]:
        """The sinks' view of every captured table: kept columns typed as in the source, tokens as text."""
        self.check_catalog(catalog)
        specs = []
        for name, table in self.tables.items():
            columns = {
                column: (catalog[name][column].sql_type if table.columns[column].action == "keep" else "text")
                for column in table.captured_columns
            }
            specs.append(TableSpec(self.source, name, table.key, columns, table.sinks, table.history))
        return specs


def load_manifest(source: str | Path | Mapping[str, Any]) -> Manifest:
    """Load and validate a manifest.

    ``source`` is a logical source name (``"oltp"`` -> ``<settings.cdc_manifest_dir()>/oltp.yaml``), a path to a YAML
    file, or an already parsed mapping. Raises :class:`ManifestError` naming the file and the
    offending entry for any malformed content, FileNotFoundError for a missing file.
    """
    if isinstance(source, Mapping):
        return _build(source, "<mapping>")
    path = Path(source)
    if not path.suffix and _IDENTIFIER.match(str(source)):
        from paydata.settings import cdc_manifest_dir

        path = cdc_manifest_dir() / f"{source}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"CDC manifest not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML ({exc})") from exc
    return _build(data, str(path))


def _identifier(value: object, where: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ManifestError(f"{where}: {value!r} is not a lowercase SQL identifier")
    return value


def _names(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ManifestError(f"{where}: expected a non-empty list")
    names = tuple(_identifier(item, where) for item in value)
    if len(set(names)) != len(names):
        raise ManifestError(f"{where}: duplicate entries in {list(names)}")
    return names


def _build(data: object, origin: str) -> Manifest:
    if not isinstance(data, Mapping):
        raise ManifestError(f"{origin}: expected a mapping at the top level")
    unknown = set(data) - _TOP_LEVEL_KEYS
    missing = _TOP_LEVEL_KEYS - set(data)
    if unknown or missing:
        raise ManifestError(
            f"{origin}: top-level keys must be {sorted(_TOP_LEVEL_KEYS)}"
            + (f"; unknown {sorted(unknown)}" if unknown else "")
            + (f"; missing {sorted(missing)}" if missing else "")
        )
    source = _identifier(data["source"], f"{origin}: source")
    slot = _identifier(data["slot"], f"{origin}: slot")
    publication = _identifier(data["publication"], f"{origin}: publication")
    raw_tables = data["tables"]
    if not isinstance(raw_tables, Mapping) or not raw_tables:
        raise ManifestError(f"{origin}: tables must be a non-empty mapping")
    tables = {}
    for name, raw in raw_tables.items():
        where = f"{origin}: tables.{name}"
        _identifier(name, where)
        tables[name] = _table(name, raw, where)
    return Manifest(source, slot, publication, tables, origin)


def _table(name: str, raw: object, where: str) -> TableManifest:
    if not isinstance(raw, Mapping):
        raise ManifestError(f"{where}: expected a mapping with {sorted(_TABLE_KEYS)}")
    unknown = set(raw) - _TABLE_KEYS
    if unknown:
        raise ManifestError(f"{where}: unknown keys {sorted(unknown)}")
    for required in ("key", "sinks", "columns"):
        if required not in raw:
            raise ManifestError(f"{where}: missing {required!r}")
    key = _names(raw["key"], f"{where}.key")
    sinks = _names(raw["sinks"], f"{where}.sinks")
    bad_sinks = sorted(set(sinks) - KNOWN_SINKS)
    if bad_sinks:
        raise ManifestError(f"{where}.sinks: unknown sink(s) {bad_sinks}; known: {sorted(KNOWN_SINKS)}")
    history = raw.get("history", False)
    if not isinstance(history, bool):
        raise ManifestError(f"{where}.history: expected true or false, got {history!r}")
    raw_columns = raw["columns"]
    if not isinstance(raw_columns, Mapping) or not raw_columns:
        raise ManifestError(f"{where}.columns: expected a non-empty mapping of column: policy")
    columns = {
        _identifier(column, f"{where}.columns"): ColumnPolicy.parse(policy, f"{where}.columns.{column}")
        for column, policy in raw_columns.items()
    }
    for column in key:
        if column not in columns:
            raise ManifestError(f"{where}.key: key column {column!r} is not listed under columns")
        if columns[column].action == "drop":
            raise ManifestError(f"{where}.key: key column {column!r} cannot be dropped (sinks need the key)")
    on_error = raw.get("on_error", "dead_letter")
    if on_error not in ON_ERROR_POLICIES:
        raise ManifestError(f"{where}.on_error: expected one of {list(ON_ERROR_POLICIES)}, got {on_error!r}")
    document = None
    if "mongo" in sinks:
        if "mongo" not in raw:
            raise ManifestError(f"{where}: routed to the mongo sink but has no mongo: block (its document map)")
        try:
            document = parse_document_map(raw["mongo"], key, columns, f"{where}.mongo")
        except DocumentMapError as exc:
            raise ManifestError(str(exc)) from None
    elif "mongo" in raw:
        raise ManifestError(f"{where}: has a mongo: block but is not routed to the mongo sink")
    return TableManifest(name, key, sinks, history, columns, on_error, document)
