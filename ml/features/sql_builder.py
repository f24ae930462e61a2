"""One SQL builder for every point-in-time feature query, offline and online.

The query reads a spine (temp table ``feature_spine``: ``spine_id``, ``as_of``, ``known_lsn``, entity
keys, request attributes) and returns one row per spine row with the requested features. Each
entity's aggregates are one ``LEFT JOIN LATERAL`` over its source (an index range scan of the
entity's events in the largest window) that keeps only events with

* event time ``< as_of`` (strictly before: an event at the same instant is not visible; one at
  exactly ``as_of - window`` is inside the window), and
* ``known_lsn <=`` the spine's ``known_lsn`` (loaded no later than the point itself: a row loaded
  later that describes the past is not used).

Offline, the spine is the charges (``as_of`` = their ``created_at``); online, one row per entity
at the data's current time. The same builder, the same fragments (``include/sql/warehouse/queries/features/
fragments.sql``), the same bound parameters: that is what keeps training and serving equal.
Identifiers come only from checked definitions; windows and encodings are bound parameters.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from functools import cache

from psycopg2 import sql

from ml.features.definitions import Aggregate, Definitions
from paydata.sql import load_sql

SOURCE_TABLES = {"charge_event": ("features", "charge_event", "created_at"),
                 "dispute_event": ("features", "dispute_event", "opened_at")}


@cache
def fragments(library: str = "warehouse/queries/features/fragments.sql") -> dict[str, str]:
    """The named fragments (``-- fragment: <name>`` sections) of a SQL file of the library."""
    found: dict[str, str] = {}
    name = None
    for line in load_sql(library).splitlines():
        match = re.match(r"^-- fragment: ([a-z_]+)$", line)
        if match:
            name = match.group(1)
            found[name] = ""
        elif name is not None:
            found[name] += line + "\n"
    return {key: value.strip() for key, value in found.items()}


def _fragment(name: str, **parts) -> sql.Composed:
    return sql.SQL(fragments()[name]).format(**parts)


def window_params(definitions: Definitions) -> dict[str, object]:
    """The bound windows: ``window_<label>`` an interval of microseconds only (no day part, so
    ``as_of - window`` is the same fixed length in every time zone, as the timedelta of the
    definitions and the scorer's check), ``window_us_<label>`` the same length as a number."""
    params: dict[str, object] = {}
    for label, length in definitions.windows.items():
        microseconds = length // dt.timedelta(microseconds=1)
        params[f"window_{label}"] = f"{microseconds} microseconds"
        params[f"window_us_{label}"] = microseconds
    return params


def window_param(label: str) -> sql.Composable:
    """The bound interval of a declared window (parameter ``window_<label>``)."""
    return sql.SQL("{}::interval").format(sql.Placeholder(f"window_{label}"))


def aggregate_sql(aggregate: Aggregate, timestamp: str) -> sql.Composable:
    """One aggregate over events ``e`` of a point ``s`` (its window a ``FILTER``), named as the feature."""
    condition = _fragment("in_window", timestamp=sql.Identifier(timestamp),
                          window=window_param(aggregate.window))
    if aggregate.filter:
        condition = sql.SQL("{} AND {}").format(condition, sql.SQL(fragments()[f"filter_{aggregate.filter}"]))
    parts = {"condition": condition}
    if aggregate.aggregation == "seconds_since_last":
        parts["timestamp"] = sql.Identifier(timestamp)
    elif aggregate.aggregation != "count":
        parts["column"] = sql.Identifier(aggregate.column)
    return sql.SQL("{} AS {}").format(_fragment(aggregate.aggregation, **parts), sql.Identifier(aggregate.name))


def lateral_groups(definitions: Definitions, entities: tuple[str, ...]) -> list[tuple[str, str, list[Aggregate]]]:
    """(entity, source, aggregates) per LATERAL join, in definition order."""
    groups: dict[tuple[str, str], list[Aggregate]] = {}
    for aggregate in definitions.aggregates:
        if aggregate.entity in entities:
            groups.setdefault((aggregate.entity, aggregate.source), []).append(aggregate)
    return [(entity, source, items) for (entity, source), items in groups.items()]


def feature_query(definitions: Definitions, *, entities: tuple[str, ...] | None = None,
                  lookups: bool = True, request: bool = True) -> tuple[sql.Composed, dict]:
    """The query over ``feature_spine`` and its parameters.

    ``entities`` limits the aggregates (default: all); ``lookups`` adds the merchant SCD2 lookups;
    ``request`` adds the charge's own attributes (offline only: online points are entities).
    Returned columns: ``spine_id`` then the features in definition order.
    """
    entities = definitions.aggregate_entities if entities is None else entities
    params: dict = window_params(definitions)
    columns: list[sql.Composable] = []
    joins: list[sql.Composable] = []
    for index, (entity, source, aggregates) in enumerate(lateral_groups(definitions, entities)):
        schema, table, timestamp = SOURCE_TABLES[source]
        alias = f"agg_{index}"
        match = sql.SQL(" AND ").join(
            sql.SQL("e.{0} = s.{0}").format(sql.Identifier(column)) for column in definitions.entities[entity])
        widest = max(aggregates, key=lambda a: definitions.windows[a.window]).window
        joins.append(_fragment(
            "entity_lateral", aggregates=sql.SQL(", ").join(aggregate_sql(a, timestamp) for a in aggregates),
            source=sql.Identifier(schema, table), entity_match=match, timestamp=sql.Identifier(timestamp),
            max_window=window_param(widest), alias=sql.Identifier(alias)))
        columns += [sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(a.name)) for a in aggregates]
    if lookups and definitions.lookups:
        joins.append(_fragment("merchant_lateral", alias=sql.Identifier("merchant_version")))
        columns += lookup_columns(definitions, params)
    if request:
        columns += request_columns(definitions)
    query = _fragment("query", columns=sql.SQL(", ").join(columns) if columns else sql.SQL("NULL"),
                      joins=sql.SQL("\n").join(joins))
    return query, params


