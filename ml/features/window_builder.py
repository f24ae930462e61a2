"""Set-based formulations of the point-in-time features, for builds of every charge at once.

:mod:`ml.features.sql_builder` computes a point's features with one ``LEFT JOIN LATERAL`` per
entity: an index range scan per charge and entity, which is what incremental builds and online
refreshes need (a few points) but costs eight correlated lookups per charge when every charge of
the ledger is recomputed (a rebuild, the first build). :func:`rebuild_query` renders, from the same
definitions, the same bound windows, aggregate expressions, encodings and lookup rule, one query
over every charge of ``features.charge_event`` at or below a position, in one of two formulations:

* ``join``: per entity and source, the charges hash-joined to the entity's events on
  the entity key, with the window, strictly-before and load conditions of the LATERAL as join
  conditions, grouped by charge, with the LATERAL's own aggregate expressions. Exact by
  construction, including the load rule (``known_lsn <=`` the charge's). Its cost grows with the
  square of the events per entity key over the whole ledger (every pair of one key is compared),
  not with the events in the window: fine for customers, cards and devices with tens of charges,
  not for a key with tens of thousands (a shared IP), where ``window`` stays n log n. Bounding the
  pairs by time buckets was tried; the planner then chose merge joins and was slower.
* ``window``: per entity, one sorted pass over the charges with each aggregate a ``RANGE`` frame
  from the window's length before the row to one microsecond before it (strictly before: timestamps
  have microsecond resolution; an event at exactly ``T - window`` inside, as in the LATERAL rule).
  Postgres has no ``count(DISTINCT) OVER``, so distinct counts, and the aggregates of the sparse
  other sources (disputes), go through the bounded join. A frame does not know load order: each
  pass also flags the charges whose widest frame holds an event loaded after the charge
  (``max(known_lsn)`` over the frame above the charge's own, i.e. a late-loaded row describing the
  charge's past). The query returns that flag (``later_load``); the caller computes those charges
  with the LATERAL builder, whose load rule they need. Every other charge's frames hold only
  events known to it, so its window values are the point-in-time ones.

The merchant version (valid just before the charge) is one join with the LATERAL's rule, ordered
per charge; request attributes are the LATERAL builder's fragments. The tests compare both
formulations with the LATERAL builder and a plain-Python reference row for row, with late-loaded
charges and disputes and ties on identical timestamps; bench/fraud_bench.py times all three.
Measured there (docs/benchmarks.md), neither is faster than the LATERAL builder on the generated
history at 1M charges, so :func:`ml.features.offline.build_features` keeps the LATERAL builder as
its default and offers these as ``formulation="join" | "window"``.
"""

from __future__ import annotations

from psycopg2 import sql

from ml.features.definitions import Aggregate, Definitions
from ml.features.sql_builder import (
    SOURCE_TABLES,
    aggregate_sql,
    fragments,
    lateral_groups,
    lookup_columns,
    request_columns,
    window_param,
    window_params,
)

WINDOW_FRAGMENTS = "warehouse/queries/features/window_fragments.sql"
FORMULATIONS = ("join", "window")
# The charges are both the points and the events of their own source: source 0 of every pass.
POINT_SOURCE = "charge_event"
# A LATERAL over no events gives these; an entity key that is NULL matches no event.
EMPTY = {"count": sql.SQL("0"), "sum": sql.SQL("0"), "count_distinct": sql.SQL("0"),
         "avg": sql.SQL("NULL"), "seconds_since_last": sql.SQL("NULL")}
FILTER_COLUMNS = {"declined": "outcome", "authorised": "outcome", "fraud_dispute": "is_fraud_reason"}
SOURCE_VALUE_COLUMNS = {"charge_event": {"amount_usd", "device_id", "card_fingerprint", "outcome"},
                        "dispute_event": {"amount_usd", "card_fingerprint", "is_fraud_reason"}}


def _fragment(fragment: str, **parts) -> sql.Composed:
    return sql.SQL(fragments(WINDOW_FRAGMENTS)[fragment]).format(**parts)


def _frame_name(label: str) -> sql.Identifier:
    return sql.Identifier(f"w_{label}")


