"""``python -m paydata.stack up [--only postgres,mongo,airflow,mlflow] | down | status``, and the
scheduled mode: ``python -m paydata.stack airflow up [--port N] | down | status``."""

from __future__ import annotations

import argparse
import sys

from paydata.stack.config import SERVICES, StackConfig, StackError
from paydata.stack.core import HEALTHY_STATES, ensure_up, shutdown, status

COLUMNS = ("service", "endpoint", "pid", "health", "notes")


def format_table(rows: list[dict]) -> str:
    cells = [[str(row.get(column) if row.get(column) is not None else "-") for column in COLUMNS] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(COLUMNS)]
    lines = ["  ".join(column.upper().ljust(widths[i]) for i, column in enumerate(COLUMNS)).rstrip()]
    lines += ["  ".join(value.ljust(widths[i]) for i, value in enumerate(line)).rstrip() for line in cells]
    return "\n".join(lines)


def apply_schema_migrations() -> dict[str, list[str]]:
    """Bring every managed database to the latest schema (a no-op when already current); data keys
    still in a source database move to the key store on the way (``paydata.migrations.apply_all``)."""
    from paydata.keystore.store import KeyStoreError
    from paydata.migrations import MigrationError, apply_all

    try:
        return apply_all()
    except (MigrationError, KeyStoreError) as exc:
        raise StackError(f"schema migration failed: {exc}") from exc


def airflow_command(config: StackConfig, action: str, port: int | None) -> int:
    from paydata.stack import airflow_services

    if action == "up":
        ensure_up(config, export_env=True)
        apply_schema_migrations()
        info = airflow_services.start(config, port, progress=lambda line: print(line, flush=True))
        print(airflow_services.format_description(info))
        print("stop with: python -m paydata.stack airflow down   (or make airflow-down)")
        return 0
    if action == "down":
        stopped = airflow_services.stop(config)
        print(f"stopped: {', '.join(stopped)}" if stopped else "no Airflow component was running")
        return 0
    info = airflow_services.describe(config)
    print(airflow_services.format_description(info))
    return 0 if not info["stopped"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paydata.stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start services and write the env file (idempotent)")
    up.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(SERVICES)}")
    commands.add_parser("down", help="stop Postgres and SecantusDB, keeping their data")
    commands.add_parser("status", help="table of services; exit 1 unless all are healthy")
    scheduled = commands.add_parser("airflow", help="scheduled mode: api-server, scheduler, dag-processor, triggerer")
    scheduled.add_argument("action", choices=("up", "down", "status"))
    scheduled.add_argument("--port", type=int, default=None,
                           help="API server port on 127.0.0.1 (default PAYDATA_AIRFLOW_PORT or 8080)")
    args = parser.parse_args(argv)
    try:
        config = StackConfig.default()
        if args.command == "airflow":
            return airflow_command(config, args.action, args.port)
        if args.command == "up":
            ensure_up(config, services=args.only, export_env=True)
            if args.only is None or "postgres" in args.only:
                for database, versions in apply_schema_migrations().items():
                    if versions:
                        print(f"{database}: applied migrations {', '.join(versions)}")
            rows = status(config)
            print(format_table(rows))
            print(f"\nenv file: {config.env_file}  (load with: set -a; . {config.env_file}; set +a)")
            return 0
        if args.command == "down":
            stopped = shutdown(config)
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
            return 0
        rows = status(config)
        print(format_table(rows))
        return 0 if all(row["health"] in HEALTHY_STATES for row in rows) else 1
    except StackError as exc:
        print(f"paydata.stack {args.command}: {exc}", file=sys.stderr)
        return 1


# Airflow's plugin loader imports every file under plugins/ with __name__ set to the file stem, so a bare
# __name__ check would run the CLI inside Airflow; runpy (python -m) also sets the package.
if __name__ == "__main__" and __package__ == "paydata.stack":
    sys.exit(main())
