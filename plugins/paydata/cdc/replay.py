"""Replay of dead letters: re-apply each from the source row as it is now, once the cause is fixed.

For every unresolved dead letter of a source, in position order (:mod:`paydata.cdc.deadletters`):

1. the row is read from the source by its key (a key column the manifest tokenises cannot be looked
   up by its token: the table's key column is read and tokenised until the token matches, a scan
   of that column);
2. the policy is applied to it as to a snapshot row; if it still fails, the letter stays pending
   with the new reason;
3. the row, or a delete when the source no longer has it, goes to each sink of the table *at the
   dead letter's own position*, below the sinks' offsets, which stay where they are. A sink that
   already holds a newer version of the key keeps it (the warehouse reports it and writes nothing,
   so its history never gets an old position with newer values; Mongo's guards skip it);
4. the letter is resolved with what happened (``replayed``, ``superseded``, ``deleted in source``).

Replay runs while no capture run of the source applies (it takes the sinks' offset locks one
change at a time; a capture run waits for it, or it for the run).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from psycopg2 import sql

from paydata.cdc import capture
from paydata.cdc.deadletters import DeadLetter, parse_key_text
from paydata.cdc.manifest import SOURCE_SCHEMA
from paydata.cdc.model import CapturedChange, Position
from paydata.cdc.types import parser_for
from paydata.sql import load_sql

log = logging.getLogger(__name__)


def replay_dead_letters(engine) -> dict[str, Any]:
    """Replay the source's pending dead letters through ``engine``'s sinks; return counts per outcome."""
    manifest = engine.manifest
    conn = engine._connect()
    outcomes: dict[str, int] = {"replayed": 0, "superseded": 0, "deleted in source": 0, "still failing": 0}
    try:
        catalog = capture.read_catalog(conn, list(manifest.tables))
        engine._prepare_sinks(manifest.table_specs(catalog))
        with manifest.pinned_tokeniser():
            for letter in engine.dead_letters.pending(engine.source):
                outcome = _replay_one(engine, conn, catalog, letter)
                outcomes[outcome] += 1
    finally:
        conn.close()
        engine.dead_letters.close()
    log.info("replay of %s dead letters: %s", engine.source, outcomes)
    return {"source": engine.source, **outcomes}


def _replay_one(engine, conn, catalog, letter: DeadLetter) -> str:
    manifest = engine.manifest
    table = manifest.tables.get(letter.table)
    key_values = parse_key_text(letter.key_text, table.key) if table is not None else None
    if table is None or key_values is None:
        engine.dead_letters.update_reason(letter, letter.columns, f"{letter.reason}; not replayable: key unknown")
        return "still failing"
    position = Position(letter.commit_lsn, letter.index_in_txn)
    commit_time = letter.commit_time or datetime.now(UTC)
    row = _source_row(manifest, conn, catalog, table, key_values)
    if row is None:
        key = {
            column: _parse(catalog[table.name][column], value) if table.columns[column].action == "keep" else value
            for column, value in zip(table.key, key_values, strict=True)
        }
        change = CapturedChange(engine.source, table.name, "delete", position, commit_time, key, None)
        outcome = "deleted in source"
    else:
        try:
            change = manifest.capture_row(table.name, row, kind="update", position=position, commit_time=commit_time)
        except ValueError as exc:
            _, failures = manifest.diagnose_row(table.name, row)
            columns = tuple(column for column, _ in failures if column)
            engine.dead_letters.update_reason(letter, columns, ", ".join(sorted(
                {error for _, error in failures} | {type(exc).__name__})))
            return "still failing"
        outcome = "replayed"
    applied_anywhere = False
    for sink in engine.sinks:
        if sink.name in table.sinks:
            applied_anywhere = sink.replay(engine.source, change) or applied_anywhere
    if not applied_anywhere:
        outcome = "superseded"
    engine.dead_letters.resolve(letter, outcome)
    return outcome


def _parse(column, text: str | None) -> Any:
    parse = parser_for(column.type_oid)
    return text if text is None or parse is None else parse(text)


def _source_row(manifest, conn, catalog, table, key_values: tuple[str, ...]) -> dict[str, Any] | None:
    """The captured columns of the source row with this key (as the sinks hold it: tokens where the
    policy tokenises); dropped columns are not read, as in a snapshot."""
    captured = table.captured_columns
    names = sql.SQL(", ").join(sql.Identifier(column) for column in captured)
    relation = sql.Identifier(SOURCE_SCHEMA, table.name)
    tokenised = [column for column in table.key if table.columns[column].action == "tokenise"]
    with conn.cursor() as cursor:
        if not tokenised:
            condition = sql.SQL(" AND ").join(
                sql.SQL(load_sql("sources/queries/cdc/key_column_equals_text.sql").strip()).format(
                    column=sql.Identifier(column), type=sql.SQL(catalog[table.name][column].sql_type))
                for column in table.key
            )
            cursor.execute(sql.SQL(load_sql("sources/queries/cdc/select_row_where.sql").strip()).format(
                columns=names, table=relation, condition=condition), list(key_values))
            found = cursor.fetchone()
        else:
            # A token cannot be looked up: read the table and tokenise its key until one matches.
            found = None
            cursor.execute(sql.SQL(load_sql("sources/queries/cdc/select_rows.sql").strip()).format(columns=names, table=relation))
            for candidate in cursor:
                values = dict(zip(captured, candidate, strict=True))
                try:
                    key = tuple(
                        None if values[column] is None else str(manifest._value(table.columns[column], values[column]))
                        for column in table.key
                    )
                except ValueError:  # another row whose key cannot be tokenised
                    continue
                if key == key_values:
                    found = candidate
                    break
    conn.commit()
    return None if found is None else dict(zip(captured, found, strict=True))