def _value_columns(aggregates: list[Aggregate]) -> list[str]:
    columns = [a.column for a in aggregates if a.column and a.aggregation != "seconds_since_last"]
    columns += [FILTER_COLUMNS[a.filter] for a in aggregates if a.filter]
    return list(dict.fromkeys(columns))


def _source_events(definitions: Definitions, entity: str, source: str, index: int,
                   values: list[str]) -> sql.Composed:
    schema, table, timestamp = SOURCE_TABLES[source]
    keys = definitions.entities[entity]
    columns = [sql.SQL("e.{0} AS {0}").format(sql.Identifier(c)) for c in keys]
    for column in values:
        present = column in SOURCE_VALUE_COLUMNS.get(source, ())
        columns.append(sql.SQL("{} AS {}").format(
            sql.SQL("e.{}").format(sql.Identifier(column)) if present else sql.SQL("NULL"), sql.Identifier(column)))
    return _fragment(
        "source_events", source_index=sql.Literal(index),
        charge_id=sql.SQL("e.charge_id") if source == POINT_SOURCE else sql.SQL("NULL::bigint"),
        timestamp=sql.Identifier(timestamp), columns=sql.SQL(", ").join(columns), source=sql.Identifier(schema, table),
        not_null=sql.SQL(" AND ").join(sql.SQL("e.{} IS NOT NULL").format(sql.Identifier(c)) for c in keys))


def _window_aggregate(aggregate: Aggregate, index: int) -> sql.Composed:
    condition = _fragment("source_is", source=sql.Literal(index))
    if aggregate.filter:
        condition = sql.SQL("{} AND {}").format(condition, sql.SQL(fragments()[f"filter_{aggregate.filter}"]))
    parts = {"condition": condition, "frame": _frame_name(aggregate.window)}
    if aggregate.aggregation in {"sum", "avg"}:
        parts["column"] = sql.Identifier(aggregate.column)
    return sql.SQL("{} AS {}").format(_fragment(aggregate.aggregation, **parts), sql.Identifier(aggregate.name))


def entity_pass(definitions: Definitions, entity: str,
                groups: list[tuple[str, list[Aggregate]]]) -> tuple[sql.Composed, list[str]]:
    """One sorted pass over an entity's events: its windowed aggregates per charge and the flag
    ``later_load`` (some frame holds an event loaded after the charge). Returns (query, names)."""
    sources = [POINT_SOURCE] + [source for source, _ in groups if source != POINT_SOURCE]
    values = _value_columns([a for _, items in groups for a in items])
    events = sql.SQL("\nUNION ALL\n").join(
        _source_events(definitions, entity, source, index, values) for index, source in enumerate(sources))
    expressions, names, later, labels = [], [], [], set()
    for source, items in groups:
        index = sources.index(source)
        for aggregate in items:
            expressions.append(_window_aggregate(aggregate, index))
            names.append(aggregate.name)
            labels.add(aggregate.window)
        widest = max(items, key=lambda a: definitions.windows[a.window]).window
        later.append(_fragment("later_load", source=sql.Literal(index), frame=_frame_name(widest)))
    expressions.append(sql.SQL("{} AS later_load").format(sql.SQL(" OR ").join(later)))
    # Byte order sorts faster than the database collation and partitions the same (equal is equal).
    partition = sql.SQL(", ").join(sql.SQL('e.{}::text COLLATE "C"').format(sql.Identifier(c))
                                   for c in definitions.entities[entity])
    frames = [_fragment("frame", name=_frame_name(label), partition=partition, window=window_param(label))
              for label in sorted(labels, key=lambda label: definitions.windows[label])]
    outputs = [sql.SQL("w.{}").format(sql.Identifier(name)) for name in [*names, "later_load"]]
    query = _fragment("entity_pass", outputs=sql.SQL(", ").join(outputs), aggregates=sql.SQL(",\n    ").join(
        expressions), events=events, frames=sql.SQL(",\n       ").join(frames))
    return query, names


