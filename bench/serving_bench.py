"""Fraud scorer vs `mlflow models serve`: open-loop latency at fixed rates, peak throughput, memory.

    .venv/bin/python -m bench serving_bench [--rates 100 200] [--seconds 20] [--runs 3]

Prepares generated history (three weeks, 9,000 payments), a registered champion and the online
documents in throwaway databases, then per run:

* starts the scorer (``python -m ml.serving``, one uvicorn worker, threads pinned to one) and
  ``mlflow models serve --env-manager local -w 1`` on the same model version;
* sends open-loop load at each rate for ``--seconds`` (requests leave at fixed times whatever the
  answers do; latency counts from the scheduled send, so queueing shows; beside it the scorer's
  own handler and feature-lookup times from its ``Server-Timing`` header, and how late the client
  sent): the scorer gets
  ``/v1/score`` with the online feature lookup, mlflow gets ``/invocations`` with the model's
  inputs already computed (``dataframe_split``, no lookup);
* measures peak throughput closed-loop (16 concurrent callers, 10 s) and the RSS of each server's
  process tree after the load;
* swap phase (scorer; ``--no-swap`` skips it): 40 s of open loop at the highest rate while the
  ``champion`` alias moves to the other of two registered versions 10 s in; reports when the new
  version first answers, errors, and the p99 from the move until 2 s after that first answer
  against the p99 before the move.

The charges' sessions are copied into the Mongo ``sessions`` collection with the landing ingest's
index, so the lookup reads both collections as in production. Also the in-process floors: one
``predict_proba`` on a one-row DataFrame, the unwrapped model on the same row as an array, and the
scorer's whole path (lookup, inputs, model, reasons) without HTTP. Prints a Markdown table of the medians over runs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEAK_CONCURRENCY = 16
PEAK_SECONDS = 10
SWAP_SECONDS = 40  # the swap phase: open loop this long, the champion alias moves SWAP_AT in
SWAP_AT = 10
SWAP_WINDOW_AFTER = 2  # the swap window ends this long after the first answer by the new version


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tree_rss(pid: int) -> int:
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready (exit code {process.poll()})")


async def open_loop(url: str, bodies: list, headers: dict, rate: float, seconds: float, *,
                    answers: list | None = None, action: tuple[float, Callable[[], None]] | None = None) -> dict:
    """Requests leave at ``start + i / rate`` whatever the answers do; latency counts from that due
    time. One dispatcher creates each request's task when it is due (thousands of sleeping tasks
    created up front stalled the client itself at the start of a phase); how late the client sent
    (``send_lag``) is reported beside the latencies, so a tail the client made shows as such.
    ``answers`` collects ``(due offset, latency, model version, handler seconds)`` per answered request; ``action``
    ``(offset, call)`` runs ``call`` in a thread at that offset (the alias move of the swap phase)."""
    import httpx

    latencies: list[float] = []
    send_lags: list[float] = []
    handler: dict[str, list[float]] = {"lookup": [], "total": []}  # the scorer's Server-Timing, seconds
    errors = 0
    count = int(rate * seconds)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(headers=headers, timeout=10, limits=limits) as client:

        async def one(index: int, due: float) -> None:
            nonlocal errors
            send_lags.append(time.perf_counter() - due)
            try:
                response = await client.post(url, json=bodies[index % len(bodies)])
                if response.status_code != 200:
                    errors += 1
                    return
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append(time.perf_counter() - due)
            timing = server_timing(response.headers.get("server-timing"))
            for name, milliseconds in timing.items():
                handler.setdefault(name, []).append(milliseconds / 1000)
            if answers is not None:
                answers.append((due - start, latencies[-1], response.json()["model_version"],
                                timing.get("total", float("nan")) / 1000))

        tasks = []
        start = time.perf_counter() + 0.1
        if action is not None:
            offset, call = action
            acted = asyncio.get_running_loop().run_in_executor(
                None, lambda: (time.sleep(max(0.0, start + offset - time.perf_counter())), call()))
        for index in range(count):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        if action is not None:
            await acted
    for values in (latencies, send_lags, *handler.values()):
        values.sort()
    return {"p50_ms": percentile_ms(latencies, 0.50), "p99_ms": percentile_ms(latencies, 0.99),
            "errors": errors, "sent": count, "achieved_rps": len(latencies) / elapsed,
            "send_lag_p99_ms": percentile_ms(send_lags, 0.99), "send_lag_max_ms": percentile_ms(send_lags, 1.0),
            "handler_p99_ms": percentile_ms(handler["total"], 0.99),
            "lookup_p99_ms": percentile_ms(handler["lookup"], 0.99),
            "lookup_max_ms": percentile_ms(handler["lookup"], 1.0)}


def percentile_ms(ascending: list[float], q: float) -> float:
    """The ``q`` quantile of sorted seconds, in milliseconds (NaN for none)."""
    return 1000 * ascending[min(len(ascending) - 1, int(q * len(ascending)))] if ascending else float("nan")


def server_timing(header: str | None) -> dict[str, float]:
    """``lookup;dur=1.20, total;dur=2.31`` -> ``{"lookup": 1.2, "total": 2.31}`` (milliseconds)."""
    timings = {}
    for part in (header or "").split(","):
        name, _, duration = part.strip().partition(";dur=")
        if duration:
            timings[name] = float(duration)
    return timings


async def closed_loop(url: str, bodies: list, headers: dict) -> dict:
    import httpx

    done = errors = 0
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:
        stop = time.perf_counter() + PEAK_SECONDS

        async def caller(offset: int) -> None:
            nonlocal done, errors
            index = offset
            while time.perf_counter() < stop:
                try:
                    response = await client.post(url, json=bodies[index % len(bodies)])
                    done += response.status_code == 200
                    errors += response.status_code != 200
                except httpx.HTTPError:
                    errors += 1
                index += PEAK_CONCURRENCY

        started = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(PEAK_CONCURRENCY)))
        return {"rps": done / (time.perf_counter() - started), "errors": errors}


def settled_client() -> None:
    """Collect the client's garbage and freeze what survives (the prepared world, earlier phases'
    leftovers) so a collection during a timed phase walks only that phase's objects."""
    gc.collect()
    gc.freeze()


