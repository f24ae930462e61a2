"""Applying a manifest's policy: snapshot rows and decoded changes become captured rows.

:class:`PolicyCapture` is the half of :class:`paydata.cdc.manifest.Manifest` that works on data:
it projects the captured columns, tokenises (each distinct value once per token key ring, in a
bounded memo), checks every change against the manifest (schema drift, missing key columns) and
diagnoses a change it could not capture for the dead-letter record. The hot path
(:meth:`PolicyCapture.capture_raw`) keeps values as the source's output text and builds one plan
per Relation message.
"""

from __future__ import annotations

import contextlib
import logging
import operator
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from paydata.cdc.model import CapturedChange, CapturedKind, CapturedRow, Position, RowLayout
from paydata.cdc.pgoutput import UNCHANGED_TOAST, RawChange, Relation
from paydata.cdc.types import parser_for

if TYPE_CHECKING:
    from paydata.cdc.manifest import ColumnPolicy, TableManifest

log = logging.getLogger(__name__)

SOURCE_SCHEMA = "public"

TOKEN_MEMO_ENTRIES = 1 << 19
"""Tokens remembered per (domain, column type) before the memo starts over: about 230 bytes each,
so at most ~120 MB; a stream that repeats customers within that many distinct values tokenises each once."""


class SchemaDriftError(RuntimeError):
    """A decoded change disagrees with the manifest (e.g. a captured column was dropped from the source)."""


