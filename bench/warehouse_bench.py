"""Warehouse marts build: incremental cost against fact size, and full rebuild against a plain copy.

Every build loads both facts: each seeded payment is one ledger fact and one charge fact.

    .venv/bin/python bench/warehouse_bench.py [--small 100000] [--large 10000000] [--changes 10000]
                                              [--repeats 3] [--seed-chunk 1000000] [--write]

For each fact size, in a throwaway warehouse database (dropped afterwards, also on failure):

1. seed the staging layer server-side with that many payments (intent, charge, ledger row each),
   in chunks of ``--seed-chunk`` payments, one transaction per chunk; timed but not measured;
2. full-rebuild the marts (timed, with a per-statement breakdown of where the time goes);
3. time a plain ``INSERT ... SELECT`` of the same ledger rows into an unindexed table;
4. ``--repeats`` times: stage ``--changes`` new payments and time the incremental build of them
   (the median is reported).

The load average is sampled around every measurement: other work on the machine shows up in it.
``--write`` replaces the "Warehouse" section of docs/benchmarks.md (and only that section).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import psycopg2.extensions

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "plugins"))
sys.path.insert(0, str(REPO_ROOT))  # the staging layout the tests build (tests/staging_layout.py)

from paydata.sql import SqlLibrary, load_sql  # noqa: E402
from paydata.stack import admin_connect  # noqa: E402
from paydata.stack.config import PG_SUPERUSER  # noqa: E402
from paydata.stack.postgres import sql_statement  # noqa: E402
from paydata.warehouse import build  # noqa: E402
from tests.staging_layout import create_staging_layout  # noqa: E402

BENCH_SQL = SqlLibrary(REPO_ROOT / "bench" / "sql")

MERCHANTS = 1000
CUSTOMERS = 50_000
SECTION_TITLE = "## Warehouse"
BREAKDOWN_SHOWN = 8


def _statement_names() -> dict[str, str]:
    """Build statements by text, so the profile can name them; others go by their first SQL line."""
    module = sys.modules["paydata.warehouse.build"]
    names = {load_sql(path): name for name, path in (*module.STEPS, *module.LOAD_STEPS)}
    names[load_sql("warehouse/queries/build/fact_input_violations.sql")] = "input_checks"
    names[load_sql("warehouse/queries/build/truncate_marts.sql")] = "truncate_marts"
    names[load_sql(module.FULL_REBUILD_FACT_LOAD)] = "facts_written"
    for check in ("fact_violations", "charge_violations", "dimension_violations"):
        names[load_sql(f"warehouse/queries/quality/{check}.sql")] = f"quality_{check}"
    return names


def profiling_cursor(statement_seconds: defaultdict[str, float]) -> type:
    """A cursor class adding each statement's wall time to ``statement_seconds[name]``."""
    names = _statement_names()

    class ProfilingCursor(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):  # noqa: A002 - psycopg2's own parameter name
            started = time.perf_counter()
            try:
                return super().execute(query, vars)
            finally:
                text = query if isinstance(query, str) else repr(query)
                if text.startswith(("CREATE INDEX", "CREATE UNIQUE INDEX")):
                    name = "fact_indexes_recreated"  # catalog definitions, one statement per index
                elif text.startswith("Composed(") and "DROP INDEX" in text:
                    name = "fact_indexes_dropped"
                else:
                    name = names.get(text) or next(
                        (line for line in text.splitlines() if line and not line.startswith("--")), "?"
                    )[:60]
                statement_seconds[name] += time.perf_counter() - started

    return ProfilingCursor


def timed(action):
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def load_average() -> float:
    return os.getloadavg()[0]


def seed_payments(conn, first_id: int, last_id: int, chunk: int) -> None:
    params = {"merchants": MERCHANTS, "customers": CUSTOMERS}
    for start in range(first_id, last_id + 1, chunk):
        with conn.cursor() as cursor:
            cursor.execute(BENCH_SQL.load("warehouse/seed_payments.sql"),
                           dict(params, first_id=start, last_id=min(start + chunk - 1, last_id)))
        conn.commit()