def measure(url: str, bodies: list, headers: dict, pid: int, rates: list[float], seconds: float) -> dict:
    asyncio.run(open_loop(url, bodies, headers, 50, 2))  # warm-up: connections, lazy imports
    result = {}
    for rate in rates:
        settled_client()
        result[f"rate_{int(rate)}"] = asyncio.run(open_loop(url, bodies, headers, rate, seconds))
    settled_client()
    peak = asyncio.run(closed_loop(url, bodies, headers))
    result["peak_rps"], result["peak_errors"] = peak["rps"], peak["errors"]
    result["rss_mb"] = tree_rss(pid) / 2**20
    return result


def swap_phase(url: str, bodies: list, headers: dict, rate: float, move: Callable[[], str]) -> dict:
    """Open loop at ``rate`` while the champion alias moves (``move`` moves it, returns the new
    version): seconds until the new version answers, and the p99 of the requests due from the move
    to ``SWAP_WINDOW_AFTER`` s after that first answer against the p99 of those due before it."""
    answers: list[tuple[float, float, str, float]] = []
    moved: dict[str, str] = {}
    settled_client()
    result = asyncio.run(open_loop(url, bodies, headers, rate, SWAP_SECONDS, answers=answers,
                                   action=(SWAP_AT, lambda: moved.setdefault("version", move()))))
    new_version = moved["version"]
    first_new = min((due for due, _, version, _ in answers if version == new_version), default=float("inf"))
    last_old = max((due for due, _, version, _ in answers if version != new_version), default=0.0)

    def in_window(due: float) -> bool:
        return SWAP_AT <= due <= first_new + SWAP_WINDOW_AFTER

    steady = sorted(latency for due, latency, _, _ in answers if due < SWAP_AT)
    window = sorted(latency for due, latency, _, _ in answers if in_window(due))
    steady_handler = sorted(handler for due, _, _, handler in answers if due < SWAP_AT)
    window_handler = sorted(handler for due, _, _, handler in answers if in_window(due))

    return {"served_after_s": first_new - SWAP_AT, "old_answers_until_s": last_old - SWAP_AT,
            "steady_p99_ms": percentile_ms(steady, 0.99), "swap_p99_ms": percentile_ms(window, 0.99),
            "swap_max_ms": 1000 * max(window, default=0),
            "steady_handler_p99_ms": percentile_ms(steady_handler, 0.99),
            "swap_handler_p99_ms": percentile_ms(window_handler, 0.99),
            "swap_requests": len(window), "errors": result["errors"], "sent": result["sent"]}


