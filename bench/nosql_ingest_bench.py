"""Benchmark: the landing ingest end to end versus a plain insert_many of the same final documents.

Generates landing files with the workload generator (sessions, events, telemetry, feedback, app
logs; no database needed), injects bad lines of every quarantine reason at ``--bad-rate``, then per
run, in a fresh database with the collection definitions applied:

1. ingests every file (read, validate, make safe, deduplicate, write, quarantine, ledger) in a
   separate process, whose peak resident memory is reported;
2. reads back every document the ingest wrote (sessions, telemetry, feedback, app_logs,
   quarantine, ingest_files) and inserts them with ``insert_many(ordered=False)`` in batches of
   1000 into another fresh database with the same validators and indexes.

Both are expressed as landing records per second; the ratio is insert_many time / ingest time of
the same run. Reported: median of ``--runs``, and the peak memory of a run on a tenth of the data
next to the full run (memory must not grow with file size).

    python bench/nosql_ingest_bench.py [--records 500000] [--runs 3] [--bad-rate 0.01] [--write-report]

``--write-report`` replaces the "NoSQL landing ingest" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import platform
import re
import resource
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

SECTION = "## NoSQL landing ingest"
COLLECTIONS = ("sessions", "telemetry", "feedback", "app_logs", "quarantine", "ingest_files")
LINES_PER_PAYMENT = 8.15  # sessions + events + telemetry + feedback + app_logs per payment, measured
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
WHERE_TIME_GOES = (
    "Where the time goes: the server. SecantusDB spends about 0.25 ms per inserted document and about "
    "three times that per update of a stored one, so the ingest's design goal is one insert per final "
    "document: a new sessions file is read side by side with its events file (one document per session "
    "instead of an insert and an update; before this the ratio was 0.38-0.45 on 50k lines), and the next "
    "batch is validated and scrubbed in a second thread while the current one is written. What remains "
    "above `insert_many`: reading the keys each batch touches (`$in` in chunks of 100, for duplicates), "
    "one transaction and ledger update per batch, and the Python work per line (JSON, schema check, "
    "tokens, PII scan of each string: about 2 s per 50k lines in a profile). The machine was shared with "
    "other benchmarks during "
    "the runs, which is why single runs vary."
)


def _bad_lines(good: bytes) -> list[bytes]:
    record = json.loads(good)
    return [
        good[: len(good) // 2],                                              # bad_json
        good.replace(b'"', b'"\xff', 1),                                     # invalid_utf8
        json.dumps({**record, next(iter(record)): 12345}).encode(),          # wrong_type (mostly)
        json.dumps(dict(list(record.items())[1:])).encode(),                 # missing_field
        json.dumps({**record, "type": "unknown"}).encode(),                  # unknown_record_type
        json.dumps({**record, "padding": "p" * 9000}).encode(),              # oversize_record
        json.dumps({**record, "extra": 1}).encode(),                         # unknown_field
    ]


def make_landing(root: Path, records: int, bad_rate: float, seed: int = 7) -> tuple[int, int, list, list]:
    """Landing files of about ``records`` lines with ``bad_rate`` of them bad; returns counts and identities."""
    from paydata.generator import TrafficConfig
    from paydata.generator.landing import write_landing
    from paydata.generator.reference import MerchantProfile, chargeable_currencies
    from paydata.generator.traffic import TrafficGenerator

    merchants = [MerchantProfile(i, mcc, country, currency) for i, (mcc, country, currency) in enumerate(
        [("5411", "US", "USD"), ("4511", "GB", "GBP"), ("5814", "FR", "EUR"), ("5732", "DE", "EUR"),
         ("5999", "JP", "JPY"), ("7995", "BR", "BRL")], start=1)]
    payments = max(100, int(records / LINES_PER_PAYMENT))
    generator = TrafficGenerator(TrafficConfig(payments=payments, start=START, days=3, seed=seed), merchants,
                                 chargeable_currencies())
    write_landing(root, generator)
    shutil.rmtree(root / "fraud_labels")
    identities = [c.identity for chunk in generator.chunks() for c in chunk.customers]
    every = max(1, round(1 / bad_rate)) if bad_rate > 0 else 0
    total = bad = 0
    for path in sorted(root.glob("*/*.jsonl")):
        lines = path.read_bytes().splitlines()
        out = []
        for number, line in enumerate(lines, start=1):
            out.append(line)
            if every and number % every == 0:
                variants = _bad_lines(line)
                out.append(variants[(number // every) % len(variants)])
                bad += 1
        total += len(out)
        path.write_bytes(b"\n".join(out) + b"\n")
    return total, bad, [i.name for i in identities], [i.phone for i in identities]


def _peak_rss_kb() -> int:
    """Peak resident memory of this address space (VmHWM). Unlike ru_maxrss, it starts anew at exec,
    so a spawned child does not inherit the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _ingest_child(landing: str, database_name: str, names: list, phones: list, queue) -> None:
    from paydata import settings
    from paydata.crypto import default_tokeniser
    from paydata.nosql.loader import ingest_files, landing_files
    from paydata.nosql.scrub import KnownValues, Safeguard

    settings.load_env_file(missing_ok=True)
    client = settings.mongo_client()
    database = client[database_name]
    tokeniser = default_tokeniser()
    safeguard = Safeguard(tokeniser, KnownValues.from_plaintext(tokeniser, names, phones))
    paths = landing_files(Path(landing))
    baseline = _peak_rss_kb()
    started = time.perf_counter()
    report = ingest_files(database, Path(landing), paths, safeguard)
    seconds = time.perf_counter() - started
    peak = _peak_rss_kb()
    client.close()
    queue.put({"seconds": seconds, "totals": report.totals(), "rss_before_kb": baseline, "rss_peak_kb": peak})