class PolicyCapture:
    """Mixed into :class:`paydata.cdc.manifest.Manifest`: uses its ``source``, ``tables``,
    ``tokenise`` and runtime cache fields."""

    # -- applying the policy ---------------------------------------------------------------------

    @contextlib.contextmanager
    def pinned_tokeniser(self) -> Generator[None, None, None]:
        """Within the block, resolve the environment's token key ring once instead of per value.

        For a batch of changes: tokens are the same as without the block as long as the ring is
        not reloaded in the middle of it (a reload takes effect at the next block).
        """
        if self.tokenise is None:
            from paydata.crypto import default_tokeniser

            tokeniser = default_tokeniser()
            self._pinned_tokenise = tokeniser.tokenise
            self._token_function = tokeniser.token_function
        tokenise = self._tokeniser()
        if tokenise != self._memo_tokeniser:
            # Another key ring (or tokeniser): every remembered token is stale.
            for memo in self._token_memos.values():
                memo.clear()
            self._memo_tokeniser = tokenise
        self._memo_active = True
        try:
            yield
        finally:
            self._memo_active = False
            self._pinned_tokenise = None
            self._token_function = None
            self._token_functions.clear()

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

    # -- the hot path: unparsed rows -----------------------------------------------------------------

    def capture_raw(self, change: RawChange) -> list[CapturedRow]:
        """The :class:`CapturedRow` list for one decoded change (empty if its table is not captured).

        An update that changes the key becomes a delete of the old key followed by an update of the
        new one, both at the change's position, the update carrying ``moved_from`` (the old key).
        Raises :class:`SchemaDriftError` naming every manifest column the change lacks; warns once
        per column about source columns the manifest does not list.

        Values stay as the source's output text; only tokenised columns are parsed (to tokenise
        the same string a snapshot row's value gives) and each distinct value is tokenised once while the
        token key ring stays the same (a bounded memo, see :data:`TOKEN_MEMO_ENTRIES`). The
        per-relation plan (projection, key, schema-drift check) is built once per Relation message.
        Call inside :meth:`pinned_tokeniser` on a hot loop.
        """
        relation = change.relation
        cached = self._row_plans.get(relation.relation_id)
        if cached is None or cached[0] is not relation:
            plan = self._row_plan(relation)
            self._row_plans[relation.relation_id] = (relation, plan)
        else:
            plan = cached[1]
        if plan is None:
            return []
        kind = change.kind
        if kind == "truncate":
            return [CapturedRow(self.source, plan.table.name, "truncate", change.commit_lsn, change.index_in_txn,
                                change.commit_time, None, None, plan.layout)]
        if kind == "delete":
            key = plan.old_key(self, change)
            return [CapturedRow(self.source, plan.table.name, "delete", change.commit_lsn, change.index_in_txn,
                                change.commit_time, key, None, plan.layout)]
        if plan.missing:
            raise self._drift_error(plan.table, plan.missing)
        values = plan.project(change.new)
        if plan.tokenised:
            values = list(values)
            for position, memo, parse, domain in plan.tokenised:
                text = values[position]
                if text is not None and text is not UNCHANGED_TOAST:
                    token = memo.get(text) if self._memo_active else None
                    if token is None:
                        token = self._memo_token(memo, text, parse, domain)
                    values[position] = token
        has_unchanged = kind == "update" and UNCHANGED_TOAST in values
        key = plan.key_of(values)
        if has_unchanged and UNCHANGED_TOAST in (key if type(key) is tuple else (key,)):
            if change.old is None:
                raise SchemaDriftError(
                    f"update of {self.source}.{plan.table.name} at {format_position(change)} did not send its "
                    "key (an unchanged TOASTed key column) and carries no old key"
                )
            key = plan.old_key(self, change)
        captured = CapturedRow(self.source, plan.table.name, kind, change.commit_lsn, change.index_in_txn,
                               change.commit_time, key, values, plan.layout, has_unchanged)
        if kind == "update" and change.old is not None:
            old_key = plan.old_key(self, change)
            if old_key != key:
                deleted = CapturedRow(self.source, plan.table.name, "delete", change.commit_lsn,
                                      change.index_in_txn, change.commit_time, old_key, None, plan.layout)
                captured.moved_from = old_key
                return [deleted, captured]
        return [captured]

    def diagnose_raw(self, change: RawChange) -> tuple[str, Any, list[tuple[str, str]]]:
        """Why :meth:`capture_raw` failed on ``change``: ``(table, key or None, [(column, error class)])``.

        For a dead letter: names the columns whose value could not be captured and the key as the
        sinks hold it (tokenised where the policy says so; None when the key itself failed), never a
        value. Call inside :meth:`pinned_tokeniser`, after ``capture_raw`` raised.
        """
        plan = self._row_plans[change.relation.relation_id][1]
        table = plan.table
        source_values = change.new if change.new is not None else None
        failures: list[tuple[str, str]] = []
        values: list[Any] | None = None
        if source_values is not None and not plan.missing:
            values = list(plan.project(source_values))
            for position, memo, parse, domain in plan.tokenised:
                text = values[position]
                if text is None or text is UNCHANGED_TOAST:
                    continue
                try:
                    values[position] = self._memo_token(memo, text, parse, domain)
                except Exception as exc:  # any failure: its class is the diagnosis
                    failures.append((table.captured_columns[position], type(exc).__name__))
                    values[position] = None
        key = None
        failed = {column for column, _ in failures}
        if values is not None and not failed & set(table.key):
            key = plan.key_of(values)
        elif change.old is not None:
            with contextlib.suppress(Exception):
                key = plan.old_key(self, change)
        if not failures:
            failures.append(("", "unknown"))
        return table.name, key, failures

    def diagnose_row(self, table_name: str, values: Mapping[str, Any]) -> tuple[Any, list[tuple[str, str]]]:
        """:meth:`diagnose_raw` for a parsed row (a snapshot row): ``(key or None, [(column, error class)])``."""
        table = self.tables[table_name]
        failures: list[tuple[str, str]] = []
        captured: dict[str, Any] = {}
        for column, domain in table.captured_policies:
            value = values.get(column)
            try:
                captured[column] = value if domain is None or value is None else self._value(table.columns[column], value)
            except Exception as exc:  # any failure: its class is the diagnosis
                failures.append((column, type(exc).__name__))
        key = None
        if all(column in captured for column in table.key):
            key_values = tuple(None if captured[c] is None else str(captured[c]) for c in table.key)
            key = key_values[0] if len(key_values) == 1 else key_values
        return key, failures or [("", "unknown")]

    def _row_plan(self, relation: Relation) -> _RowPlan | None:
        table = self.tables.get(relation.name) if relation.namespace == SOURCE_SCHEMA else None
        if table is None:
            return None
        index = {column.name: number for number, column in enumerate(relation.columns)}
        for column in index:
            if column not in table.columns and (table.name, column) not in self._warned:
                self._warned.add((table.name, column))
                log.warning("source %r table %s: column %s is not in the manifest; ignored",
                            self.source, table.name, column)
        missing = tuple(column for column in table.columns if column not in index)
        captured = table.captured_columns
        present = [index.get(column) for column in captured]
        if missing:
            project = _never  # inserts and updates raise before projecting
        elif len(captured) == 1:
            only = present[0]

            def project(values: tuple, only: int = only) -> tuple:
                return (values[only],)
        else:
            project = operator.itemgetter(*present)
        type_oids = [None if number is None else relation.columns[number].type_oid for number in present]
        tokenised = []
        parsers = []
        for position, (_column, domain) in enumerate(table.captured_policies):
            parse = None if type_oids[position] is None else parser_for(type_oids[position])
            if domain is None:
                parsers.append(parse)
            else:
                parsers.append(None)
                memo = self._token_memos.setdefault((domain, parse), {})
                tokenised.append((position, memo, parse, domain))
        key_positions = [captured.index(column) for column in table.key]
        if len(key_positions) == 1:
            key_of = operator.itemgetter(key_positions[0])
        else:
            key_of = operator.itemgetter(*key_positions)
        tokenised_at = {entry[0]: entry for entry in tokenised}
        key_tokenised = {
            number: tokenised_at[position] for number, position in enumerate(key_positions) if position in tokenised_at
        }
        identity = {column.name for column in relation.columns if column.is_key}
        layout = RowLayout(table.name, captured, tuple(parsers), table.key)
        return _RowPlan(
            table=table,
            layout=layout,
            missing=missing,
            project=project,
            tokenised=tuple(tokenised),
            key_of=key_of,
            key_indices=tuple(index.get(column) for column in table.key),
            key_tokenised=key_tokenised,
            identity=frozenset(identity),
        )

    def _memo_token(self, memo: dict[str, str], text: str, parse: Callable[[str], Any] | None, domain: str) -> str:
        """Tokenise ``text`` (parsed as its column's type first, as :meth:`capture` does); remember it in a block."""
        value = text if parse is None else parse(text)
        value = value if isinstance(value, str) else str(value)
        if self._token_function is not None:  # pinned to the environment's ring: prepared per domain
            token_of = self._token_functions.get(domain)
            if token_of is None:
                token_of = self._token_functions[domain] = self._token_function(domain)
            token = token_of(value)
        else:
            token = self._tokeniser()(value, domain=domain)
        if self._memo_active:
            if len(memo) >= TOKEN_MEMO_ENTRIES:
                memo.clear()
            memo[text] = token
        return token

    def _drift_error(self, table: TableManifest, missing: Iterable[str]) -> SchemaDriftError:
        return SchemaDriftError(
            f"source {self.source!r} table {table.name}: manifest column(s) {', '.join(missing)} "
            "missing from the replicated relation (dropped or renamed); nothing of this batch "
            "was applied and the slot was not advanced. Update the manifest "
            f"({self.origin}) and rerun."
        )

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
            raise self._drift_error(table, missing)
        for column in values:
            if column not in table.columns and (table.name, column) not in self._warned:
                self._warned.add((table.name, column))
                log.warning(
                    "source %r table %s: column %s is not in the manifest; ignored", self.source, table.name, column
                )


