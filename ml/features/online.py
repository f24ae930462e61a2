"""The online store: one Mongo document per entity with its latest feature values.

``refresh_online`` computes, for each entity whose events were loaded since the last refresh
(or every entity with ``full=True``), the same aggregates the offline table holds, with the same
SQL (:func:`ml.features.sql_builder.feature_query`) over a spine of entity keys at ``as_of`` (just
after the latest OLTP commit the marts were built from: a time from the data, not the clock) and
the offline store's position. Documents (collection ``features`` by default):

``{_id: "<entity>:<key>", entity, key: {column: value}, values: {feature: value},
   expires_at: {feature: as_of + ttl}, as_of, known_lsn, computed_at, definitions: {name, hash}}``

A value past its ``expires_at`` describes a window that has moved on: the scorer treats it as
unknown. Merchant lookups are refreshed for every merchant (a few hundred rows). The refresh
position is kept in ``feature_offsets`` (``_id`` = definitions name) and written after the
documents, so a crash repeats the refresh rather than skipping it. Cost is proportional to the
changed entities: each is one index range scan per source.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg2 import sql

from ml.features.definitions import Definitions, definitions_hash
from ml.features.offline import OFFLINE_STORE, store_positions
from ml.features.sql_builder import SOURCE_TABLES, feature_names, feature_query, lateral_groups
from paydata.sql import load_sql
from paydata.warehouse.labels import default_as_of

OFFSETS_COLLECTION = "feature_offsets"
WRITE_CHUNK = 1000
# Online values describe the state after every loaded event: a charge scored next comes after the
# latest commit, so the default as_of is one microsecond past it (windows are strictly before as_of).
JUST_AFTER = dt.timedelta(microseconds=1)


def entity_document_id(entity: str, key: tuple) -> str:
    return f"{entity}:" + "|".join(str(part) for part in key)


def _changed_keys(definitions: Definitions, entity: str) -> sql.Composable:
    columns = definitions.entities[entity]
    sources = sorted({source for e, source, _ in lateral_groups(definitions, (entity,)) if e == entity})
    parts = []
    for source in sources:
        schema, table, _ = SOURCE_TABLES[source]
        parts.append(sql.SQL(load_sql("warehouse/queries/features/online_changed_keys.sql")).format(
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)), source=sql.Identifier(schema, table),
            not_null=sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in columns)))
    return sql.SQL(" UNION ").join(parts)


def refresh_online(conn, definitions: Definitions, database, *, as_of: dt.datetime | None = None,
                   known_lsn: int | None = None, full: bool = False,
                   now: dt.datetime | None = None) -> dict[str, Any]:
    """Recompute the online documents of changed entities (see the module doc); returns counts.

    ``as_of`` / ``known_lsn`` default to the marts' latest OLTP commit time and the offline store's
    position; passing both computes the documents as they were at an earlier point (the skew test
    compares those with the offline rows). Raises LookupError before the offline store is built.
    """
    from pymongo import ReplaceOne

    offsets = database[OFFSETS_COLLECTION]
    stored = offsets.find_one({"_id": definitions.name}) or {}
    with conn.cursor() as cursor:
        positions = store_positions(cursor, OFFLINE_STORE)
    conn.rollback()
    if "oltp" not in positions:
        raise LookupError("the offline feature store was never built: run build_features first")
    to_lsn = positions["oltp"]
    known_lsn = to_lsn if known_lsn is None else known_lsn
    if as_of is None:
        latest = default_as_of(conn)
        if latest is None:
            raise LookupError("marts.fct_charge was never built: no time to compute online features at")
        as_of = latest + JUST_AFTER
    from_lsn = -1 if full else int(stored.get("lsn", -1))
    now = now or dt.datetime.now(dt.UTC)
    meta = {"name": definitions.name, "hash": definitions_hash(definitions)}
    ttl = {a.name: a.ttl for a in definitions.aggregates}
    written: dict[str, int] = {}
    operations = []
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/features/spine_create.sql"))
            plans = [(entity, True) for entity in definitions.aggregate_entities]
            if definitions.lookups:
                plans.append(("merchant", False))
            for entity, aggregates in plans:
                cursor.execute(load_sql("warehouse/queries/features/spine_truncate.sql"))
                columns = definitions.entities[entity]
                if aggregates:
                    cursor.execute(sql.SQL(load_sql("warehouse/queries/features/online_spine_keys.sql")).format(
                        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                        key_order=sql.SQL(", ").join(map(sql.Identifier, columns)),
                        changed=_changed_keys(definitions, entity)),
                        {"as_of": as_of, "known_lsn": known_lsn, "from_lsn": from_lsn, "to_lsn": to_lsn})
                    query, params = feature_query(definitions, entities=(entity,), lookups=False, request=False)
                    names = feature_names(definitions, entities=(entity,), lookups=False, request=False)
                else:
                    cursor.execute(load_sql("warehouse/queries/features/online_spine_merchants.sql"),
                                   {"as_of": as_of, "known_lsn": known_lsn})
                    query, params = feature_query(definitions, entities=(), lookups=True, request=False)
                    names = feature_names(definitions, entities=(), lookups=True, request=False)
                cursor.execute(sql.SQL(load_sql("warehouse/queries/features/spine_select.sql")).format(
                    columns=sql.SQL(", ").join(map(sql.Identifier, columns))))
                keys = {row[0]: tuple(row[1:]) for row in cursor.fetchall()}
                cursor.execute(query, params)
                kind = entity if aggregates else "merchant_lookup"
                for spine_id, *values in cursor.fetchall():
                    key = keys[spine_id]
                    document_id = entity_document_id(kind, key)
                    operations.append(ReplaceOne({"_id": document_id}, {
                        "_id": document_id, "entity": kind, "key": dict(zip(columns, key, strict=True)),
                        "values": {n: (None if v is None else float(v)) for n, v in zip(names, values, strict=True)},
                        "expires_at": {n: as_of + ttl[n] for n in names if n in ttl},
                        "as_of": as_of, "known_lsn": known_lsn, "computed_at": now, "definitions": meta,
                    }, upsert=True))
                    written[kind] = written.get(kind, 0) + 1
    finally:
        conn.rollback()
    collection = database[definitions.online_collection]
    for start in range(0, len(operations), WRITE_CHUNK):
        collection.bulk_write(operations[start:start + WRITE_CHUNK], ordered=False)
    offsets.replace_one({"_id": definitions.name}, {"_id": definitions.name, "lsn": to_lsn, "as_of": as_of,
                                                   "refreshed_at": now, "definitions_hash": meta["hash"]},
                        upsert=True)
    return {"from_lsn": from_lsn, "to_lsn": to_lsn, "as_of": as_of.isoformat(), "documents": len(operations),
            "per_entity": written}