def bounded_join(definitions: Definitions, entity: str, source: str,
                 aggregates: list[Aggregate]) -> sql.Composed:
    """Aggregates of an entity's events per charge as a join bounded by the widest window, grouped
    by charge: the LATERAL's aggregate expressions and load rule (``known_lsn <=`` the charge's),
    for distinct counts (no ``count(DISTINCT) OVER``) and sparse sources. Charges without an event
    in the window have no row (the caller fills in the empty values)."""
    schema, table, timestamp = SOURCE_TABLES[source]
    match = sql.SQL(" AND ").join(
        sql.SQL("e.{0} = s.{0}").format(sql.Identifier(column)) for column in definitions.entities[entity])
    widest = max(aggregates, key=lambda a: definitions.windows[a.window]).window
    return _fragment("bounded_join", aggregates=sql.SQL(", ").join(aggregate_sql(a, timestamp) for a in aggregates),
                     spine=_fragment("ledger_spine"), source=sql.Identifier(schema, table), entity_match=match,
                     timestamp=sql.Identifier(timestamp), max_window=window_param(widest))


def rebuild_query(definitions: Definitions, formulation: str) -> tuple[sql.Composed, dict]:
    """Every ledger charge at or below ``%(to_lsn)s`` with its features: columns ``spine_id, as_of,
    known_lsn``, the features of :func:`rebuild_names`, then ``later_load`` (true: a frame of the
    charge holds an event loaded after it, so its window values may differ from the point-in-time
    ones and the LATERAL builder must compute it; always false for ``join``). ``formulation``:
    ``join`` (every aggregate through :func:`bounded_join`) or ``window`` (windows over the charges,
    the bounded join for distinct counts and other sources). The parameters miss ``to_lsn``, which
    the caller binds."""
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation {formulation!r} not in {FORMULATIONS}")
    params: dict = window_params(definitions)
    expressions: dict[str, sql.Composable] = {}
    joins: list[sql.Composable] = []
    later: list[sql.Composable] = []
    per_entity: dict[str, list[tuple[str, list[Aggregate]]]] = {}
    for entity, source, aggregates in lateral_groups(definitions, definitions.aggregate_entities):
        # Windows over the charges themselves; distinct counts, and aggregates of the sparse other
        # sources (disputes: a few per entity), through the bounded join, which applies the load rule.
        windowed = [a for a in aggregates if a.aggregation != "count_distinct" and source == POINT_SOURCE
                    and formulation == "window"]
        joined = [a for a in aggregates if a not in windowed]
        if windowed:
            per_entity.setdefault(entity, []).append((source, windowed))
        if joined:
            alias = sql.Identifier(f"joined_{len(joins)}")
            joins.append(_fragment("pass_join", query=bounded_join(definitions, entity, source, joined),
                                   alias=alias))
            for aggregate in joined:
                expressions[aggregate.name] = sql.SQL("{}.{}").format(alias, sql.Identifier(aggregate.name))
    for entity, groups in per_entity.items():
        alias = sql.Identifier(f"pass_{len(joins)}")
        query, names = entity_pass(definitions, entity, groups)
        joins.append(_fragment("pass_join", query=query, alias=alias))
        later.append(sql.SQL("coalesce({}.later_load, false)").format(alias))
        for name in names:
            expressions[name] = sql.SQL("{}.{}").format(alias, sql.Identifier(name))
    columns = []
    for aggregate in definitions.aggregates:
        columns.append(sql.SQL("coalesce({}, {}) AS {}").format(
            expressions[aggregate.name], EMPTY[aggregate.aggregation], sql.Identifier(aggregate.name)))
    if definitions.lookups:
        # the LATERAL's version rule as one join and one sort instead of a lookup per charge
        joins.append(_fragment("merchant_join", spine=_fragment("ledger_spine"),
                               alias=sql.Identifier("merchant_version")))
        columns += lookup_columns(definitions, params)
    columns += request_columns(definitions)
    query = _fragment("query", columns=sql.SQL(",\n       ").join(columns), spine=_fragment("ledger_spine"),
                      joins=sql.SQL("\n").join(joins),
                      later_load=sql.SQL("({})").format(sql.SQL(" OR ").join(later)) if later else sql.SQL("false"))
    return query, params


def rebuild_names(definitions: Definitions) -> list[str]:
    """The feature columns :func:`rebuild_query` returns, in order: the LATERAL builder's set."""
    names = [a.name for a in definitions.aggregates] + [lk.name for lk in definitions.lookups]
    return names + [item["name"] for item in definitions.request]
