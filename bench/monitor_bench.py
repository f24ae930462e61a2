"""Monitoring benchmarks: the cost of a drift report at volume, and of one monitoring pass.

    python -m bench.monitor_bench drift --rows 100000 --columns 30 --repeats 3
    python -m bench.monitor_bench pass --payments-per-day 10000 --reference-days 7

* drift: ``ml.monitoring.drift.feature_drift`` (the production settings' methods: normed
  Wasserstein for numeric inputs, Jensen-Shannon for flags, log scale for amount-like columns) on
  --rows x --columns generated inputs (lognormal amounts, Poisson counts, uniform hours, 5 % flags)
  against a reference of --rows more, each repeat in a fresh process; seconds and the process's
  peak resident memory (and its growth over the loaded data), medians of --repeats. Also the same
  with the reference sampled to the settings' ``reference_rows`` (what a pass does).
* pass: a throwaway warehouse with --reference-days days of generated traffic and one more day,
  marts and features built, a model trained and registered in a temporary MLflow store, then
  ``ml.monitoring.run.monitor`` for the last day (drift, scores, matured performance, MLflow
  reports, warehouse record): seconds of the pass, median of --repeats.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import statistics
import tempfile
import time
import uuid


def _inputs(rows: int, columns: int, seed: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    data = {}
    for index in range(columns):
        kind = index % 4
        name = f"amount_usd_{index}" if kind == 0 else f"x{index}"
        if kind == 0:
            data[name] = rng.lognormal(3.5, 1.1, rows)
        elif kind == 1:
            data[name] = rng.poisson(0.4, rows).astype(float)
        elif kind == 2:
            data[name] = rng.integers(0, 24, rows).astype(float)
        else:
            data[name] = (rng.random(rows) < 0.05).astype(float)
    return pd.DataFrame(data)


def _drift_once(rows: int, columns: int, reference_rows: int, queue) -> None:
    import resource

    import psutil

    from ml.monitoring.config import load_config
    from ml.monitoring.drift import feature_drift, register_methods

    register_methods()
    reference, current = _inputs(reference_rows, columns, 1), _inputs(rows, columns, 2)
    names = list(current.columns)
    config = load_config(windows={"max_current_rows": rows},
                         feature_drift={"categorical_columns": [n for i, n in enumerate(names) if i % 4 == 3],
                                        "log_columns": [n for n in names if n.startswith("amount")]})
    loaded = psutil.Process().memory_info().rss
    started = time.perf_counter()
    result = feature_drift(reference, current, config, names)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put({"seconds": seconds, "peak_bytes": peak, "growth_bytes": peak - loaded,
               "compared": result["compared"], "drifted": len(result["drifted"])})


def _measure(rows: int, columns: int, reference_rows: int, repeats: int) -> dict:
    context = multiprocessing.get_context("spawn")
    runs = []
    for _ in range(repeats):
        queue = context.Queue()
        process = context.Process(target=_drift_once, args=(rows, columns, reference_rows, queue))
        process.start()
        runs.append(queue.get(timeout=900))
        process.join()
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]} | {"runs": runs}


def drift(args) -> None:
    from ml.monitoring.config import load_config

    for reference_rows in (args.rows, load_config().reference_rows):
        result = _measure(args.rows, args.columns, reference_rows, args.repeats)
        print(f"drift {args.rows:,} x {args.columns} against {reference_rows:,}: median {result['seconds']:.1f} s, "
              f"peak RSS {result['peak_bytes'] / 2**30:.2f} GiB (+{result['growth_bytes'] / 2**30:.2f} GiB over "
              f"the loaded frames); {result['compared']:.0f} compared, {result['drifted']:.0f} drifted; "
              f"runs: {[round(r['seconds'], 1) for r in result['runs']]}", flush=True)


def pass_(args) -> None:
    from ml.features.definitions import load_definitions
    from ml.features.offline import build_training_set
    from ml.monitoring.config import load_config
    from ml.monitoring.run import monitor
    from ml.monitoring.testing import GeneratedWorld
    from ml.registry.gate import CHAMPION, MODEL_NAME
    from ml.training.run import train_and_register
    from paydata.stack import admin_connect, ensure_up
    from paydata.stack.config import PG_SUPERUSER
    from paydata.stack.postgres import sql_statement
    from tests.staging_layout import create_staging_layout

    stack = ensure_up()
    admin = admin_connect(dbname="postgres", config=stack)
    admin.autocommit = True
    name = f"bench_monitor_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cursor:
        cursor.execute(sql_statement("create_database", database=name, owner=PG_SUPERUSER))
    definitions = load_definitions()
    try:
        conn = admin_connect(dbname=name, config=stack)
        create_staging_layout(conn, lambda dbname: admin_connect(dbname=dbname, config=stack))
        start = dt.datetime(2025, 3, 3, tzinfo=dt.UTC)
        days = args.reference_days
        world = GeneratedWorld(conn, start, days_of_fx=days + 2, payments_per_day=args.payments_per_day)
        started = time.perf_counter()
        world.add_days(0, days + 1, seed=3)
        built = world.build(definitions)
        print(f"generated and built {built['feature_rows']:,} feature rows in {time.perf_counter() - started:.0f} s",
              flush=True)
        reference = build_training_set(conn, definitions, label_as_of=world.day(days + 61),
                                       window_start=world.day(0), window_end=world.day(days))
        with tempfile.TemporaryDirectory() as folder:
            import os

            os.environ["PAYDATA_MLFLOW_ARTIFACTS"] = f"{folder}/artifacts"
            uri = f"sqlite:///{folder}/mlflow.db"
            trained = train_and_register(conn, reference["training_set_id"], tracking_uri=uri)
            if not trained["promoted"]:
                from mlflow.tracking import MlflowClient

                MlflowClient(uri).set_registered_model_alias(MODEL_NAME, CHAMPION, trained["model_version"])
            seconds = []
            for repeat in range(args.repeats):
                started = time.perf_counter()
                summary = monitor(conn, as_of=world.day(days + 1) + dt.timedelta(minutes=repeat),
                                  config=load_config(), tracking_uri=uri)
                seconds.append(time.perf_counter() - started)
        print(f"monitoring pass: {summary['current_rows']:,} current rows against {summary['reference_rows']:,} "
              f"reference rows, decision {summary['decision']}: median {statistics.median(seconds):.1f} s "
              f"(runs {[round(s, 1) for s in seconds]})", flush=True)
    finally:
        conn.close()
        with admin.cursor() as cursor:
            cursor.execute(sql_statement("drop_database_force", database=name))
        admin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.monitor_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("drift", help="one drift report at volume")
    one.add_argument("--rows", type=int, default=100_000)
    one.add_argument("--columns", type=int, default=30)
    one.add_argument("--repeats", type=int, default=3)
    two = commands.add_parser("pass", help="one monitoring pass on generated history")
    two.add_argument("--payments-per-day", type=int, default=10_000)
    two.add_argument("--reference-days", type=int, default=7)
    two.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    drift(args) if args.command == "drift" else pass_(args)


if __name__ == "__main__":
    main()
