"""``python -m paydata.warehouse build|rebuild|freshness|labels``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from paydata import settings


def _aware(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no time zone (e.g. 2026-03-01T00:00:00+00:00)")
    return parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paydata.warehouse", description=__doc__)
    parser.add_argument(
        "command", choices=["build", "rebuild", "freshness", "labels"],
        help="build: incremental from the last watermark; rebuild: from scratch; freshness: show lag; "
             "labels: publish fraud labels as of --as-of",
    )
    parser.add_argument("--as-of", type=_aware, default=None,
                        help="labels: the time labels are known at (default: latest OLTP commit built)")
    parser.add_argument("--maturity-days", type=float, default=None,
                        help="labels: days after a charge before its label matures (default 60)")
    args = parser.parse_args(argv)

    from paydata.warehouse import BuildInputError, QualityCheckError, StagingBehindError, build, freshness
    from paydata.warehouse.labels import LABEL_MATURITY, label_charges
    from paydata.warehouse.schema import MartsNotDefined

    # The loader: no DDL; the definitions are the migrate step's (`python -m paydata.migrations apply`).
    conn = settings.pg_connect(settings.WAREHOUSE_LOADER_CONN_ID)
    try:
        if args.command == "freshness":
            for row in freshness(conn):
                print(f"{row['table_name']:<26} lsn {row['source_lsn']:>14}  commit {row['source_commit_at']}  "
                      f"loaded {row['loaded_at']}  lag {row['lag']}")
            return 0
        if args.command == "labels":
            maturity = LABEL_MATURITY if args.maturity_days is None else dt.timedelta(days=args.maturity_days)
            try:
                print(json.dumps(label_charges(conn, args.as_of, maturity), indent=2))
            except (LookupError, ValueError) as exc:
                print(str(exc), file=sys.stderr)
                return 1
            return 0
        try:
            report = build(conn, full_rebuild=args.command == "rebuild")
        except (BuildInputError, QualityCheckError, StagingBehindError, MartsNotDefined) as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(json.dumps(report, indent=2, default=str))
        return 0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