def floors(world: dict, database, bodies: list) -> dict:
    import mlflow
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from ml.serving.feature_store import OnlineFeatureStore
    from ml.serving.metrics import ScorerMetrics
    from ml.serving.model import load_version
    from ml.serving.schemas import ChargeAttributes
    from ml.serving.scorer import Scorer

    client = mlflow.tracking.MlflowClient()
    loaded = load_version(client, "fraud_scoring", world["model_version"], world["definitions"].model_features)
    scorer = Scorer(world["definitions"], OnlineFeatureStore(database, timeout_seconds=1), ScorerMetrics())
    charges = [ChargeAttributes(**body) for body in bodies[:200]]
    inputs = [scorer.inputs([c])[0] for c in charges[:50]]
    frames = [pd.DataFrame(row, columns=list(loaded.features)) for row in inputs]
    timings: dict[str, list[float]] = {"predict_proba_ms": [], "unwrapped_ms": [], "scorer_path_ms": []}
    with threadpool_limits(limits=1):
        for i in range(2000):
            started = time.perf_counter()
            loaded.model.predict_proba(frames[i % len(frames)])
            timings["predict_proba_ms"].append(1000 * (time.perf_counter() - started))
            started = time.perf_counter()
            loaded.probabilities(inputs[i % len(inputs)])
            timings["unwrapped_ms"].append(1000 * (time.perf_counter() - started))
        for i in range(500):
            started = time.perf_counter()
            scorer.score(loaded, [charges[i % len(charges)]])
            timings["scorer_path_ms"].append(1000 * (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in timings.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 200.0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--servers", nargs="+", choices=("scorer", "mlflow"), default=["scorer", "mlflow"],
                        help="which servers to run (both by default; the ratios need both)")
    parser.add_argument("--no-swap", action="store_true",
                        help="skip the scorer's swap phase (the champion alias moved under load)")
    args = parser.parse_args(argv)

    import mlflow

    from ml.serving import auth, sample
    from ml.serving.feature_store import OnlineFeatureStore
    from ml.serving.metrics import ScorerMetrics
    from ml.serving.schemas import ChargeAttributes
    from ml.serving.scorer import Scorer
    from paydata.stack import admin_connect, ensure_up, mongo_root_client
    from paydata.stack.config import PG_SUPERUSER
    from paydata.stack.mongo import user_uri
    from paydata.stack.postgres import sql_statement
    from tests.staging_layout import create_staging_layout

    stack = ensure_up()
    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    name = f"serving_bench_{secrets.token_hex(4)}"
    admin = admin_connect("postgres", config=stack)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql_statement("create_database", database=name, owner=PG_SUPERUSER))
    conn = admin_connect(name, config=stack)
    mongo = mongo_root_client(stack)
    database = mongo[name]
    servers: list[subprocess.Popen] = []
    try:
        create_staging_layout(conn, lambda dbname: admin_connect(dbname, config=stack))
        uri = f"sqlite:///{work / 'mlflow.db'}"
        os.environ["PAYDATA_MLFLOW_ARTIFACTS"] = str(work / "artifacts")
        mlflow.set_tracking_uri(uri)
        started = time.monotonic()
        world = sample.prepare(conn, database, uri)
        print(f"prepared history, model v{world['model_version']} and {world['online']['documents']} online "
              f"documents in {time.monotonic() - started:.0f} s", flush=True)
        # the sessions the charges came from, with the landing ingest's index
        # (include/nosql/collections.json): the lookup reads them as in production
        database["sessions"].insert_many([document for documents in world["sessions"].by_session.values()
                                          for document in documents])
        database["sessions"].create_index([("session_id", 1), ("bucket", 1)], name="sessions_session")
        bodies = sample.charges(conn, 2000)
        scorer = Scorer(world["definitions"], OnlineFeatureStore(database, timeout_seconds=5), ScorerMetrics())
        columns = list(world["definitions"].model_features)
        mlflow_bodies = [{"dataframe_split": {"columns": columns, "data": [
            [None if value != value else value for value in row]  # NaN -> null, as pandas' to_json
            for row in scorer.inputs([ChargeAttributes(**b)])[0].tolist()]}} for b in bodies[:500]]

        key = secrets.token_urlsafe(32)
        (work / "keys").write_text(auth.key_line("bench", key) + "\n")
        root_password = stack.mongo_password_file("paydata_root").read_text().strip()
        # mlflow serve runs `uvicorn` by name: the virtualenv's bin must be on PATH
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "MLFLOW_TRACKING_URI": uri, "PAYDATA_SCORER_API_KEYS_FILE": str(work / "keys"),
               "PAYDATA_SCORER_MONGO_CONN_ID": "paydata_bench_mongo",
               "AIRFLOW_CONN_PAYDATA_BENCH_MONGO": json.dumps({
                   "conn_type": "mongo", "host": "127.0.0.1", "port": stack.mongo_port, "schema": name,
                   "extra": {"uri": user_uri(stack, "paydata_root", root_password)}})}
        results: dict[str, list[dict]] = {"scorer": [], "mlflow": []}
        move = None
        if "scorer" in args.servers and not args.no_swap:
            from mlflow.tracking import MlflowClient

            from ml.registry.gate import CHAMPION, MODEL_NAME
            from ml.training.run import train_and_register

            registry = MlflowClient(uri)
            versions = [str(world["model_version"]),
                        train_and_register(conn, world["training_set_id"], tracking_uri=uri)["model_version"]]

            def move() -> str:
                served = str(registry.get_model_version_by_alias(MODEL_NAME, CHAMPION).version)
                target = next(version for version in versions if version != served)
                registry.set_registered_model_alias(MODEL_NAME, CHAMPION, target)
                return target
        print("load average (1 / 5 / 15 min) before the runs: "
              + " / ".join(f"{value:.2f}" for value in os.getloadavg()), flush=True)
        for run in range(args.runs):
            if "scorer" in args.servers:
                measure_scorer(env, key, bodies, args, results, servers, move)
            if "mlflow" in args.servers:
                measure_mlflow(env, work, run, world, mlflow_bodies, args, results, servers)
            print(f"run {run + 1}: {json.dumps(results, default=float)[:2000]}", flush=True)
        floor = floors(world, database, bodies)
        report(results, floor, args)
    finally:
        for process in servers:
            if process.poll() is None:
                process.kill()
        conn.close()
        mongo.drop_database(name)
        mongo.close()
        with admin.cursor() as cursor:
            cursor.execute(sql_statement("drop_database_force", database=name))
        admin.close()
    return 0


