"""Throughput of the warehouse staging sink against a raw COPY baseline.

Applies N synthetic changes (60% insert, 30% update, 10% delete) to a charge-like table of 12
columns through ``WarehouseSink.apply`` in batches, then, in the same run and database, pipes the
same number of rows ``COPY ... TO STDOUT`` -> ``COPY ... FROM STDIN`` between two plain tables.
Prints changes/s, the ratio to the baseline and the peak RSS of this process.

Needs the local stack (``python -m paydata.stack up``); works in a throwaway database that is
dropped afterwards.

    .venv/bin/python bench/cdc_sink_bench.py --changes 1000000 --batch 50000
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psycopg2 import sql

from paydata import settings
from paydata.cdc.model import STAGING_SCHEMA, CapturedChange, Position, TableSpec, staging_table
from paydata.cdc.sinks.warehouse import WarehouseSink, copy_text
from paydata.sql import SqlLibrary, load_sql
from paydata.stack import admin_connect
from paydata.stack.postgres import sql_statement

SOURCE = "oltp"
CHARGE = TableSpec(
    source=SOURCE,
    table="charge",
    key=("charge_id",),
    columns={
        "charge_id": "bigint",
        "payment_intent_id": "bigint",
        "payment_method_id": "bigint",
        "customer_id": "text",
        "amount": "bigint",
        "currency_code": "character(3)",
        "status": "text",
        "failure_code": "text",
        "captured": "boolean",
        "device_id": "text",
        "created_at": "timestamp with time zone",
        "updated_at": "timestamp with time zone",
    },
    sinks=("warehouse",),
)
STATUSES = ("pending", "succeeded", "failed", "refunded", "disputed")
CURRENCIES = ("USD", "EUR", "JPY", "GBP")
CHANGES_PER_TRANSACTION = 5


def synthetic_batches(total: int, batch_size: int, seed: int) -> Iterator[list[CapturedChange]]:
    """``total`` changes in commit order, ``batch_size`` at a time; deterministic for a seed."""
    rng = random.Random(seed)
    live: list[int] = []
    next_id = 1
    epoch = datetime(2024, 1, 1, tzinfo=UTC)
    lsn = 1_000_000
    batch: list[CapturedChange] = []
    for number in range(total):
        index = number % CHANGES_PER_TRANSACTION
        if index == 0:
            lsn += 4096
            commit_time = epoch + timedelta(seconds=number // CHANGES_PER_TRANSACTION)
        draw = rng.random()
        if draw < 0.6 or not live:
            charge_id, next_id = next_id, next_id + 1
            live.append(charge_id)
            kind = "insert"
        else:
            slot = rng.randrange(len(live))
            charge_id = live[slot]
            kind = "update" if draw < 0.9 else "delete"
            if kind == "delete":
                live[slot] = live[-1]
                live.pop()
        row = None
        if kind != "delete":
            status = STATUSES[rng.randrange(5)]
            row = {
                "charge_id": charge_id,
                "payment_intent_id": charge_id * 7,
                "payment_method_id": charge_id % 100_003,
                "customer_id": f"tok_{charge_id % 250_007:012x}",
                "amount": rng.randrange(100, 1_000_000),
                "currency_code": CURRENCIES[charge_id % 4],
                "status": status,
                "failure_code": "card_declined" if status == "failed" else None,
                "captured": status != "failed",
                "device_id": f"dev-{charge_id % 50_021}",
                "created_at": commit_time,
                "updated_at": commit_time,
            }
        batch.append(
            CapturedChange(SOURCE, "charge", kind, Position(lsn, index), commit_time, {"charge_id": charge_id}, row)
        )
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def baseline_text(batch: list[CapturedChange]) -> str:
    """COPY text of one full charge row per synthetic change (a delete as its key and NULLs)."""
    columns = tuple(CHARGE.columns)
    lines = []
    for change in batch:
        row = change.row if change.row is not None else {column: None for column in columns} | change.key
        lines.append("\t".join(copy_text(row[column]) for column in columns) + "\n")
    return "".join(lines)


BENCH_SQL = SqlLibrary(Path(__file__).resolve().parent / "sql")


def bench_statement(name: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(BENCH_SQL.load(f"cdc/sink_{name}.sql").strip()).format(**parts)


def run_baseline(connect, total: int, batch_size: int, seed: int) -> float:
    """Rows/s of COPY TO STDOUT piped into COPY FROM STDIN between two plain tables."""
    source_conn, target_conn = connect(), connect()
    definitions = sql.SQL(", ").join(
        sql.SQL(load_sql("warehouse/queries/staging/column_definition.sql").strip()).format(
            column=sql.Identifier(column), type=sql.SQL(type_name)
        )
        for column, type_name in CHARGE.columns.items()
    )
    source, target = sql.Identifier("bench_copy_source"), sql.Identifier("bench_copy_target")
    with source_conn.cursor() as cursor:
        for table in (source, target):
            cursor.execute(bench_statement("create_plain_table", table=table, columns=definitions))
        copy_in = bench_statement("copy_from", table=source).as_string(source_conn)
        for batch in synthetic_batches(total, batch_size, seed):
            cursor.copy_expert(copy_in, io.StringIO(baseline_text(batch)))
    source_conn.commit()
    target_conn.commit()
    copy_out = bench_statement("copy_to", table=source).as_string(source_conn)
    copy_in = bench_statement("copy_from", table=target).as_string(target_conn)
    read_end, write_end = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_end, "wb") as writer, source_conn.cursor() as cursor:
                cursor.copy_expert(copy_out, writer)
        except BaseException as exc:  # surfaced by the main thread after the join
            errors.append(exc)

    started = time.perf_counter()
    producer = threading.Thread(target=produce)
    producer.start()
    with os.fdopen(read_end, "rb") as reader, target_conn.cursor() as cursor:
        cursor.copy_expert(copy_in, reader)
    target_conn.commit()
    producer.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    source_conn.commit()
    source_conn.close()
    target_conn.close()
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=20240501)
    args = parser.parse_args()

    database = f"bench_cdc_{uuid.uuid4().hex[:10]}"
    admin = admin_connect("postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql_statement("create_database", database=database,
                                     owner=settings.DATABASE_OWNERS["warehouse"]))
    try:
        def connect():
            return settings.pg_connect(settings.WAREHOUSE_CONN_ID, dbname=database)

        sink = WarehouseSink(connect)
        sink.prepare([CHARGE])
        apply_seconds = 0.0
        generate_started = time.perf_counter()
        batches = 0
        for batch in synthetic_batches(args.changes, args.batch, args.seed):
            started = time.perf_counter()
            sink.apply(SOURCE, batch)
            apply_seconds += time.perf_counter() - started
            batches += 1
        wall_seconds = time.perf_counter() - generate_started
        peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with connect() as check, check.cursor() as cursor:
            cursor.execute(bench_statement("mirror_counts", schema=sql.Identifier(STAGING_SCHEMA),
                                           table=sql.Identifier(staging_table(SOURCE, "charge"))))
            rows, tombstones = cursor.fetchone()
        sink.close()
        sink_rate = args.changes / apply_seconds
        baseline_rate = run_baseline(connect, args.changes, args.batch, args.seed)
        print(f"changes            {args.changes:,} in {batches} batches of {args.batch:,}")
        print(f"sink apply         {apply_seconds:.1f} s  -> {sink_rate:,.0f} changes/s "
              f"(wall incl. generating changes {wall_seconds:.1f} s)")
        print(f"mirror rows        {rows:,} ({tombstones:,} tombstones)")
        print(f"baseline COPY|COPY {baseline_rate:,.0f} rows/s")
        print(f"ratio              {sink_rate / baseline_rate:.2f}")
        print(f"peak RSS (sink)    {peak_rss_mib:,.0f} MiB")
    finally:
        with admin.cursor() as cursor:
            cursor.execute(sql_statement("drop_database_force", database=database))
        admin.close()


if __name__ == "__main__":
    main()
