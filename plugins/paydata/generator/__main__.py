"""Command line: ``python -m paydata.generator <command>`` (see ``docs/generator.md``).

Commands: ``seed-reference``, ``traffic``, ``merchant-changes``, ``landing`` and ``all``. Bad
arguments exit with status 2 and a message; nothing is written in that case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from paydata.generator.config import GeneratorError, TrafficConfig
from paydata.oltp.reference_sync import sync_reference


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _date(text: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from None
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m paydata.generator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def traffic_args(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--payments", type=_non_negative, required=True)
        sub.add_argument("--seed", type=int, default=42)
        sub.add_argument("--days", type=float, default=1.0)
        sub.add_argument("--start", type=_date, default=_date("2026-01-01"))
        sub.add_argument("--chunk-size", type=int, default=20_000)
        sub.add_argument("--landing-dir", type=Path, default=None)
        sub.add_argument("--no-progress", action="store_true")
        sub.add_argument("--shift", default="none",
                         help="a shifted world for monitoring tests: covariate, new_fraud_pattern, both "
                              "comma-separated, or none (paydata.generator.shift)")

    seed = commands.add_parser("seed-reference", help="currencies, countries, FX, tiers, merchants")
    seed.add_argument("--merchants", type=_non_negative, default=200)
    seed.add_argument("--seed", type=int, default=42)
    seed.add_argument("--fx-start", type=_date, default=_date("2026-01-01"))
    seed.add_argument("--fx-days", type=int, default=90)
    traffic = commands.add_parser("traffic", help="payment traffic into OLTP (COPY)")
    traffic_args(traffic)
    traffic.add_argument("--with-landing", action="store_true", help="also write the landing files")
    changes = commands.add_parser("merchant-changes", help="apply N merchant attribute changes")
    changes.add_argument("--count", type=_non_negative, required=True)
    changes.add_argument("--seed", type=int, default=42)
    landing = commands.add_parser("landing", help="landing JSON-lines files only (no OLTP writes)")
    traffic_args(landing)
    everything = commands.add_parser("all", help="seed-reference, replica sync, traffic and landing")
    traffic_args(everything)
    everything.add_argument("--merchants", type=_non_negative, default=200)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from paydata import settings

    try:
        result = _run(args, settings)
    except GeneratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


def _config(args) -> TrafficConfig:
    from paydata.generator.shift import WorldShift

    return TrafficConfig(payments=args.payments, start=args.start, days=args.days, seed=args.seed,
                         chunk_size=args.chunk_size, shift=WorldShift.parse(args.shift))


def _run(args, settings) -> dict:
    from paydata.generator import landing, loader, reference

    command = args.command
    config = _config(args) if command in ("traffic", "landing", "all") else None
    ref = settings.pg_connect(settings.REFERENCE_CONN_ID)
    try:
        if command == "merchant-changes":
            changes = reference.apply_merchant_changes(ref, args.count, args.seed)
            return {"changes": [change.__dict__ for change in changes]}
        out: dict = {}
        if command in ("seed-reference", "all"):
            out["reference"] = reference.seed_reference(
                ref, merchants=args.merchants, seed=args.seed,
                **({"fx_start": args.fx_start.date(), "fx_days": args.fx_days} if command == "seed-reference"
                   else {"fx_start": config.start.date(), "fx_days": max(1, int(args.days) + 1)}),
            )
        merchants = reference.load_merchant_profiles(ref)
        landing_dir = getattr(args, "landing_dir", None) or landing.default_landing_dir()
        if command == "landing":
            from paydata.generator.traffic import TrafficGenerator

            generator = TrafficGenerator(config, merchants, reference.load_chargeable_currencies(ref))
            out["landing_files"] = [str(p) for p in landing.write_landing(landing_dir, generator)]
            return out
        if command == "seed-reference":
            oltp = settings.pg_connect(settings.OLTP_CONN_ID)
            try:
                out["replicas"] = sync_reference(ref, oltp)
            finally:
                oltp.close()
            return out
        oltp = settings.pg_connect(settings.OLTP_CONN_ID)
        try:
            if command == "all":
                out["replicas"] = sync_reference(ref, oltp)
            write_landing = command == "all" or args.with_landing
            result = loader.load_traffic(oltp, config, merchants, progress=not args.no_progress,
                                         landing_dir=landing_dir if write_landing else None)
            out["traffic"] = result.as_dict()
            out["traffic"]["landing_files"] = len(result.landing_files)
        finally:
            oltp.close()
        return out
    finally:
        ref.close()


if __name__ == "__main__":
    sys.exit(main())
