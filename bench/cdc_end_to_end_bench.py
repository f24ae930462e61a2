"""End-to-end CDC throughput: a backlog of mixed changes from a source slot into the staging layer.

One run, in a fresh source database and a fresh warehouse database (both dropped afterwards, the
slot first):

1. a charge-like source table (11 columns; the manifest keeps 9, tokenises ``customer_id`` and
   drops ``ip_address``) and the engine with the real ``WarehouseSink``; a first run snapshots the
   empty table and creates the slot;
2. N mixed changes (60% inserts, 30% updates, 10% deletes, 1,000 per transaction) generated
   server-side by a procedure, while nothing consumes the slot (a backlog);
3. ``engine.run()`` until caught up, in a child process (so its peak RSS is the engine's own):
   changes/s, batches, peak RSS;
4. staging must equal the source (live-row count, tombstone count, and a digest of every captured
   column of every live row, tokens included), else the run fails instead of reporting a number;
5. the baseline, in the same run: N rows of the captured columns piped ``COPY ... TO STDOUT`` from a
   plain table in the source database into ``COPY ... FROM STDIN`` of a plain table in the warehouse.

Needs the local stack (``python -m paydata.stack up``).

    .venv/bin/python -m bench.cdc_end_to_end_bench --changes 1000000 [--runs 3] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
from psycopg2 import sql
from psycopg2.extras import LogicalReplicationConnection

from paydata import settings
from paydata.cdc.engine import CdcEngine, EngineLimits
from paydata.cdc.manifest import Manifest, load_manifest
from paydata.cdc.model import STAGING_SCHEMA, Position, staging_table
from paydata.cdc.pgoutput import parse_lsn
from paydata.sql import SqlLibrary
from paydata.stack import admin_connect
from paydata.stack.config import PG_SUPERUSER
from paydata.stack.postgres import sql_statement

SOURCE = "benche2e"
TABLE = "charge"
TRANSACTION_CHANGES = 1000
INSERTS, UPDATES, DELETES = 600, 300, 100
REPO_ROOT = Path(__file__).resolve().parents[1]


def manifest_dict(slot: str) -> dict:
    return {
        "source": SOURCE,
        "slot": slot,
        "publication": slot,
        "tables": {
            TABLE: {
                "key": ["charge_id"],
                "sinks": ["warehouse"],
                "columns": {
                    "charge_id": "keep",
                    "payment_intent_id": "keep",
                    "customer_id": "tokenise:customer",
                    "amount": "keep",
                    "currency_code": "keep",
                    "status": "keep",
                    "failure_code": "keep",
                    "captured": "keep",
                    "ip_address": "drop",
                    "created_at": "keep",
                    "updated_at": "keep",
                },
            }
        },
    }


BENCH_SQL = SqlLibrary(Path(__file__).resolve().parent / "sql")


def bench_sql(name: str, **parts: sql.Composable) -> sql.Composed | str:
    text = BENCH_SQL.load(f"cdc/{name}.sql")
    return sql.SQL(text).format(**parts) if parts else text


# -- databases, connections, engine ------------------------------------------------------------------


TRANSPORT = os.environ.get("PAYDATA_BENCH_TRANSPORT", "configured")
"""How the engine and the baseline reach the source: ``configured`` (the CDC connection as the stack
writes it: the Unix socket) or ``tls`` (TCP with verify-full TLS 1.3, as a capture host elsewhere would)."""


def cdc_kwargs(source_db: str) -> dict:
    kwargs = settings.connection("paydata_cdc_oltp").psycopg2_kwargs(dbname=source_db)
    if TRANSPORT == "tls":
        tls = settings.connection(settings.WAREHOUSE_CONN_ID).psycopg2_kwargs()
        kwargs.update({key: tls[key] for key in ("host", "port", "sslmode", "sslrootcert") if key in tls})
    return kwargs


def cdc_connect(source_db: str, **extra):
    return psycopg2.connect(**cdc_kwargs(source_db), **extra)


def warehouse_connect(warehouse_db: str):
    return psycopg2.connect(**settings.connection(settings.WAREHOUSE_CONN_ID).psycopg2_kwargs(dbname=warehouse_db))


def build_engine(source_db: str, warehouse_db: str, slot: str, limits: EngineLimits):
    """The engine on the benchmark databases with the real warehouse sink (returned for closing)."""
    from paydata.cdc.deadletters import PostgresDeadLetterStore
    from paydata.cdc.ledger import PostgresConfirmLedger
    from paydata.cdc.sinks.warehouse import WarehouseSink

    sink = WarehouseSink(lambda: warehouse_connect(warehouse_db))
    engine = CdcEngine(
        load_manifest(manifest_dict(slot)),
        [sink],
        connect=lambda: cdc_connect(source_db),
        replication_connect=lambda: cdc_connect(source_db, connection_factory=LogicalReplicationConnection),
        owner_connect=lambda: admin_connect(source_db),
        limits=limits,
        stream_params=lambda: cdc_kwargs(source_db),
        ledger=PostgresConfirmLedger(lambda: warehouse_connect(warehouse_db)),
        dead_letters=PostgresDeadLetterStore(lambda: warehouse_connect(warehouse_db)),
    )
    return engine, sink


@contextlib.contextmanager
def bench_databases(prefix: str) -> Generator[tuple[str, str, str], None, None]:
    """``(source_db, warehouse_db, slot)``; on exit the slot is dropped, then both databases."""
    tag = uuid.uuid4().hex[:10]
    source_db, warehouse_db, slot = f"{prefix}src_{tag}", f"{prefix}wh_{tag}", f"{prefix}_{tag}"
    admin = admin_connect("postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql_statement("create_database", database=source_db, owner=PG_SUPERUSER))
            cursor.execute(sql_statement("create_database", database=warehouse_db,
                                         owner=settings.DATABASE_OWNERS["warehouse"]))
        yield source_db, warehouse_db, slot
    finally:
        drop_slots(admin, slot)
        with admin.cursor() as cursor:
            cursor.execute(sql_statement("drop_database_force", database=source_db))
            cursor.execute(sql_statement("drop_database_force", database=warehouse_db))
        admin.close()


def drop_slots(admin, slot: str) -> None:
    """Terminate the slot's consumer and drop the slot (and helper slots named after it)."""
    pattern = slot + "%"
    with admin.cursor() as cursor:
        for _ in range(50):
            cursor.execute(bench_sql("terminate_slot_consumers"), {"pattern": pattern})
            cursor.execute(bench_sql("drop_slots"), {"pattern": pattern})
            cursor.execute(bench_sql("count_slots"), {"pattern": pattern})
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.2)