def run_size(admin, facts: int, changes: int, repeats: int, chunk: int) -> dict:
    database = f"bench_warehouse_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cursor:
        cursor.execute(sql_statement("create_database", database=database, owner=PG_SUPERUSER))
    conn = None
    try:
        conn = admin_connect(database)
        statement_seconds: defaultdict[str, float] = defaultdict(float)
        conn.cursor_factory = profiling_cursor(statement_seconds)
        create_staging_layout(conn, admin_connect)
        with conn.cursor() as cursor:
            cursor.execute(BENCH_SQL.load("warehouse/seed_reference.sql"),
                           {"merchants": MERCHANTS, "customers": CUSTOMERS})
        conn.commit()
        seed_s, _ = timed(lambda: seed_payments(conn, 1, facts, chunk))
        print(f"[{facts:,}] seeded in {seed_s:.1f} s (load {load_average():.2f})", flush=True)

        statement_seconds.clear()
        load_before = load_average()
        rebuild_s, report = timed(lambda: build(conn, full_rebuild=True))
        assert report["rows"]["facts_written"] == facts and report["rows"]["charges_written"] == facts, report
        rebuild_profile = dict(statement_seconds)
        rebuild_load = (load_before, load_average())
        print(f"[{facts:,}] full rebuild {rebuild_s:.1f} s (load {rebuild_load[0]:.2f} -> {rebuild_load[1]:.2f})",
              flush=True)

        load_before = load_average()
        with conn.cursor() as cursor:
            plain_s, _ = timed(lambda: cursor.execute(BENCH_SQL.load("warehouse/plain_insert.sql")))
            conn.commit()
        plain_load = (load_before, load_average())
        print(f"[{facts:,}] plain insert {plain_s:.1f} s (load {plain_load[0]:.2f} -> {plain_load[1]:.2f})",
              flush=True)

        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/build/server_settings_select.sql"))
            server_settings = dict(cursor.fetchall())
        conn.rollback()

        incremental = []
        incremental_profiles = []
        staged = facts
        for _ in range(repeats):
            seed_payments(conn, staged + 1, staged + changes, chunk)
            staged += changes
            load_before = load_average()
            statement_seconds.clear()
            elapsed, report = timed(lambda: build(conn))
            assert report["rows"]["facts_written"] == changes and report["rows"]["charges_written"] == changes, report
            incremental.append((elapsed, load_before, load_average()))
            incremental_profiles.append(dict(statement_seconds))
            print(f"[{facts:,}] incremental {elapsed:.2f} s (load {load_before:.2f} -> {load_average():.2f})",
                  flush=True)
        median_run = sorted(range(repeats), key=lambda i: incremental[i][0])[repeats // 2]
        return {
            "incremental_profile": incremental_profiles[median_run], "server_settings": server_settings,
            "facts": facts, "seed_s": seed_s, "rebuild_s": rebuild_s, "rebuild_load": rebuild_load,
            "rebuild_profile": rebuild_profile, "plain_s": plain_s, "plain_load": plain_load,
            "incremental": incremental,
            "incremental_s": statistics.median(elapsed for elapsed, _, _ in incremental),
        }
    finally:
        if conn is not None:
            conn.close()
        with admin.cursor() as cursor:
            cursor.execute(sql_statement("drop_database_force", database=database))


def _load_range(values) -> str:
    values = list(values)
    return f"{min(values):.1f}-{max(values):.1f}"


def section(results: list[dict], changes: int, repeats: int, chunk: int) -> str:
    small, large = results
    ratio = large["incremental_s"] / small["incremental_s"]
    settings = ", ".join(f"{name} {value}" for name, value in large["server_settings"].items())
    lines = [
        SECTION_TITLE,
        "",
        f"`python bench/warehouse_bench.py --small {small['facts']} --large {large['facts']} --changes {changes} "
        f"--repeats {repeats}` on {platform.machine()} ({platform.system()}), 2 cores, local stack (server "
        f"defaults of `paydata.stack`: {settings}), {dt.date.today().isoformat()}. Each payment stages an intent, a charge "
        f"and a ledger row; each incremental build processes {changes:,} new payments (3 staging rows each); "
        f"the incremental figure is the median of {repeats} consecutive builds. Staging is seeded server-side "
        f"(set-based SQL, {chunk:,} payments per transaction), timed separately and not counted. "
        "Other benchmarks were running on the machine at the same time: the load average (1 min) during each "
        "measurement is given next to it.",
        "",
        "| fact rows | seeding (s, not counted) | incremental, median (s) | incremental runs (s) | load | "
        "full rebuild (s) | load | plain INSERT ... SELECT (s) | load | rebuild / plain |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        runs = ", ".join(f"{elapsed:.2f}" for elapsed, _, _ in r["incremental"])
        inc_load = _load_range(x for _, before, after in r["incremental"] for x in (before, after))
        lines.append(
            f"| {r['facts']:,} | {r['seed_s']:.0f} | {r['incremental_s']:.2f} | {runs} | {inc_load} "
            f"| {r['rebuild_s']:.2f} | {_load_range(r['rebuild_load'])} | {r['plain_s']:.2f} "
            f"| {_load_range(r['plain_load'])} | {r['rebuild_s'] / r['plain_s']:.1f}x |"
        )
    verdict = "meets" if ratio <= 2 else "misses"
    lines += [
        "",
        f"Incremental time ratio {large['facts']:,} / {small['facts']:,} facts: **{ratio:.2f}x** "
        f"(target <= 2x: {verdict} it).",
        "",
        f"Full rebuild of {large['facts']:,} facts: **{large['rebuild_s'] / large['plain_s']:.1f}x** the plain "
        f"INSERT ... SELECT of the same rows in the same run ({large['rebuild_s']:.0f} s vs "
        f"{large['plain_s']:.0f} s).",
        "",
        f"Where the {large['facts']:,}-fact full rebuild spends its time (wall time per statement):",
        "",
        "| statement | s | share |",
        "|---|---:|---:|",
    ]
    profile = sorted(large["rebuild_profile"].items(), key=lambda item: item[1], reverse=True)
    for name, seconds in profile[:BREAKDOWN_SHOWN]:
        lines.append(f"| `{name}` | {seconds:.1f} | {seconds / large['rebuild_s']:.0%} |")
    rest = sum(seconds for _, seconds in profile[BREAKDOWN_SHOWN:])
    unprofiled = large["rebuild_s"] - sum(seconds for _, seconds in profile)
    lines.append(f"| other statements | {rest:.1f} | {rest / large['rebuild_s']:.0%} |")
    lines.append(f"| commit and client side | {unprofiled:.1f} | {unprofiled / large['rebuild_s']:.0%} |")
    lines += [
        "",
        "Incremental build, median run, slowest statements (s):",
        "",
        "| statement | " + " | ".join(f"{r['facts']:,} facts" for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    slowest = sorted(large["incremental_profile"], key=large["incremental_profile"].get, reverse=True)
    for name in slowest[:BREAKDOWN_SHOWN]:
        lines.append(f"| `{name}` | " + " | ".join(f"{r['incremental_profile'].get(name, 0):.2f}" for r in results)
                     + " |")
    lines.append("")
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace the Warehouse section of docs/benchmarks.md, re-read just before writing."""
    path = REPO_ROOT / "docs" / "benchmarks.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION_TITLE + "\n" in current:
        head, _, rest = current.partition(SECTION_TITLE + "\n")
        tail = rest.split("\n## ", 1)
        after = ("\n## " + tail[1]) if len(tail) > 1 else ""
        current = head + text.rstrip() + "\n" + after
    else:
        current = current.rstrip() + "\n\n" + text
    path.write_text(current.rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=10_000_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed-chunk", type=int, default=1_000_000)
    parser.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    args = parser.parse_args()
    if min(args.small, args.large, args.changes, args.repeats, args.seed_chunk) < 1 or args.small >= args.large:
        parser.error("sizes, --changes, --repeats and --seed-chunk must be positive, and --small < --large")
    admin = admin_connect("postgres")
    admin.autocommit = True
    try:
        results = [run_size(admin, size, args.changes, args.repeats, args.seed_chunk)
                   for size in (args.small, args.large)]
    finally:
        admin.close()
    text = section(results, args.changes, args.repeats, args.seed_chunk)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
