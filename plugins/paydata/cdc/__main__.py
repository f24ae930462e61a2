"""Command line: ``python -m paydata.cdc run|status|resnapshot|replay|adopt-slot --source reference|oltp``.

``run`` captures once and prints the report; ``status`` prints the slot's health (lag in bytes and
seconds, WAL retained, WAL status) and exits 2 if the slot is lost or is not the one the engine
has been reading; ``resnapshot`` drops the slot and snapshots every table again (the recovery for
a lost slot); ``replay`` re-applies the dead letters (changes the capture policy could not be
applied to) from the source rows once the cause is fixed; ``adopt-slot`` records the slot's current position in the confirm ledger (for a
slot that predates the ledger; only when it is known to be the slot the sinks were fed from).
Exit codes: 0 ok, 1 error, 2 slot lost.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from paydata.cdc.health import SlotLostError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paydata.cdc", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "status", "resnapshot", "replay", "adopt-slot"])
    from paydata.settings import cdc_sources

    parser.add_argument("--source", required=True, choices=cdc_sources(), help="a manifest in include/cdc")
    parser.add_argument("--max-batches", type=int, default=None, help="run only: batches before stopping")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "status":
            from paydata.cdc.health import source_health

            result = source_health(args.source).as_dict()
        else:
            from paydata.cdc.engine import engine_for_source

            engine = engine_for_source(args.source)
            if args.command == "run":
                result = engine.run(args.max_batches)
            elif args.command == "adopt-slot":
                result = engine.adopt_slot()
            elif args.command == "replay":
                result = engine.replay()
            else:
                result = engine.resnapshot()
    except SlotLostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
