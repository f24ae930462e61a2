"""Seeding throughput: payments/s of the generator's COPY pipeline vs a raw COPY of the same rows.

Run with ``.venv/bin/python -m bench.seed_bench --payments N``. Each run loads N payments (with
customers, cards, refunds, disputes, payouts and ledger rows) into a fresh, migrated OLTP database
through :func:`paydata.generator.loader.load_traffic`: generation, encryption, COPY, triggers,
constraints and indexes included. The baseline COPYs the same generated chunks into plain tables
(``LIKE`` the real ones: no constraints, indexes or triggers) in the same database, timing only the
COPY. Prints a markdown table and updates the "Seeding throughput" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import re
import statistics
import time
from pathlib import Path

from paydata.generator import TrafficConfig
from paydata.generator.copy import copy_into, statement
from paydata.generator.encode import encode_chunk
from paydata.generator.loader import load_traffic
from paydata.generator.reference import load_merchant_profiles, seed_reference
from paydata.generator.traffic import COLUMNS, TABLE_ORDER, TrafficGenerator
from paydata.migrations import apply_migrations
from paydata.oltp.reference_sync import sync_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SECTION = "## Seeding throughput"
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _create_database(admin, prefix: str) -> str:
    import uuid

    from paydata.stack.config import PG_SUPERUSER
    from paydata.stack.postgres import sql_statement

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cursor:
        cursor.execute(sql_statement("create_database", database=name, owner=PG_SUPERUSER))
    return name


def _drop_database(admin, name: str) -> None:
    from paydata.stack.postgres import sql_statement

    with admin.cursor() as cursor:
        cursor.execute(sql_statement("drop_database_force", database=name))


def raw_copy_seconds(conn, config: TrafficConfig, merchants, currencies) -> float:
    """Seconds spent COPYing the batch's rows into unconstrained copies of the tables (COPY only)."""
    with conn.cursor() as cursor:
        for table in TABLE_ORDER:
            cursor.execute(statement("create_raw_copy_table", raw_table=f"raw_{table}", table=table))
    conn.commit()
    spent = 0.0
    first = dict.fromkeys(("customer", "payment_method", "payment_intent", "charge", "refund", "dispute",
                           "payout", "balance_transaction"), 1)
    with conn.cursor() as cursor:
        for chunk in TrafficGenerator(config, merchants, currencies).chunks():
            texts = encode_chunk(chunk, first)
            buffers = {t: io.StringIO(texts[t]) for t in TABLE_ORDER if texts.get(t)}
            started = time.perf_counter()
            for table, buffer in buffers.items():
                copy_into(cursor, f"raw_{table}", COLUMNS[table], buffer)
            spent += time.perf_counter() - started
            for table, count in chunk.counts().items():
                first[table] += count
    conn.commit()
    return spent


def run(payments: int, runs: int) -> dict:
    from paydata.stack import admin_connect, ensure_up

    load_before = os.getloadavg()[0]
    stack = ensure_up(services="postgres")
    admin = admin_connect("postgres", config=stack)
    admin.autocommit = True
    created = []
    try:
        ref_name = _create_database(admin, "bench_ref")
        created.append(ref_name)
        ref = admin_connect(ref_name, config=stack)
        apply_migrations(ref, "reference")
        seed_reference(ref, merchants=200, seed=1, fx_start=START.date(), fx_days=31)
        merchants = load_merchant_profiles(ref)
        timings, raw_timings = [], []
        for run_index in range(runs):
            oltp_name = _create_database(admin, "bench_oltp")
            created.append(oltp_name)
            oltp = admin_connect(oltp_name, config=stack)
            apply_migrations(oltp, "oltp")
            sync_reference(ref, oltp)
            config = TrafficConfig(payments=payments, start=START, days=30, seed=100 + run_index)
            result = load_traffic(oltp, config, merchants, progress=False)
            timings.append(result.seconds)
            currencies = dict(_fetch(oltp))
            raw_timings.append(raw_copy_seconds(oltp, config, merchants, currencies))
            rows = sum(count for table, count in result.rows.items() if table != "charge_status_step")
            oltp.close()
            _drop_database(admin, oltp_name)
            created.remove(oltp_name)
        ref.close()
    finally:
        for name in created:
            _drop_database(admin, name)
        admin.close()
    seconds = statistics.median(timings)
    raw = statistics.median(raw_timings)
    return {"date": dt.date.today().isoformat(), "payments": payments, "runs": runs, "rows": rows,
            "seconds": seconds, "payments_per_s": payments / seconds, "raw_copy_seconds": raw,
            "ratio": seconds / raw, "load": (load_before, os.getloadavg()[0])}


def _fetch(conn):
    with conn.cursor() as cursor:
        cursor.execute(statement("select_currency_ref"))
        rows = cursor.fetchall()
    conn.rollback()
    return rows


def markdown(result: dict) -> str:
    header = ("| date | payments | runs (median) | rows written | seconds | payments/s | raw COPY s "
              "| pipeline / raw COPY | load avg (1 min) before / after |\n|---|---|---|---|---|---|---|---|---|\n")
    return header + (
        f"| {result['date']} | {result['payments']:,} | {result['runs']} | {result['rows']:,} "
        f"| {result['seconds']:.1f} | {result['payments_per_s']:,.0f} | {result['raw_copy_seconds']:.1f} "
        f"| {result['ratio']:.1f}x | {result['load'][0]:.1f} / {result['load'][1]:.1f} |\n"
    )


def update_doc(table: str, path: Path = DOC) -> None:
    """Replace (or append) the "Seeding throughput" section of docs/benchmarks.md."""
    body = (
        f"{SECTION}\n\n`.venv/bin/python -m bench.seed_bench --payments N` (2-core machine). Pipeline = "
        "generation + encryption + COPY into the constrained, indexed, triggered OLTP tables in one "
        "transaction; raw COPY = the same generated rows COPYed into plain `LIKE` tables (COPY time only). "
        "Target: 1M payments in <= 120 s.\n\n" + table
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(body.rstrip("\n"), text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=None, help="default: 3 up to 200k payments, else 1")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.payments < 1:
        parser.error("--payments must be positive")
    runs = args.runs or (3 if args.payments <= 200_000 else 1)
    table = markdown(run(args.payments, runs))
    print(table)
    if not args.no_doc:
        update_doc(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