def ingest_in_child(landing: Path, database_name: str, names: list, phones: list) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_ingest_child, args=(str(landing), database_name, names, phones, queue))
    child.start()
    result = queue.get()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"ingest process failed with exit code {child.exitcode}")
    return result


def one_run(landing: Path, names: list, phones: list) -> dict:
    from paydata import nosql, settings

    client = settings.mongo_client(serverSelectionTimeoutMS=5000)
    ingest_db = client[f"bench_ingest_{uuid.uuid4().hex[:8]}"]
    plain_db = client[f"bench_plain_{uuid.uuid4().hex[:8]}"]
    try:
        nosql.apply_definitions(ingest_db)
        nosql.apply_definitions(plain_db)
        result = ingest_in_child(landing, ingest_db.name, names, phones)
        produced = {name: list(ingest_db[name].find()) for name in COLLECTIONS}
        started = time.perf_counter()
        for name, documents in produced.items():
            for offset in range(0, len(documents), 1000):
                plain_db[name].insert_many(documents[offset : offset + 1000], ordered=False)
        result["insert_many_seconds"] = time.perf_counter() - started
        result["documents"] = {name: len(documents) for name, documents in produced.items()}
        del produced
        return result
    finally:
        client.drop_database(ingest_db.name)
        client.drop_database(plain_db.name)
        client.close()


def section(records: int, bad: int, runs: list[dict], small: dict, small_records: int) -> str:
    lines = runs[0]["totals"]["lines"]
    ingest = statistics.median(r["seconds"] for r in runs)
    plain = statistics.median(r["insert_many_seconds"] for r in runs)
    ratios = [r["insert_many_seconds"] / r["seconds"] for r in runs]
    totals = runs[0]["totals"]
    docs = runs[0]["documents"]
    peak = statistics.median(r["rss_peak_kb"] for r in runs) / 1024
    small_peak = small["rss_peak_kb"] / 1024
    before = statistics.median(r["rss_before_kb"] for r in runs) / 1024
    return (
        f"{SECTION}\n\n"
        f"`python bench/nosql_ingest_bench.py --records {records} --runs {len(runs)}` on {platform.machine()} "
        f"({platform.system()}), SecantusDB local stack, {dt.datetime.now(dt.UTC):%Y-%m-%d}. {lines:,} landing "
        f"lines (sessions, events, telemetry, feedback, app logs) of which {bad:,} bad (every quarantine "
        f"reason in turn); median of {len(runs)} runs.\n\n"
        f"| what | seconds | landing records/s |\n|---|---:|---:|\n"
        f"| ingest end to end (read, validate, tokenise, scrub, deduplicate, write, quarantine, ledger; "
        f"batches of 1000 lines, one transaction each) | {ingest:.1f} | {lines / ingest:,.0f} |\n"
        f"| plain `insert_many` of the same final documents ({sum(docs.values()):,} documents), same "
        f"validators and indexes, batches of 1000 | {plain:.1f} | {lines / plain:,.0f} |\n\n"
        f"Ratio ingest / insert_many: **{statistics.median(ratios):.2f}** (runs: "
        f"{', '.join(f'{r:.2f}' for r in ratios)}). Outcome: {totals['loaded']:,} loaded, "
        f"{totals['quarantined']:,} quarantined ({', '.join(f'{k} {v}' for k, v in totals['reasons'].items())}), "
        f"{totals['duplicates']:,} duplicates; documents: "
        f"{', '.join(f'{k} {v:,}' for k, v in docs.items())}.\n\n"
        f"{WHERE_TIME_GOES}\n\n"
        f"Peak resident memory of the ingest process: {peak:.0f} MiB for {lines:,} lines "
        f"({before:.0f} MiB before the first file), {small_peak:.0f} MiB for {small['totals']['lines']:,} lines "
        f"(a tenth): the files are streamed line by line in batches, so memory follows the batch size, "
        f"not the file size.\n"
    )


def write_report(text: str) -> None:
    from paydata import settings

    report = settings.REPO_ROOT / "docs" / "benchmarks.md"
    existing = report.read_text() if report.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(existing):
        updated = pattern.sub(lambda _: text + "\n", existing)
    else:
        updated = existing.rstrip("\n") + "\n\n" + text
    report.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bad-rate", type=float, default=0.01)
    parser.add_argument("--write-report", action="store_true")
    args = parser.parse_args()
    if args.records <= 0 or args.runs <= 0 or not 0 <= args.bad_rate < 1:
        parser.error("--records and --runs must be positive, --bad-rate in [0, 1)")
    from paydata import settings

    settings.load_env_file(missing_ok=True)
    root = Path(tempfile.mkdtemp(prefix="paydata-ingest-bench-"))
    try:
        small_landing, landing = root / "small", root / "full"
        small_records = max(1000, args.records // 10)
        _total, _bad, small_names, small_phones = make_landing(small_landing, small_records, args.bad_rate)
        small = one_run(small_landing, small_names, small_phones)
        print(f"small run: {small['totals']['lines']} lines in {small['seconds']:.1f}s", flush=True)
        total, bad, names, phones = make_landing(landing, args.records, args.bad_rate)
        runs = []
        for number in range(args.runs):
            runs.append(one_run(landing, names, phones))
            run = runs[-1]
            print(f"run {number + 1}: {total} lines, ingest {run['seconds']:.1f}s, insert_many "
                  f"{run['insert_many_seconds']:.1f}s, peak RSS {run['rss_peak_kb'] / 1024:.0f} MiB", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = section(args.records, bad, runs, small, small_records)
    print(text)
    if args.write_report:
        write_report(text)


if __name__ == "__main__":
    main()
