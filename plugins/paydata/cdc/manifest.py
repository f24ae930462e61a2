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
either). The same two rules apply to every decoded change (:meth:`Manifest.capture`).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml

from paydata.cdc.model import CapturedChange, CapturedKind, Position, TableSpec
from paydata.cdc.pgoutput import UNCHANGED_TOAST, Change
from paydata.settings import REPO_ROOT

log = logging.getLogger(__name__)

MANIFEST_DIR = REPO_ROOT / "include" / "cdc"
KNOWN_SINKS = frozenset({"warehouse", "mongo"})
SOURCE_SCHEMA = "public"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DOMAIN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_TOP_LEVEL_KEYS = {"source", "slot", "publication", "tables"}
_TABLE_KEYS = {"key", "sinks", "history", "columns"}

PolicyAction = Literal["keep", "tokenise", "drop"]


class ManifestError(ValueError):
    """The manifest is malformed or disagrees with the source catalog; the message names the place."""


class SchemaDriftError(RuntimeError):
    """A decoded change lacks a column the manifest maps (dropped or renamed in the source)."""


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
class Manifest:
    """A validated manifest; see the module docstring for the rules it enforces."""

    source: str
    slot: str
    publication: str
    tables: dict[str, TableManifest]
    origin: str = "<mapping>"
    tokenise: Callable[..., str] | None = None
    _warned: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _pinned_tokenise: Callable[..., str] | None = field(default=None, repr=False)

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

    # -- applying the policy ---------------------------------------------------------------------

    @contextlib.contextmanager
    def pinned_tokeniser(self) -> Generator[None, None, None]:
        """Within the block, resolve the environment's token key ring once instead of per value.

        For a batch of changes: tokens are the same as without the block as long as the ring is
        not reloaded in the middle of it (a reload takes effect at the next block).
        """
        if self.tokenise is not None:
            yield
            return
        from paydata.crypto import default_tokeniser

        self._pinned_tokenise = default_tokeniser().tokenise
        try:
            yield
        finally:
            self._pinned_tokenise = None

    def _tokeniser(self) -> Callable[..., str]:
        tokenise = self.tokenise or self._pinned_tokenise
        if tokenise is None:
            from paydata.crypto import tokenise
        return tokenise

    def _value(self, policy: ColumnPolicy, value: Any) -> Any:
        if value is None or policy.action == "keep":
            return value
        return self._tokeniser()(value if isinstance(value, str) else str(value), domain=policy.domain)

    def capture_row(
        self,
        table_name: str,
        values: Mapping[str, Any],
        *,
        kind: CapturedKind,
        position: Position,
        commit_time: datetime,
    ) -> CapturedChange:
        """Apply the policy to a full or partial row (insert/update/snapshot); see :meth:`capture`."""
        table = self.tables[table_name]
        self._check_columns(table, values, table.captured_columns)
        return self._capture_checked_row(table, values, kind, position, commit_time)

    def _capture_checked_row(
        self, table: TableManifest, values: Mapping[str, Any], kind: CapturedKind, position: Position,
        commit_time: datetime,
    ) -> CapturedChange:
        # Hot path (every streamed insert/update): the plan is precomputed, the tokeniser resolved once.
        row: dict[str, Any] = {}
        unchanged: set[str] | None = None
        tokenise = None
        for column, domain in table.captured_policies:
            value = values[column]
            if value is UNCHANGED_TOAST:
                if unchanged is None:
                    unchanged = set()
                unchanged.add(column)
            elif domain is None or value is None:
                row[column] = value
            else:
                if tokenise is None:
                    tokenise = self._tokeniser()
                row[column] = tokenise(value if isinstance(value, str) else str(value), domain=domain)
        key = {column: row[column] for column in table.key} if all(k in row for k in table.key) \
            else self._key(table, values)
        return CapturedChange(
            self.source, table.name, kind, position, commit_time, key, row,
            frozenset(unchanged) if unchanged else frozenset(),
        )

    def capture(self, change: Change) -> list[CapturedChange]:
        """The :class:`CapturedChange` list for one decoded change (empty if its table is not captured).

        An update that changes the key becomes a delete of the old key followed by an update of the
        new one, both at the change's position (they touch different rows, so per-row guards keep
        them independent). Raises :class:`SchemaDriftError` naming every manifest column the change
        lacks; warns once per column about source columns the manifest does not list.
        """
        table = self.tables.get(change.table) if change.schema == SOURCE_SCHEMA else None
        if table is None:
            return []
        position = Position(change.lsn_commit, change.index_in_txn)
        if change.kind == "truncate":
            return [
                CapturedChange(self.source, change.table, "truncate", position, change.commit_time, {}, None)
            ]
        if change.kind == "delete":
            old = change.old or {}
            self._check_columns(table, old, ())
            return [
                CapturedChange(
                    self.source, change.table, "delete", position, change.commit_time, self._key(table, old), None
                )
            ]
        new = change.new or {}
        self._check_columns(table, new, table.columns)
        captured = self._capture_checked_row(table, new, change.kind, position, change.commit_time)
        if change.kind == "update" and change.old is not None and all(k in change.old for k in table.key):
            old_key = self._key(table, change.old)
            if old_key != captured.key:
                deleted = CapturedChange(
                    self.source, change.table, "delete", position, change.commit_time, old_key, None
                )
                return [deleted, captured]
        return [captured]

    def _key(self, table: TableManifest, values: Mapping[str, Any]) -> dict[str, Any]:
        missing = [column for column in table.key if column not in values]
        if missing:
            raise SchemaDriftError(
                f"change for {self.source}.{table.name} lacks key column(s) {', '.join(missing)}: "
                "the table's replica identity must include the manifest key"
            )
        return {column: self._value(table.columns[column], values[column]) for column in table.key}

    def _check_columns(self, table: TableManifest, values: Mapping[str, Any], required: Iterable[str]) -> None:
        names = table.column_names
        if len(values) == len(names) and values.keys() == names:
            return  # the common case: exactly the manifest's columns
        missing = [column for column in required if column not in values]
        if missing:
            raise SchemaDriftError(
                f"source {self.source!r} table {table.name}: manifest column(s) {', '.join(missing)} "
                "missing from the replicated relation (dropped or renamed); nothing of this batch "
                "was applied and the slot was not advanced. Update the manifest "
                f"({self.origin}) and rerun."
            )
        for column in values:
            if column not in table.columns and (table.name, column) not in self._warned:
                self._warned.add((table.name, column))
                log.warning(
                    "source %r table %s: column %s is not in the manifest; ignored", self.source, table.name, column
                )


def load_manifest(source: str | Path | Mapping[str, Any]) -> Manifest:
    """Load and validate a manifest.

    ``source`` is a logical source name (``"oltp"`` -> ``include/cdc/oltp.yaml``), a path to a YAML
    file, or an already parsed mapping. Raises :class:`ManifestError` naming the file and the
    offending entry for any malformed content, FileNotFoundError for a missing file.
    """
    if isinstance(source, Mapping):
        return _build(source, "<mapping>")
    path = Path(source)
    if not path.suffix and _IDENTIFIER.match(str(source)):
        path = MANIFEST_DIR / f"{source}.yaml"
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
    return TableManifest(name, key, sinks, history, columns)