def child_env() -> dict[str, str]:
    paths = [str(REPO_ROOT), str(REPO_ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}


# -- phases -----------------------------------------------------------------------------------------------


def generate_backlog(source_db: str, changes: int) -> float:
    """Commit ``changes`` mixed changes (whole transactions of 1,000); return the seconds it took."""
    transactions = changes // TRANSACTION_CHANGES
    conn = admin_connect(source_db)
    conn.autocommit = True  # CALL may COMMIT inside the procedure only outside a transaction block
    started = time.perf_counter()
    try:
        with conn.cursor() as cursor:
            step = 50
            for first in range(0, transactions, step):
                cursor.execute(bench_sql("call_mixed_changes"), {
                    "first": first, "transactions": min(step, transactions - first),
                    "inserts": INSERTS, "updates": UPDATES, "deletes": DELETES,
                })
    finally:
        conn.close()
    return time.perf_counter() - started


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a local process (a Postgres backend), or None if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def engine_child(source_db: str, warehouse_db: str, slot: str, limits: dict, profile: str | None) -> None:
    """Child-process entry: one ``engine.run`` until caught up; prints seconds and report as JSON.

    Also reads, just before each exits, the CPU time of the server processes the run kept busy: the
    walsender that decoded the slot and the warehouse backend that applied the batches (local stack
    only: ``/proc``), so the report shows where the machine's cores went.
    """
    from paydata.cdc import wire

    server_cpu: dict[str, float | None] = {}
    close_stream = wire.ReplicationStream.close

    def close_and_measure(stream: wire.ReplicationStream) -> None:
        if not stream.closed:
            server_cpu["walsender"] = process_cpu_seconds(stream.backend_pid)
        close_stream(stream)

    wire.ReplicationStream.close = close_and_measure
    engine, sink = build_engine(source_db, warehouse_db, slot, EngineLimits(**limits))
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    report = engine.run(max_batches=10**9)
    seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    server_cpu["warehouse_backend"] = process_cpu_seconds(sink._connection().get_backend_pid())
    sink.close()
    print(json.dumps({"seconds": seconds, "report": report, "server_cpu": server_cpu}, default=str))


def run_engine_process(source_db: str, warehouse_db: str, slot: str, limits: EngineLimits,
                       profile: str | None) -> tuple[dict, float, float]:
    """Run :func:`engine_child` in a subprocess; return its output, peak RSS (MiB) and CPU seconds."""
    spec = json.dumps({"source_db": source_db, "warehouse_db": warehouse_db, "slot": slot,
                       "limits": limits.__dict__, "profile": profile})
    process = subprocess.Popen([sys.executable, "-m", "bench.cdc_end_to_end_bench", "--engine-child", spec],
                               cwd=REPO_ROOT, env=child_env(), stdout=subprocess.PIPE)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.stdout.close()
    if status != 0:
        raise RuntimeError(f"engine process failed (wait status {status})")
    return json.loads(output), usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def canonical(value) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return repr(value)


def rows_of(conn, table: sql.Composable, columns: list[str], key: str, where: str) -> Iterator[tuple]:
    cursor = conn.cursor(name=f"rows_{uuid.uuid4().hex[:8]}")
    cursor.itersize = 20_000
    cursor.execute(bench_sql("select_rows", columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                             table=table, where=sql.SQL(where), key=sql.Identifier(key)))
    yield from cursor
    cursor.close()


def verify(source_db: str, warehouse_db: str, manifest: Manifest, transactions: int) -> dict:
    """Staging equals the source: counts, tombstones, and a digest of every live row. Raises if not."""
    columns = list(manifest.tables[TABLE].captured_columns)
    source, warehouse = admin_connect(source_db), warehouse_connect(warehouse_db)
    mirror = sql.Identifier(STAGING_SCHEMA, staging_table(SOURCE, TABLE))
    try:
        expected_digest, staged_digest = hashlib.sha256(), hashlib.sha256()
        expected_rows = staged_rows = mismatches = 0
        source_rows = rows_of(source, sql.Identifier(TABLE), columns, "charge_id", "true")
        mirror_rows = rows_of(warehouse, mirror, columns, "charge_id", "NOT _is_deleted")
        for expected, staged in itertools.zip_longest(source_rows, mirror_rows):
            if expected is None or staged is None:
                expected_rows += expected is not None
                staged_rows += staged is not None
                mismatches += 1
                continue
            captured = manifest.capture_row(TABLE, dict(zip(columns, expected, strict=True)), kind="snapshot",
                                            position=Position.zero(), commit_time=None)
            expected = tuple(captured.row[column] for column in columns)
            expected_rows += 1
            staged_rows += 1
            mismatches += expected != staged
            expected_digest.update("\t".join(map(canonical, expected)).encode() + b"\n")
            staged_digest.update("\t".join(map(canonical, staged)).encode() + b"\n")
        with warehouse.cursor() as cursor:
            cursor.execute(bench_sql("count_mirror", table=mirror))
            mirror_total, tombstones = cursor.fetchone()
    finally:
        source.close()
        warehouse.close()
    result = {
        "source_rows": expected_rows,
        "staged_live_rows": staged_rows,
        "tombstones": tombstones,
        "mirror_rows": mirror_total,
        "mismatched_rows": mismatches,
        "digest_equal": expected_digest.hexdigest() == staged_digest.hexdigest(),
    }
    expected_live, expected_deleted = (INSERTS - DELETES) * transactions, DELETES * transactions
    if (expected_rows != staged_rows or mismatches or not result["digest_equal"]
            or expected_rows != expected_live or tombstones != expected_deleted):
        raise RuntimeError(f"staging does not equal the source: {result} (expected {expected_live} live rows, "
                           f"{expected_deleted} tombstones)")
    return result


def run_baseline(source_db: str, warehouse_db: str, rows: int) -> float:
    """Seconds to pipe ``rows`` rows COPY TO STDOUT (source db) -> COPY FROM STDIN (warehouse db)."""
    admin = admin_connect(source_db)
    try:
        with admin.cursor() as cursor:
            cursor.execute(bench_sql("create_copy_source"), {"rows": rows})
        admin.commit()
    finally:
        admin.close()
    # The rows are read as the engine reads the slot: same role, same transport.
    source, target = cdc_connect(source_db), warehouse_connect(warehouse_db)
    try:
        with target.cursor() as cursor:
            cursor.execute(bench_sql("create_copy_target"))
        target.commit()
        read_end, write_end = os.pipe()
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                with os.fdopen(write_end, "wb") as writer, source.cursor() as cursor:
                    cursor.copy_expert(bench_sql("copy_source_out"), writer)
            except BaseException as exc:  # re-raised by the caller after the join
                errors.append(exc)

        started = time.perf_counter()
        producer = threading.Thread(target=produce)
        producer.start()
        with os.fdopen(read_end, "rb") as reader, target.cursor() as cursor:
            cursor.copy_expert(bench_sql("copy_target_in"), reader)
        target.commit()
        producer.join()
        seconds = time.perf_counter() - started
        if errors:
            raise errors[0]
        source.commit()
        return seconds
    finally:
        source.close()
        target.close()


def current_wal_lsn(source_db: str) -> int:
    conn = admin_connect(source_db)
    try:
        with conn.cursor() as cursor:
            cursor.execute(bench_sql("current_wal_lsn"))
            return parse_lsn(cursor.fetchone()[0])
    finally:
        conn.close()


def initial_snapshot(source_db: str, warehouse_db: str, slot: str, limits: EngineLimits) -> dict:
    """The first run (slot + snapshot of the empty table), retried a few times.

    Creating a slot waits for every transaction open in the cluster; on a shared server a slot
    that waits while others write more than ``max_slot_wal_keep_size`` of WAL is invalidated and
    its connection terminated. The engine is built to be rerun after such a failure.
    """
    for attempt in range(5):
        engine, sink = build_engine(source_db, warehouse_db, slot, limits)
        try:
            return engine.run()
        except psycopg2.OperationalError as exc:
            print(f"snapshot attempt {attempt + 1} failed ({exc}); retrying", file=sys.stderr)
            time.sleep(2)
        finally:
            sink.close()
    raise RuntimeError("could not create the slot and snapshot after 5 attempts")


def one_run(changes: int, limits: EngineLimits, profile: str | None) -> dict:
    transactions = changes // TRANSACTION_CHANGES
    with bench_databases("cdce2e") as (source_db, warehouse_db, slot):
        admin = admin_connect(source_db)
        with admin.cursor() as cursor:
            cursor.execute(bench_sql("create_source"))
            cursor.execute(bench_sql("create_mixed_changes"))
        admin.commit()
        admin.close()
        snapshot = initial_snapshot(source_db, warehouse_db, slot, limits)
        if snapshot["snapshot"] is None or not snapshot["caught_up"]:
            raise RuntimeError(f"the first run did not snapshot: {snapshot}")
        wal_start = current_wal_lsn(source_db)
        generate_seconds = generate_backlog(source_db, changes)
        load_before = os.getloadavg()
        wal_before = current_wal_lsn(source_db)
        backlog_wal_bytes = wal_before - wal_start  # includes WAL other databases wrote meanwhile
        child, peak_rss_mib, cpu_seconds = run_engine_process(source_db, warehouse_db, slot, limits, profile)
        load_after = os.getloadavg()
        report = child["report"]
        if not report["caught_up"] or report["changes_read"] != transactions * TRANSACTION_CHANGES:
            raise RuntimeError(f"engine did not deliver every change: {report}")
        checked = verify(source_db, warehouse_db, load_manifest(manifest_dict(slot)), transactions)
        baseline_seconds = run_baseline(source_db, warehouse_db, changes)
    changes_read = report["changes_read"]
    return {
        "changes": changes_read,
        "generate_seconds": generate_seconds,
        "engine_seconds": child["seconds"],
        "engine_process_cpu_seconds": cpu_seconds,
        "backlog_wal_bytes": backlog_wal_bytes,
        "changes_per_second": changes_read / child["seconds"],
        "walsender_cpu_seconds": child["server_cpu"].get("walsender"),
        "warehouse_backend_cpu_seconds": child["server_cpu"].get("warehouse_backend"),
        "baseline_seconds": baseline_seconds,
        "baseline_rows_per_second": changes / baseline_seconds,
        "ratio": (changes_read / child["seconds"]) / (changes / baseline_seconds),
        "peak_rss_mib": peak_rss_mib,
        "batches": report["batches"],
        "transactions": report["transactions"],
        "lag_bytes_after": report["lag_bytes"],
        "load_average_before": load_before,
        "load_average_after": load_after,
        "verify": checked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=1_000_000, help="multiple of 1,000")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--batch-changes", type=int, default=EngineLimits.batch_changes)
    parser.add_argument("--batch-bytes", type=int, default=EngineLimits.batch_bytes)
    parser.add_argument("--profile", help="write cProfile stats of the (first) engine run to this file")
    parser.add_argument("--transport", choices=("configured", "tls"), default="configured",
                        help="how the engine and the baseline read the source: the configured CDC connection "
                             "(the stack's Unix socket) or TLS over TCP")
    parser.add_argument("--engine-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global TRANSPORT
    if not args.engine_child:
        TRANSPORT = os.environ["PAYDATA_BENCH_TRANSPORT"] = args.transport  # the engine child inherits it
    if args.engine_child:
        spec = json.loads(args.engine_child)
        engine_child(spec["source_db"], spec["warehouse_db"], spec["slot"], spec["limits"], spec["profile"])
        return
    if args.changes < TRANSACTION_CHANGES or args.changes % TRANSACTION_CHANGES:
        parser.error(f"--changes must be a positive multiple of {TRANSACTION_CHANGES}")
    limits = EngineLimits(batch_changes=args.batch_changes, batch_bytes=args.batch_bytes)
    results = []
    for number in range(args.runs):
        result = one_run(args.changes, limits, args.profile if number == 0 else None)
        results.append(result)
        print(json.dumps({"run": number + 1, **result}), flush=True)
    rate = statistics.median(r["changes_per_second"] for r in results)
    baseline = statistics.median(r["baseline_rows_per_second"] for r in results)
    print(f"changes             {args.changes:,} (60% insert / 30% update / 10% delete, "
          f"{TRANSACTION_CHANGES} per transaction), {args.runs} run(s), medians below")
    print(f"batch settings      batch_changes={limits.batch_changes:,} batch_bytes={limits.batch_bytes:,}")
    print(f"engine              {rate:,.0f} changes/s "
          f"({statistics.median(r['engine_seconds'] for r in results):.1f} s)")
    print(f"baseline COPY|COPY  {baseline:,.0f} rows/s")
    print(f"ratio               {statistics.median(r['ratio'] for r in results):.3f}")
    print(f"transport           {TRANSPORT}")
    print(f"engine process CPU  {statistics.median(r['engine_process_cpu_seconds'] for r in results):.1f} s")
    if all(r["walsender_cpu_seconds"] is not None for r in results):
        print(f"walsender CPU       {statistics.median(r['walsender_cpu_seconds'] for r in results):.1f} s")
    if all(r["warehouse_backend_cpu_seconds"] is not None for r in results):
        print(f"warehouse backend   {statistics.median(r['warehouse_backend_cpu_seconds'] for r in results):.1f} s CPU")
    print(f"peak RSS (engine)   {max(r['peak_rss_mib'] for r in results):,.0f} MiB (max over runs)")


if __name__ == "__main__":
    main()