def measure_scorer(env: dict, key: str, bodies: list, args, results: dict, servers: list,
                   move: Callable[[], str] | None) -> None:
    port = free_port()
    scorer_process = subprocess.Popen([sys.executable, "-m", "ml.serving", "--port", str(port),
                                       "--log-level", "warning"], env=env, cwd=REPO)
    servers.append(scorer_process)
    wait_ready(f"http://127.0.0.1:{port}/readyz", scorer_process)
    results["scorer"].append(measure(f"http://127.0.0.1:{port}/v1/score", bodies, {"X-API-Key": key},
                                     scorer_process.pid, args.rates, args.seconds))
    if move is not None:
        results["scorer"][-1]["swap"] = swap_phase(f"http://127.0.0.1:{port}/v1/score", bodies, {"X-API-Key": key},
                                                   max(args.rates), move)
    scorer_process.terminate()
    scorer_process.wait(timeout=30)


def measure_mlflow(env: dict, work: Path, run: int, world: dict, mlflow_bodies: list, args, results: dict,
                   servers: list) -> None:
    port = free_port()
    log = (work / f"mlflow-serve-{run}.log").open("w")
    mlflow_process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
         f"models:/fraud_scoring/{world['model_version']}", "--env-manager", "local", "-w", "1",
         "-h", "127.0.0.1", "-p", str(port)], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    servers.append(mlflow_process)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", mlflow_process)
    except RuntimeError:
        print((work / f"mlflow-serve-{run}.log").read_text()[-3000:], file=sys.stderr)
        raise
    results["mlflow"].append(measure(f"http://127.0.0.1:{port}/invocations", mlflow_bodies, {},
                                     mlflow_process.pid, args.rates, args.seconds))
    os.killpg(mlflow_process.pid, 15)
    mlflow_process.wait(timeout=30)


