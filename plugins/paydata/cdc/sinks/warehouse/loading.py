"""Loading encoded chunks into the staging tables: COPY, fill from stored rows, history, mirror upsert.

:func:`load_steps` runs the steps of one batch in order on the batch's cursor. One worker thread
loads a chunk while the calling thread encodes the next; the worker receives only data (the
cursor and an :class:`EncodedChunk`) and runs :func:`load_chunk`, nothing else.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from psycopg2 import sql

from paydata.cdc.sinks.warehouse.plan import SQL_FOLDER, _identifier_list, _statement, _TablePlan
from paydata.cdc.sinks.warehouse.tables import SCHEMA
from paydata.cdc.sinks.warehouse.versions import FILL_BY_KEY, FILL_BY_OLD_KEY, EncodedChunk, TruncateStep
from paydata.sql import load_sql

COPY_CHUNK_CHARS = 1 << 20  # psycopg2 reads the COPY text in pieces of this size (default 8 KiB)


def load_steps(cursor: Any, steps: Iterable[EncodedChunk | TruncateStep]) -> None:
    """Run ``steps`` in order, loading each chunk on a worker thread while the next is encoded.

    Only the worker uses the connection while a chunk is loading; this thread waits for it before
    issuing any statement itself, and leaving the ``with`` block (also on an error) waits for it
    too, so a rollback never races a running statement.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse-sink-load") as loader:
        loading: Future[None] | None = None
        for step in steps:  # the next chunk is encoded here, while the previous one loads
            if loading is not None:
                loading.result()
                loading = None
            if isinstance(step, TruncateStep):
                truncate(cursor, step.plan, step.change)
            else:
                loading = loader.submit(load_chunk, cursor, step)
        if loading is not None:
            loading.result()


def truncate(cursor: Any, plan: _TablePlan, change: Any) -> None:
    """Tombstone every live row of the plan's mirror (and record it in its history) at ``change``'s position."""
    parts: dict[str, sql.Composable] = {"schema": SCHEMA, "table": sql.Identifier(plan.mirror)}
    name = "truncate_mirror"
    if plan.history is not None:
        name = "truncate_mirror_with_history"
        parts.update(history=sql.Identifier(plan.history), columns=_identifier_list(plan.columns))
    cursor.execute(
        _statement(name, **parts),
        {
            "commit_lsn": change.position.commit_lsn,
            "index_in_txn": change.position.index_in_txn,
            "commit_time": change.commit_time,
        },
    )


def load_chunk(cursor: Any, chunk: EncodedChunk) -> None:
    """COPY one encoded chunk into a temporary table, fill it, append history, upsert the mirror.

    Chunks of one segment are loaded in position order. A key's versions in a later chunk are
    newer, so the per-row guard lets them replace the earlier chunk's; columns still missing
    after merging within the batch are ones no change of the batch carried, which an earlier
    chunk only ever copied from the stored row, so filling from the mirror gives the same value.
    """
    plan = chunk.plan
    batch_id = sql.Identifier(chunk.name)
    table_id = sql.Identifier(plan.mirror)
    columns = _identifier_list(plan.columns)
    cursor.execute(_statement("create_batch", batch=batch_id, columns=plan.column_definitions()))
    cursor.copy_expert(
        _statement("copy_batch", batch=batch_id, columns=columns).as_string(cursor.connection),
        io.StringIO(chunk.text),
        COPY_CHUNK_CHARS,
    )
    if chunk.needs_stored_values and plan.non_key:
        _fill_from_stored_rows(cursor, plan, batch_id, table_id, chunk.needs_stored_values)
    if plan.history is not None:
        cursor.execute(
            _statement(
                "insert_history", schema=SCHEMA, history=sql.Identifier(plan.history), columns=columns, batch=batch_id
            )
        )
    assignments = sql.SQL(",\n    ").join(
        _statement("upsert_mirror_column", column=sql.Identifier(column)) for column in plan.non_key
    )
    if not plan.non_key:
        assignments = _statement("upsert_mirror_column", column=sql.Identifier(plan.key[0]))
    cursor.execute(
        _statement(
            "upsert_mirror" if plan.history is not None else "upsert_mirror_unique",
            schema=SCHEMA,
            table=table_id,
            columns=columns,
            key=_identifier_list(plan.key),
            batch=batch_id,
            assignments=assignments,
        )
    )


def _fill_from_stored_rows(
    cursor: Any, plan: _TablePlan, batch_id: sql.Identifier, table_id: sql.Identifier, needs_stored_values: int
) -> None:
    """Set the columns no change of the batch carried from the row stored under the (old) key."""
    cursor.execute(load_sql(f"{SQL_FOLDER}/fill_plan_settings.sql"))
    assignments = sql.SQL(",\n    ").join(
        _statement("fill_unchanged_column", column=sql.Identifier(column), column_name=sql.Literal(column))
        for column in plan.non_key
    )
    parts = {"batch": batch_id, "schema": SCHEMA, "table": table_id, "assignments": assignments}
    if needs_stored_values & FILL_BY_KEY:
        key_match = _statement("key_match", left=_identifier_list(plan.key, "b"), right=_identifier_list(plan.key, "m"))
        cursor.execute(_statement("fill_unchanged", key_match=key_match, **parts))
    if needs_stored_values & FILL_BY_OLD_KEY:
        old_key_match = sql.SQL("\n  AND ").join(
            _statement("old_key_match_column", column=sql.Identifier(column),
                       index=sql.Literal(number), type=sql.SQL(plan.types[column]))
            for number, column in enumerate(plan.key, start=1)
        )
        cursor.execute(_statement("fill_unchanged_from_old_key", old_key_match=old_key_match, **parts))
    cursor.execute(load_sql(f"{SQL_FOLDER}/reset_plan_settings.sql"))
