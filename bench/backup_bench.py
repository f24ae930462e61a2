"""Encrypted backup throughput against plain ``pg_dump -Fc``, and restore-drill time.

    .venv/bin/python -m bench.backup_bench [--seed-payments N] [--databases oltp warehouse]

With ``--seed-payments`` the stack first gets N more payments (generator, CDC of both sources,
warehouse build). Then, in one run and in this order: plain ``pg_dump -Fc`` of each database to
/dev/null; the encrypted backup of the same databases (``paydata.backup.take_backup``: pg_dump
streamed through AES-256-GCM into files, with per-table row counts and checksums in the dump's
snapshot); plain ``pg_dump`` again (the plain figure is the mean of both, so cache warmth does
not favour either side); the restore drill of the encrypted backup. Prints one JSON document.
Throughput is dump bytes (plaintext) per second of dumping; the table statistics are timed apart.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def plain_dump(database: str) -> tuple[int, float]:
    from paydata import settings
    from paydata.backup.sources import libpq_env, pg_binary

    started = time.perf_counter()
    process = subprocess.Popen([pg_binary("pg_dump"), "--format=custom", "--no-password"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=libpq_env(settings.POSTGRES_DATABASES[database]))
    size = 0
    while True:
        piece = process.stdout.read(1 << 20)
        if not piece:
            break
        size += len(piece)  # and dropped: the same as writing to /dev/null
    if process.wait() != 0:
        raise SystemExit(f"pg_dump {database} failed: {process.stderr.read().decode()}")
    return size, time.perf_counter() - started


def seed(payments: int) -> None:
    python = sys.executable
    for command in (["-m", "paydata.generator", "all", "--payments", str(payments)],
                    ["-m", "paydata.cdc", "run", "--source", "reference"],
                    ["-m", "paydata.cdc", "run", "--source", "oltp"],
                    ["-m", "paydata.warehouse", "build"]):
        subprocess.run([python, *command], check=True, stdout=subprocess.DEVNULL)


def counts() -> dict:
    from paydata import settings

    sizes = {}
    for database in ("oltp", "warehouse"):
        # each over its own connection: a database's size needs CONNECT on it, and the OLTP
        # owner has none on the warehouse
        with settings.pg_connect(settings.POSTGRES_DATABASES[database]) as conn, conn.cursor() as cursor:
            if database == "oltp":
                cursor.execute("SELECT count(*) FROM charge")
                charges = cursor.fetchone()[0]
            cursor.execute("SELECT pg_database_size(current_database())")
            sizes[database] = cursor.fetchone()[0]
    return {"charges": charges, "oltp_db_mb": round(sizes["oltp"] / 1e6, 1),
            "warehouse_db_mb": round(sizes["warehouse"] / 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed-payments", type=int, default=0)
    parser.add_argument("--databases", nargs="+", default=["oltp", "warehouse"])
    args = parser.parse_args(argv)

    from paydata import settings, stack
    from paydata.backup import restore_drill, take_backup
    from paydata.backup.catalog import backup_id_for

    stack.ensure_up(services="postgres,mongo")
    settings.load_env_file(missing_ok=True)
    if args.seed_payments:
        seed(args.seed_payments)
    load_before = os.getloadavg()[0]
    plain = {db: [plain_dump(db)] for db in args.databases}
    with tempfile.TemporaryDirectory(prefix="paydata-backup-bench-") as folder:
        manifest = take_backup(Path(folder), backup_id_for(dt.datetime.now(dt.UTC), "bench"),
                               databases=args.databases, mongo=False)
        for db in args.databases:
            plain[db].append(plain_dump(db))
        started = time.perf_counter()
        drill = restore_drill(Path(folder), manifest["backup_id"])
        drill_seconds = time.perf_counter() - started
    result = {"date": dt.date.today().isoformat(), **counts(), "load_avg_before": round(load_before, 2),
              "load_avg_after": round(os.getloadavg()[0], 2), "databases": {}}
    total_plain_bytes = total_plain_s = total_enc_bytes = total_enc_s = total_stats_s = 0.0
    for artifact in manifest["artifacts"]:
        db = artifact["database"]
        plain_bytes = sum(size for size, _ in plain[db]) / len(plain[db])
        plain_s = sum(seconds for _, seconds in plain[db]) / len(plain[db])
        enc_mb_s = artifact["plaintext_bytes"] / 1e6 / artifact["dump_seconds"]
        plain_mb_s = plain_bytes / 1e6 / plain_s
        result["databases"][db] = {
            "dump_mb": round(artifact["plaintext_bytes"] / 1e6, 1),
            "encrypted_file_mb": round(artifact["bytes"] / 1e6, 1),
            "encrypted_s": round(artifact["dump_seconds"], 2), "encrypted_mb_s": round(enc_mb_s, 1),
            "plain_s": round(plain_s, 2), "plain_mb_s": round(plain_mb_s, 1),
            "ratio": round(enc_mb_s / plain_mb_s, 3), "table_stats_s": artifact["stats_seconds"],
        }
        total_plain_bytes += plain_bytes
        total_plain_s += plain_s
        total_enc_bytes += artifact["plaintext_bytes"]
        total_enc_s += artifact["dump_seconds"]
        total_stats_s += artifact["stats_seconds"]
    result["total"] = {
        "encrypted_mb_s": round(total_enc_bytes / 1e6 / total_enc_s, 1),
        "plain_mb_s": round(total_plain_bytes / 1e6 / total_plain_s, 1),
        "ratio": round((total_enc_bytes / total_enc_s) / (total_plain_bytes / total_plain_s), 3),
        "backup_s_with_stats": manifest["seconds"], "table_stats_s": round(total_stats_s, 2),
        "restore_drill_s": round(drill_seconds, 1), "restore_drill_ok": drill.ok,
    }
    print(json.dumps(result, indent=2))
    return 0 if drill.ok else 1


if __name__ == "__main__":
    sys.exit(main())
