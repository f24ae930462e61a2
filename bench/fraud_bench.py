"""Fraud ML benchmarks: model quality over several seeds, and the cost of features and training.

    python -m bench.fraud_bench quality --seeds 1 2 3 --payments 40000
    python -m bench.fraud_bench volume --charges 1000000 --small 100000 --changes 10000
    python -m bench.fraud_bench volume --charges 1000000 --repeats 1 --offline-only

Both generate history with the workload generator's fraud process (unchanged) straight into a
throwaway warehouse's staging layout (ml.training.synthetic), build the marts, features and labels
with the production code, and drop the database afterwards.

* quality: per seed, 60 days of traffic, labels as known 61 days after the last charge, time-ordered
  split; PR-AUC of the model and of the rules baseline on the newest 15 %, with the fraud rate.
  Session documents are kept in memory (the local wire server needs minutes for 40k sessions).
* volume: the point-in-time feature rebuild of every charge, per full-build formulation
  (--formulations: the bounded join, the window passes, the LATERAL builder for every charge), and
  the point-in-time training set a training run asks for (labels joined to the maintained store's
  rows, then read into a frame), each against one plain aggregate scan of the same fact table in
  the same run (medians of --repeats, interleaved); the offline increment after --changes new
  charges; training time on the labelled set; and (unless --offline-only) the incremental online
  refresh after --changes new charges on a --small and a full-size history.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
import uuid

from ml.features.definitions import load_definitions
from ml.features.offline import (
    FULL_BUILD_FORMULATIONS,
    build_features,
    build_training_set,
    load_training_frame,
)
from ml.training.data import time_split
from ml.training.run import evaluate
from ml.training.synthetic import InMemorySessions, SyntheticHistory
from paydata.generator.config import TrafficConfig
from paydata.stack import admin_connect, ensure_up, mongo_root_client
from paydata.stack.config import PG_SUPERUSER
from paydata.stack.postgres import sql_statement
from paydata.warehouse import build
from tests.staging_layout import create_staging_layout

START = dt.datetime(2025, 9, 1, tzinfo=dt.UTC)
LABEL_AS_OF = START + dt.timedelta(days=121)  # every charge of the 60 days matured (60-day window)
PLAIN_SCAN = "SELECT customer_id, count(*), sum(amount_usd) FROM marts.fct_charge GROUP BY customer_id"


def _database(admin) -> str:
    name = f"bench_fraud_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cursor:
        cursor.execute(sql_statement("create_database", database=name, owner=PG_SUPERUSER))
    return name


def _drop(admin, name: str) -> None:
    with admin.cursor() as cursor:
        cursor.execute(sql_statement("drop_database_force", database=name))


def _history(conn, payments: int, days: int, seed: int, sessions=None, batches: int = 6) -> SyntheticHistory:
    create_staging_layout(conn, admin_connect)
    history = SyntheticHistory(conn, merchants=80, seed=seed)
    history.reference(START.date() - dt.timedelta(days=1), days + 2, seed)
    span = days / batches
    for index in range(batches):
        history.traffic(TrafficConfig(payments=payments // batches, start=START + dt.timedelta(days=span * index),
                                      days=span, seed=seed * 1000 + index), sessions_db=sessions)
    return history


def quality(args) -> None:
    config = ensure_up()
    admin = admin_connect(dbname="postgres", config=config)
    admin.autocommit = True
    definitions = load_definitions()
    rows = []
    for seed in args.seeds:
        name = _database(admin)
        try:
            conn = admin_connect(dbname=name, config=config)
            sessions = InMemorySessions()
            _history(conn, args.payments, args.days, seed, sessions)
            build(conn)
            build_features(conn, definitions, sessions_db=sessions)
            as_of = START + dt.timedelta(days=args.days + 61)
            reference = build_training_set(conn, definitions, label_as_of=as_of)
            frame = load_training_frame(conn, definitions, reference["training_set_id"])
            conn.close()
            result = evaluate(definitions, time_split(frame))
            model, base = result["model_metrics"], result["baseline_metrics"]
            rows.append((seed, reference["row_count"], model["fraud_rate"], model, base))
            print(f"seed {seed}: {reference['row_count']} labelled, test fraud rate {model['fraud_rate']:.4f}; "
                  f"PR-AUC model {model['pr_auc']:.4f} baseline {base['pr_auc']:.4f} "
                  f"(x{model['pr_auc'] / base['pr_auc']:.2f}); ROC-AUC {model['roc_auc']:.4f} / {base['roc_auc']:.4f}; "
                  f"recall@1%FPR {model['recall_at_1pct_fpr']:.3f} / {base['recall_at_1pct_fpr']:.3f}; "
                  f"precision top 0.5% {model['precision_top_0_5pct']:.3f} / {base['precision_top_0_5pct']:.3f}; "
                  f"Brier {model['brier']:.5f} / {base['brier']:.5f}; cost/1000 {model['expected_cost_per_1000']:.1f}"
                  f" / {base['expected_cost_per_1000']:.1f}", flush=True)
        finally:
            _drop(admin, name)
    ratios = [model["pr_auc"] / base["pr_auc"] for _, _, _, model, base in rows]
    print(f"median PR-AUC ratio model/baseline over seeds {args.seeds}: {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f})")


def _timed(function):
    started = time.monotonic()
    result = function()
    return time.monotonic() - started, result


def _plain_scan(conn) -> float:
    with conn.cursor() as cursor:
        seconds, _ = _timed(lambda: (cursor.execute(PLAIN_SCAN), cursor.fetchall()))
    conn.rollback()
    return seconds


def _training_sets(conn, definitions, repeats: int):
    """What a training run asks for: the labelled charges, labels as of a time, joined to the
    point-in-time rows the store keeps current (a new version each repeat: a later label time),
    and reading that set into a frame; each between two plain scans. Returns the last frame."""
    built, read, scans = [], [], []
    frame = reference = None
    for repeat in range(repeats):
        scans.append(_plain_scan(conn))
        seconds, reference = _timed(lambda r=repeat: build_training_set(
            conn, definitions, label_as_of=LABEL_AS_OF + dt.timedelta(minutes=r)))
        built.append(seconds)
        seconds, frame = _timed(lambda s=reference["training_set_id"]: load_training_frame(conn, definitions, s))
        read.append(seconds)
        scans.append(_plain_scan(conn))
    scan = statistics.median(scans)
    print(f"point-in-time training set of {reference['row_count']:,} labelled charges from the maintained store: "
          f"built (labels + examples) median {statistics.median(built):.2f} s (runs "
          f"{', '.join(f'{t:.2f}' for t in built)}), read into a frame median {statistics.median(read):.2f} s; "
          f"plain scan median {scan:.2f} s of {len(scans)}; ratios {statistics.median(built) / scan:.1f}x built, "
          f"{(statistics.median(built) + statistics.median(read)) / scan:.1f}x built and read", flush=True)
    return frame


def _increment(conn, definitions, history: SyntheticHistory, changes: int) -> None:
    """Keeping the store current: ``changes`` new charges (one more day), marts and features built
    incrementally as the warehouse build and ``fraud_features`` do after a CDC run."""
    history.traffic(TrafficConfig(payments=changes, start=START + dt.timedelta(days=60), days=1, seed=99))
    marts_s, _ = _timed(lambda: build(conn))
    features_s, report = _timed(lambda: build_features(conn, definitions))
    print(f"after {changes:,} new charges: marts increment {marts_s:.1f} s, offline feature increment "
          f"{features_s:.2f} s ({report['feature_rows']:,} rows)", flush=True)


def _online_after_changes(config, admin, charges: int, changes: int, definitions) -> dict:
    name = _database(admin)
    try:
        conn = admin_connect(dbname=name, config=config)
        history = _history(conn, charges, 60, 5)
        build(conn)
        build_features(conn, definitions)
        # a throwaway database: only the root user may create one (the consumer users own only theirs)
        database = mongo_root_client(config)[name]
        from ml.features.online import refresh_online

        full_s, full = _timed(lambda: refresh_online(conn, definitions, database, full=True))
        history.traffic(TrafficConfig(payments=changes, start=START + dt.timedelta(days=60), days=1, seed=99))
        build(conn)
        features_s, _ = _timed(lambda: build_features(conn, definitions))
        online_s, report = _timed(lambda: refresh_online(conn, definitions, database))
        database.client.drop_database(name)
        conn.close()
        return {"history": charges, "full_refresh_s": full_s, "full_documents": full["documents"],
                "offline_increment_s": features_s, "online_increment_s": online_s,
                "online_documents": report["documents"]}
    finally:
        _drop(admin, name)


def volume(args) -> None:
    from ml.training.model import fit_model

    config = ensure_up()
    admin = admin_connect(dbname="postgres", config=config)
    admin.autocommit = True
    definitions = load_definitions()
    name = _database(admin)
    try:
        conn = admin_connect(dbname=name, config=config)
        seconds, history = _timed(lambda: _history(conn, args.charges, 60, 3, batches=max(6, args.charges // 100000)))
        print(f"generated {args.charges:,} payments in {seconds:.0f} s", flush=True)
        seconds, _ = _timed(lambda: build(conn))
        print(f"marts built in {seconds:.0f} s", flush=True)
        seconds, report = _timed(lambda: build_features(conn, definitions))
        print(f"first feature build (ledgers + features) {seconds:.1f} s: {report}", flush=True)
        # formulations interleaved, each rebuild between two plain scans, so all share the load
        rebuilds: dict[str, list[float]] = {formulation: [] for formulation in args.formulations}
        scans, paths = [], {}
        for _ in range(args.repeats):
            for formulation in args.formulations:
                scans.append(_plain_scan(conn))
                seconds, paths[formulation] = _timed(
                    lambda f=formulation: build_features(conn, definitions, rebuild=True, formulation=f))
                rebuilds[formulation].append(seconds)
                scans.append(_plain_scan(conn))
        scan = statistics.median(scans)
        print(f"plain aggregate scan of marts.fct_charge: median {scan:.2f} s of {len(scans)}", flush=True)
        for formulation, times in rebuilds.items():
            rebuild = statistics.median(times)
            print(f"point-in-time rebuild of {report['feature_rows']:,} charges, {formulation}: median {rebuild:.1f} s "
                  f"(runs {', '.join(f'{t:.1f}' for t in times)}; set-based rows "
                  f"{paths[formulation]['set_based_rows']:,}, LATERAL rows {paths[formulation]['lateral_rows']:,}); "
                  f"ratio to the scan {rebuild / scan:.1f}x", flush=True)
        frame = _training_sets(conn, definitions, args.repeats)
        _increment(conn, definitions, history, args.changes)
        parts = time_split(frame)
        from ml.training.data import model_matrix

        inputs = {k: model_matrix(v, definitions) for k, v in parts.items()}
        seconds, model = _timed(lambda: fit_model(inputs["train"], parts["train"]["is_fraud"],
                                                  inputs["validation"], parts["validation"]["is_fraud"]))
        print(f"training on {len(parts['train']):,} rows (+{len(parts['validation']):,} calibration): "
              f"{seconds:.1f} s", flush=True)
        latency = single_row_latency(model, inputs["test"])
        print(f"single-row scoring: {latency}", flush=True)
        conn.close()
    finally:
        _drop(admin, name)
    if args.offline_only:
        return
    for size in (args.small, args.charges):
        print(f"online increment: {_online_after_changes(config, admin, size, args.changes, definitions)}",
              flush=True)


def single_row_latency(model, inputs, rows: int = 300) -> dict:
    """p50/p99 milliseconds of one-row predict_proba, OpenMP pinned to 1 thread and not."""
    from ml.training.model import predict_proba_pinned

    out = {}
    for label, function in (("pinned", lambda x: predict_proba_pinned(model, x)),
                            ("default", lambda x: model.predict_proba(x))):
        times = []
        for index in range(rows):
            row = inputs.iloc[[index % len(inputs)]]
            started = time.perf_counter()
            function(row)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        out[label] = {"p50_ms": round(times[len(times) // 2], 2), "p99_ms": round(times[int(len(times) * 0.99)], 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    q.add_argument("--payments", type=int, default=40000)
    q.add_argument("--days", type=int, default=60)
    v = sub.add_parser("volume")
    v.add_argument("--charges", type=int, default=1_000_000)
    v.add_argument("--small", type=int, default=100_000)
    v.add_argument("--changes", type=int, default=10_000)
    v.add_argument("--repeats", type=int, default=3)
    v.add_argument("--formulations", nargs="+", choices=FULL_BUILD_FORMULATIONS, default=list(FULL_BUILD_FORMULATIONS),
                   help="full-build formulations to time (build_features(rebuild=True, formulation=...))")
    v.add_argument("--offline-only", action="store_true",
                   help="stop after the offline part (features, training, scoring latency): no online refresh")
    args = parser.parse_args()
    quality(args) if args.mode == "quality" else volume(args)


if __name__ == "__main__":
    main()
