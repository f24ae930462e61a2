"""``python -m paydata.oltp erase|audit-verify``: a data subject's erasure; the audit chain's check.

``erase --customer ID [--reason CODE]`` runs :func:`paydata.oltp.erasure.erase_customer` as the
application role (connection ``paydata_oltp_app``) with the downstream hooks the platform has: the
customer's sessions, events, telemetry samples and feedback out of MongoDB (as the ingest writer,
connection ``paydata_mongo_ingest``) and out of the landing files still retained. Prints the
result as JSON. Rerunning it is harmless; a hook that fails rolls the erasure back.

``audit-verify [--db oltp|reference|all] [--anchor POSITION:SHA256]`` recomputes the audit logs'
hash chains as the auditor (connections ``paydata_oltp_auditor``, ``paydata_reference_auditor``),
prints the reports as JSON (one object per database) and exits 1 when a link is broken in any,
naming the first one (:func:`paydata.oltp.audit.verify_chain`). ``--anchor`` needs one database.
"""

from __future__ import annotations

import argparse
import dataclasses
import json


def _erase(args) -> int:
    from paydata import settings
    from paydata.generator.landing import default_landing_dir
    from paydata.nosql.hygiene import erasure_hook
    from paydata.oltp.erasure import erase_customer

    mongo = settings.mongo_database(settings.MONGO_INGEST_CONN_ID)
    conn = settings.pg_connect(settings.OLTP_APP_CONN_ID)
    try:
        result = erase_customer(conn, args.customer, args.reason,
                                hooks={"nosql": erasure_hook(mongo, default_landing_dir())})
    finally:
        conn.close()
        mongo.client.close()
    print(json.dumps(dataclasses.asdict(result), default=str, indent=2))
    return 0


AUDITOR_CONNECTIONS = {"oltp": "paydata_oltp_auditor", "reference": "paydata_reference_auditor"}


def _audit_verify(args) -> int:
    from paydata import settings
    from paydata.oltp.audit import parse_anchor, verify_chain
    from paydata.oltp.errors import InvalidRequest

    databases = list(AUDITOR_CONNECTIONS) if args.db == "all" else [args.db]
    anchor = parse_anchor(args.anchor) if args.anchor else None
    if anchor and len(databases) != 1:
        raise InvalidRequest("--anchor names a head of one chain: pass --db oltp or --db reference with it")
    reports = {}
    for database in databases:
        conn = settings.pg_connect(AUDITOR_CONNECTIONS[database])
        try:
            reports[database] = verify_chain(conn, anchor=anchor, database=database)
        finally:
            conn.close()
    print(json.dumps({database: report.as_dict() for database, report in reports.items()}, indent=2))
    return 0 if all(report.ok for report in reports.values()) else 1


def main(argv: list[str] | None = None) -> int:
    from paydata import settings
    from paydata.oltp.erasure import ERASURE_REASONS
    from paydata.oltp.errors import InvalidRequest

    parser = argparse.ArgumentParser(prog="python -m paydata.oltp", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    erase = commands.add_parser("erase", help="erase a data subject")
    erase.add_argument("--customer", type=int, required=True, help="OLTP customer_id")
    erase.add_argument("--reason", choices=ERASURE_REASONS, default="data_subject_request")
    verify = commands.add_parser("audit-verify", help="recompute the audit log's hash chain")
    verify.add_argument("--db", choices=("oltp", "reference", "all"), default="all",
                        help="which audit log to verify (default: both)")
    verify.add_argument("--anchor", help="POSITION:SHA256 of a head recorded earlier, outside the database")
    args = parser.parse_args(argv)
    settings.load_env_file(missing_ok=True)
    try:
        return _erase(args) if args.command == "erase" else _audit_verify(args)
    except InvalidRequest as exc:
        parser.error(str(exc))
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
