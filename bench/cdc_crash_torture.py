"""Crash torture: the CDC engine SIGKILLed many times at random points under four concurrent writers.

The long version of ``tests/integration/test_cdc_crash.py`` (whose schema, manifest, engine entry
point and checks it reuses). In a fresh source and warehouse database (dropped afterwards, the slot
first): an uninterrupted first run creates the slot and snapshots 500 seed accounts, then four
writer threads commit small two-statement transactions (insert / update / delete of an account and
its entry, each transaction two changes) while an engine process is started and SIGKILLed
``--kills`` times after a random 0.3-3 s. After every kill:

* the slot must not lead the warehouse: no captured commit may lie between the warehouse's stored
  offset and the slot's confirmed flush position (checked at the end against the history tables);
* the distance between the two is recorded (slot ahead of the offset's commit LSN: the end of that
  transaction or a heartbeat; slot behind: a kill between a sink's commit and the slot advance);
* whether the kill landed after the process had confirmed at least one batch (the slot moved while
  it ran). Half of the kills wait for that on purpose (up to 20 s), then kill after a random 0-1.5 s
  more; the other half kill after a random 0.3-3 s, which mostly lands in the first batch.

At the end the writers stop, one run catches up, and:

* lost = changes the writers committed that have no history row; duplicated = history rows beyond
  one per committed change (every writer change is streamed, so the counts must match exactly);
* each staging table equals its source table row for row (digest over the captured columns).

    .venv/bin/python -m bench.cdc_crash_torture --kills 100
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
from psycopg2 import sql

from bench.cdc_end_to_end_bench import bench_databases, bench_sql, child_env
from paydata.cdc.manifest import load_manifest
from paydata.cdc.model import Position
from paydata.cdc.pgoutput import parse_lsn
from paydata.stack import admin_connect

REPO_ROOT = Path(__file__).resolve().parents[1]
CRASH_TEST = REPO_ROOT / "tests" / "integration" / "test_cdc_crash.py"
sys.path.insert(0, str(CRASH_TEST.parent))
import test_cdc_crash as crash  # noqa: E402  (the test module is the engine's entry point too)

TABLES = ("account", "entry")


class _CountingConnection:
    """The writer's connection, calling ``on_commit`` after each successful commit."""

    def __init__(self, conn, on_commit) -> None:
        self._conn = conn
        self._on_commit = on_commit

    def cursor(self):
        return self._conn.cursor()

    def commit(self) -> None:
        self._conn.commit()
        self._on_commit()


class CountingWriters(crash.Writers):
    """The crash test's writers, counting the changes they committed (two per transaction)."""

    def __init__(self, source_db: str):
        super().__init__(admin_connect, source_db)
        self._lock = threading.Lock()
        self.changes = 0

    def _committed(self) -> None:
        with self._lock:
            self.changes += 2

    def _write(self, conn, number: int) -> None:
        super()._write(_CountingConnection(conn, self._committed), number)


def stored_offset(warehouse) -> Position:
    with warehouse.cursor() as cursor:
        cursor.execute(bench_sql("warehouse_offset"), {"source": crash.SOURCE})
        row = cursor.fetchone()
    warehouse.commit()
    return Position(*row) if row else Position.zero()


def confirmed_flush(source, slot: str) -> int | None:
    with source.cursor() as cursor:
        cursor.execute(bench_sql("slot_confirmed_flush"), {"slot": slot})
        row = cursor.fetchone()
    return None if row is None or row[0] is None else parse_lsn(row[0])


def final_catch_up(source_db: str, warehouse_db: str, slot: str) -> dict:
    # A kill can leave the slot held by a backend that has not yet noticed: wait longer, retry.
    for attempt in range(3):
        try:
            return crash.build_engine(source_db, warehouse_db, slot, 90).run(max_batches=100_000)
        except psycopg2.OperationalError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def compare_tables(source, warehouse, slot: str) -> dict[str, dict]:
    manifest = load_manifest(crash.manifest_dict(slot))
    result = {}
    for table in TABLES:
        columns = list(manifest.tables[table].captured_columns)
        with source.cursor() as cursor:
            cursor.execute(bench_sql("select_rows", columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                                     table=sql.Identifier(table), where=sql.SQL("true"), key=sql.Identifier("id")))
            expected = [
                tuple(manifest.capture_row(table, dict(zip(columns, row, strict=True)), kind="snapshot",
                                           position=Position.zero(), commit_time=None).row.values())
                for row in cursor.fetchall()
            ]
        count, staged = crash.checksum(warehouse, sql.Identifier("staging", f"{crash.SOURCE}_{table}"), columns,
                                       sql.SQL("NOT _is_deleted"))
        digest = hashlib.sha256(json.dumps(staged, default=str).encode()).hexdigest()
        result[table] = {"source_rows": len(expected), "staged_rows": count,
                         "equal": digest == hashlib.sha256(json.dumps(expected, default=str).encode()).hexdigest()}
    return result


