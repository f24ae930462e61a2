"""Refusing a batch that does not fit the prepared table plans, before the database is touched.

Typed changes (:func:`ordered_and_validated`) are checked change by change against their table's
plan and put in position order; text rows (:func:`validated_rows`) arrive in order and are checked
per row more cheaply (a row layout is compared with its plan once per batch).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from itertools import islice

from paydata.cdc.model import CapturedChange, CapturedRow, Position
from paydata.cdc.sinks.warehouse.copytext import WarehouseSinkError
from paydata.cdc.sinks.warehouse.plan import _ROW_KINDS, KINDS, _position_of, _TablePlan

Plans = Mapping[tuple[str, str], _TablePlan]


def plan_for(plans: Plans, source: str, table: str) -> _TablePlan:
    plan = plans.get((source, table))
    if plan is None:
        raise WarehouseSinkError(
            f"no warehouse spec for {source}.{table}: the table is not captured for the "
            "warehouse, or prepare() was not called with its spec"
        )
    return plan


def ordered_and_validated(plans: Plans, source: str, changes: list[CapturedChange]) -> list[CapturedChange]:
    """``changes`` in position order; raise :class:`WarehouseSinkError` unless each fits its plan."""
    plans_by_table: dict[str, _TablePlan] = {}
    for change in changes:
        if not isinstance(change, CapturedChange):
            raise WarehouseSinkError(f"expected CapturedChange, got {type(change).__name__}")
        if change.source != source:
            raise WarehouseSinkError(
                f"change for source {change.source!r} at {change.position} in a batch for {source!r}"
            )
        if change.kind not in KINDS:
            raise WarehouseSinkError(f"unknown change kind {change.kind!r} at {change.position}")
        if not isinstance(change.position, Position):
            raise WarehouseSinkError(f"change position must be a Position, got {change.position!r}")
        plan = plans_by_table.get(change.table)
        if plan is None:
            plan = plans_by_table[change.table] = plan_for(plans, source, change.table)
        plan.validate(change)
    positions = [(position.commit_lsn, position.index_in_txn) for position in map(_position_of, changes)]
    if not all(map(operator.lt, positions, islice(positions, 1, None))):
        order = sorted(range(len(changes)), key=positions.__getitem__)
        changes_by_index = changes
        changes = [changes[i] for i in order]
        for previous, following in zip(order, order[1:], strict=False):
            first, second = changes_by_index[previous], changes_by_index[following]
            if positions[previous] == positions[following] and not (
                first.kind == second.kind == "snapshot"
                # an update that moves its key: a delete of the old key, then the update, at one position
                or (first.kind == "delete" and second.kind == "update" and first.key != second.key)
            ):
                raise WarehouseSinkError(f"two changes at position {Position(*positions[previous])} in one batch")
    return changes


def validated_rows(plans: Plans, source: str, rows: list[CapturedRow]) -> list[CapturedRow]:
    """Raise :class:`WarehouseSinkError` unless every row fits a prepared plan, in position order.

    Checked per row (cheaply: a layout is compared with its plan once per batch): type, source,
    kind, table, order, a non-NULL key, and the number of values.
    """
    plans_by_layout: dict[int, tuple[_TablePlan, int]] = {}
    previous = (-1, -(2**63))
    for row in rows:
        if type(row) is not CapturedRow:
            raise WarehouseSinkError(f"expected CapturedRow, got {type(row).__name__}")
        position = (row.commit_lsn, row.index_in_txn)
        kind = row.kind
        # An update that moves a key yields a delete and an update at one position (different keys).
        if position < previous or (position == previous and kind != "update"):
            raise WarehouseSinkError(
                f"rows must be in position order without repeats: {Position(*position)} after {Position(*previous)}"
            )
        previous = position
        if row.source != source:
            raise WarehouseSinkError(f"row for source {row.source!r} at {row.position} in a batch for {source!r}")
        if kind not in _ROW_KINDS:
            raise WarehouseSinkError(f"unknown change kind {kind!r} at {row.position}")
        layout = row.layout
        checked = plans_by_layout.get(id(layout))
        if checked is None:
            plan = plan_for(plans, source, row.table)
            if layout.columns != plan.columns or layout.key != plan.key or layout.table != row.table:
                raise WarehouseSinkError(
                    f"{plan.label}: rows carry columns {list(layout.columns)} keyed by {list(layout.key)}, "
                    f"the spec has {list(plan.columns)} keyed by {list(plan.key)}"
                )
            checked = plans_by_layout[id(layout)] = (plan, len(plan.key))
        plan, key_width = checked
        if row.table != plan.spec.table:
            raise WarehouseSinkError(f"row for table {row.table!r} at {row.position} carries the layout of {plan.label}")
        if kind == "truncate":
            continue
        key = row.key
        if key is None or (key_width > 1 and (type(key) is not tuple or len(key) != key_width or None in key)):
            raise WarehouseSinkError(f"{plan.label} {kind} at {row.position} has key {key!r}; expected non-NULL "
                                     f"values for {list(plan.key)}")
        if kind != "delete" and (row.values is None or len(row.values) != len(plan.columns)):
            raise WarehouseSinkError(
                f"{plan.label} {kind} at {row.position} carries "
                f"{'no values' if row.values is None else f'{len(row.values)} values'} for {len(plan.columns)} columns"
            )
    return rows


def changes_after(changes: list[CapturedChange], stored: Position) -> list[CapturedChange]:
    """The ordered ``changes`` still to apply above the ``stored`` offset.

    Snapshot rows share one position, so a snapshot loaded in several batches repeats the stored
    offset; they are re-applied and the per-row guard makes a repeat a no-op.
    """
    if changes and changes[0].position > stored:
        return changes  # sorted, so every change is above the stored offset
    return [
        change for change in changes
        if change.position > stored or (change.kind == "snapshot" and change.position == stored)
    ]


def rows_after(rows: list[CapturedRow], stored: Position) -> list[CapturedRow]:
    """The ordered ``rows`` still to apply above the ``stored`` offset."""
    if rows and (rows[0].commit_lsn, rows[0].index_in_txn) > (stored.commit_lsn, stored.index_in_txn):
        return rows  # in order, so every row is above the stored offset
    return [row for row in rows if row.position > stored]
