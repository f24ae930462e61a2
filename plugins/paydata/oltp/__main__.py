"""``python -m paydata.oltp erase --customer ID [--reason CODE]``: a data subject's erasure.

Runs :func:`paydata.oltp.erasure.erase_customer` with the downstream hooks the platform has: the
customer's sessions, events, telemetry samples and feedback out of MongoDB (as the ingest writer,
connection ``paydata_mongo_ingest``) and out of the landing files still retained. Prints the
result as JSON. Rerunning it is harmless; a hook that fails rolls the erasure back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json


def main(argv: list[str] | None = None) -> int:
    from paydata import settings
    from paydata.generator.landing import default_landing_dir
    from paydata.nosql.hygiene import erasure_hook
    from paydata.oltp.erasure import ERASURE_REASONS, erase_customer

    parser = argparse.ArgumentParser(prog="python -m paydata.oltp", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("erase",))
    parser.add_argument("--customer", type=int, required=True, help="OLTP customer_id")
    parser.add_argument("--reason", choices=ERASURE_REASONS, default="data_subject_request")
    args = parser.parse_args(argv)
    settings.load_env_file(missing_ok=True)
    mongo = settings.mongo_database(settings.MONGO_INGEST_CONN_ID)
    conn = settings.pg_connect(settings.OLTP_CONN_ID)
    try:
        result = erase_customer(conn, args.customer, args.reason,
                                hooks={"nosql": erasure_hook(mongo, default_landing_dir())})
    finally:
        conn.close()
        mongo.client.close()
    print(json.dumps(dataclasses.asdict(result), default=str, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
