"""``python -m paydata.warehouse build|rebuild|freshness``."""

from __future__ import annotations

import argparse
import json
import sys

from paydata import settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paydata.warehouse", description=__doc__)
    parser.add_argument(
        "command", choices=["build", "rebuild", "freshness"],
        help="build: incremental from the last watermark; rebuild: from scratch; freshness: show lag",
    )
    args = parser.parse_args(argv)

    from paydata.warehouse import BuildInputError, QualityCheckError, StagingBehindError, build, freshness

    conn = settings.pg_connect(settings.WAREHOUSE_CONN_ID)
    try:
        if args.command == "freshness":
            for row in freshness(conn):
                print(f"{row['table_name']:<26} lsn {row['source_lsn']:>14}  commit {row['source_commit_at']}  "
                      f"loaded {row['loaded_at']}  lag {row['lag']}")
            return 0
        try:
            report = build(conn, full_rebuild=args.command == "rebuild")
        except (BuildInputError, QualityCheckError, StagingBehindError) as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(json.dumps(report, indent=2, default=str))
        return 0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