def shown(milliseconds: float) -> str:
    return "n/a" if milliseconds != milliseconds else f"{milliseconds:.1f}"  # NaN: no Server-Timing


def report(results: dict, floor: dict, args) -> None:
    def median(target: str, *path) -> float:
        values = []
        for run in results[target]:
            value = run
            for key in path:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\n{dt.date.today()}: medians of {args.runs} runs, {args.seconds:.0f} s per rate, one worker each; "
          f"load average (1 / 5 / 15 min) at the end {load}\n")
    print("| server | rate (req/s) | p50 (ms) | p99 (ms) | p99 per run (ms) | handler p99 (ms) "
          "| lookup p99 / max (ms) | client send lag p99 / max (ms) | errors | peak (req/s) | RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for target, label in (("scorer", "scorer `/v1/score` (with feature lookup)"),
                          ("mlflow", "`mlflow models serve` (features given)")):
        if not results[target]:
            continue
        for rate in args.rates:
            key = f"rate_{int(rate)}"
            per_run = " / ".join(f"{r[key]['p99_ms']:.1f}" for r in results[target])
            errors = sum(r[key]["errors"] for r in results[target])
            peak_errors = sum(r["peak_errors"] for r in results[target])
            print(f"| {label} | {int(rate)} | {median(target, key, 'p50_ms'):.1f} | {median(target, key, 'p99_ms'):.1f} "
                  f"| {per_run} | {shown(median(target, key, 'handler_p99_ms'))} "
                  f"| {shown(median(target, key, 'lookup_p99_ms'))} / "
                  f"{shown(max(r[key]['lookup_max_ms'] for r in results[target]))} "
                  f"| {median(target, key, 'send_lag_p99_ms'):.1f} / "
                  f"{max(r[key]['send_lag_max_ms'] for r in results[target]):.1f} "
                  f"| {errors} | {median(target, 'peak_rps'):.0f} ({peak_errors} errors) | {median(target, 'rss_mb'):.0f} |")
    swaps = [run["swap"] for run in results["scorer"] if "swap" in run]
    if swaps:
        print(f"\nChampion alias moved {SWAP_AT} s into {SWAP_SECONDS} s of open loop at {int(max(args.rates))} req/s "
              f"(poll interval {os.environ.get('PAYDATA_SCORER_POLL_SECONDS', '10')} s), per run:\n")
        print("| run | new version answers after (s) | old version's last answer (s) | steady p99 (ms) "
              "| p99 during the swap (ms) | ratio | max during the swap (ms) | handler p99 steady / swap (ms) "
              "| requests in the window | errors / sent |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for number, swap in enumerate(swaps, 1):
            print(f"| {number} | {swap['served_after_s']:.1f} | {swap['old_answers_until_s']:.1f} "
                  f"| {swap['steady_p99_ms']:.1f} | {swap['swap_p99_ms']:.1f} "
                  f"| {swap['swap_p99_ms'] / swap['steady_p99_ms']:.2f} | {swap['swap_max_ms']:.1f} "
                  f"| {swap['steady_handler_p99_ms']:.1f} / {swap['swap_handler_p99_ms']:.1f} "
                  f"| {swap['swap_requests']} | {swap['errors']} / {swap['sent']} |")
    print(f"\nIn-process floors (medians): one predict_proba on a one-row DataFrame {floor['predict_proba_ms']:.2f} ms; "
          f"the unwrapped model on the same row (a 1 x n array) {floor['unwrapped_ms']:.2f} ms; "
          f"the scorer's path without HTTP (lookup, inputs, model, reasons) {floor['scorer_path_ms']:.2f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