def format_position(change: RawChange) -> str:
    return f"{change.commit_lsn:X}:{change.index_in_txn}"


def _never(values: tuple) -> tuple:
    raise AssertionError("a relation that lacks manifest columns is never projected")


@dataclass(frozen=True)
class _RowPlan:
    """How :meth:`Manifest.capture_raw` turns one relation's unparsed tuples into captured rows."""

    table: TableManifest
    layout: RowLayout
    missing: tuple[str, ...]  # manifest columns the relation lacks: inserts and updates fail on them
    project: Callable[[tuple], Any]  # relation-ordered tuple -> captured columns in manifest order
    tokenised: tuple[tuple[int, dict[str, str], Any, str], ...]  # (position, memo, parser, domain)
    key_of: Callable[[Any], Any]  # captured values -> key (scalar or tuple)
    key_indices: tuple[int | None, ...]  # key columns in the relation's order (None: missing)
    key_tokenised: dict[int, tuple[int, dict[str, str], Any, str]]  # key column number -> tokenised entry
    identity: frozenset[str]  # the relation's replica identity columns

    def old_key(self, manifest: PolicyCapture, change: RawChange) -> Any:
        """The key of a delete, or of an update's old row, from the old tuple (tokenised as needed)."""
        table = self.table
        lacking = [
            column for column, number in zip(table.key, self.key_indices, strict=True)
            if number is None or (change.old_kind == "K" and column not in self.identity)
        ]
        if change.old is None or lacking:
            raise SchemaDriftError(
                f"change for {manifest.source}.{table.name} lacks key column(s) "
                f"{', '.join(lacking or table.key)}: the table's replica identity must include the manifest key"
            )
        key = []
        for number, relation_index in enumerate(self.key_indices):
            text = change.old[relation_index]
            entry = self.key_tokenised.get(number)
            if entry is not None and text is not None:
                _, memo, parse, domain = entry
                token = memo.get(text) if manifest._memo_active else None
                text = token if token is not None else manifest._memo_token(memo, text, parse, domain)
            key.append(text)
        return key[0] if len(key) == 1 else tuple(key)
