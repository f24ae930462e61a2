"""Command line: ``python -m paydata.cdc run|status|resnapshot --source reference|oltp``.

``run`` captures once and prints the report; ``status`` prints the slot's health (lag, WAL status)
and exits 2 if the slot is lost; ``resnapshot`` drops the slot and snapshots every table again
(the recovery for a lost slot). Exit codes: 0 ok, 1 error, 2 slot lost.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from paydata.cdc.health import SlotLostError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paydata.cdc", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "status", "resnapshot"])
    parser.add_argument("--source", required=True, choices=["reference", "oltp"])
    parser.add_argument("--max-batches", type=int, default=None, help="run only: batches before stopping")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "status":
            from paydata import settings
            from paydata.cdc.health import check_slot
            from paydata.cdc.manifest import load_manifest

            conn = settings.pg_connect(f"paydata_cdc_{args.source}")
            try:
                result = check_slot(conn, load_manifest(args.source)).as_dict()
            finally:
                conn.close()
        else:
            from paydata.cdc.engine import engine_for_source

            engine = engine_for_source(args.source)
            result = engine.run(args.max_batches) if args.command == "run" else engine.resnapshot()
    except SlotLostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