def lookup_columns(definitions: Definitions, params: dict) -> list[sql.Composable]:
    """The encoded merchant lookups over the ``merchant_lateral`` join (encodings added to ``params``)."""
    columns = []
    for lookup in definitions.lookups:
        params[f"encoding_{lookup.name}"] = json.dumps(lookup.encoding)
        default = sql.SQL("NULL") if lookup.default is None else sql.Literal(float(lookup.default))
        columns.append(sql.SQL("{} AS {}").format(
            _fragment("lookup_encoded", encoding=sql.Placeholder(f"encoding_{lookup.name}"),
                      alias=sql.Identifier("merchant_version"), column=sql.Identifier(lookup.column),
                      default=default),
            sql.Identifier(lookup.name)))
    return columns


def request_columns(definitions: Definitions) -> list[sql.Composable]:
    """The charge's own attributes, from the point ``s``."""
    columns = []
    for item in definitions.request:
        if item.get("transform") == "hour_utc":
            expression = sql.SQL(fragments()["request_hour_utc"])
        else:
            expression = sql.SQL("s.{}").format(sql.Identifier(item["column"]))
        columns.append(sql.SQL("{} AS {}").format(expression, sql.Identifier(item["name"])))
    return columns


def feature_names(definitions: Definitions, *, entities: tuple[str, ...] | None = None,
                  lookups: bool = True, request: bool = True) -> list[str]:
    """Column names :func:`feature_query` returns after ``spine_id``, in order."""
    entities = definitions.aggregate_entities if entities is None else entities
    names = [a.name for _, _, group in lateral_groups(definitions, entities) for a in group]
    if lookups:
        names += [lookup.name for lookup in definitions.lookups]
    if request:
        names += [item["name"] for item in definitions.request]
    return names