def torture(kills: int, seed: int) -> dict:
    rng = random.Random(seed)
    with bench_databases("cdctort") as (source_db, warehouse_db, slot):
        source = admin_connect(source_db)
        source.autocommit = True
        with source.cursor() as cursor:
            cursor.execute(crash.SCHEMA)
            cursor.execute(bench_sql("seed_accounts"))
        report = final_catch_up(source_db, warehouse_db, slot)  # slot + snapshot, before any writer
        if report["snapshot"] is None:
            raise RuntimeError(f"the first run did not snapshot: {report}")
        warehouse = crash._warehouse_connect(warehouse_db)
        observations: list[tuple[Position, int]] = []
        after_confirm = 0
        process = None
        started = time.monotonic()
        try:
            with CountingWriters(source_db) as writers:
                for number in range(kills):
                    before = confirmed_flush(source, slot)
                    process = subprocess.Popen([sys.executable, str(CRASH_TEST), source_db, warehouse_db, slot],
                                               cwd=REPO_ROOT, env=child_env(), stdout=subprocess.DEVNULL,
                                               stderr=subprocess.PIPE)
                    if number % 2:
                        crash.wait_for_slot_to_move(source, slot, before, timeout=20)
                        time.sleep(rng.uniform(0.0, 1.5))
                    else:
                        time.sleep(rng.uniform(0.3, 3.0))
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    if process.returncode != -signal.SIGKILL:
                        raise RuntimeError(f"engine exited by itself before kill {number + 1}: "
                                           f"{process.stderr.read().decode()[-3000:]}")
                    process.stderr.close()
                    flushed = confirmed_flush(source, slot)
                    if flushed is not None:
                        observations.append((stored_offset(warehouse), flushed))
                        after_confirm += before is not None and flushed > before
                if writers.errors:
                    raise RuntimeError(f"writer failed: {writers.errors[0]!r}")
            changes = writers.changes
            kill_seconds = time.monotonic() - started
            report = final_catch_up(source_db, warehouse_db, slot)
            if not report["caught_up"]:
                raise RuntimeError(f"final run did not catch up: {report}")
            tables = compare_tables(source, warehouse, slot)
            with warehouse.cursor() as cursor:
                cursor.execute(bench_sql("torture_history"))
                history_rows, distinct_changes = cursor.fetchone()
                cursor.execute(bench_sql("torture_commits"))
                commits = sorted(row[0] for row in cursor.fetchall())
            warehouse.commit()
        finally:
            if process is not None and process.poll() is None:
                process.kill()
            warehouse.close()
            source.close()
    skipped = 0
    ahead = behind = 0
    for offset, flushed in observations:
        skipped += sum(1 for commit in commits if offset.commit_lsn < commit < flushed)
        ahead = max(ahead, flushed - offset.commit_lsn)
        behind = max(behind, offset.commit_lsn - flushed)
    return {
        "kills": kills,
        "observations": len(observations),
        "kills_after_a_confirm": after_confirm,
        "seconds_under_kills": round(kill_seconds, 1),
        "changes_committed": changes,
        "history_rows": history_rows,
        "lost": max(0, changes - distinct_changes),
        "duplicated": max(0, history_rows - changes),
        "commits_between_offset_and_slot": skipped,
        "max_slot_ahead_of_offset_commit_bytes": ahead,
        "max_slot_behind_offset_commit_bytes": behind,
        "tables": tables,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args()
    result = torture(args.kills, args.seed)
    print(json.dumps(result, indent=2))
    failed = (not result["changes_committed"] or result["lost"] or result["duplicated"] or result["commits_between_offset_and_slot"]
              or not all(t["equal"] and t["source_rows"] == t["staged_rows"] for t in result["tables"].values()))
    if failed:
        raise SystemExit("crash torture FAILED: see the figures above")
    print("crash torture passed: nothing lost, nothing duplicated, the slot never led the warehouse")


if __name__ == "__main__":
    main()
