"""``python -m paydata.backup {backup,list,restore,drill,expire}`` (load the stack's env file first
or set the connections, ``PAYDATA_BACKUP_DIR`` and ``PAYDATA_BACKUP_KEK_FILE``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from paydata.backup import catalog
from paydata.backup.run import DATABASES, restore, restore_drill, take_backup


def main(argv: list[str] | None = None) -> int:
    from paydata import settings

    parser = argparse.ArgumentParser(prog="python -m paydata.backup", description=__doc__)
    parser.add_argument("--dir", help="backup folder (default: $PAYDATA_BACKUP_DIR or <stack>/backups)")
    commands = parser.add_subparsers(dest="command", required=True)
    take = commands.add_parser("backup", help="take an encrypted backup of every database and Mongo")
    take.add_argument("--id", help="backup id (default: now, e.g. 20260301T020000Z)")
    take.add_argument("--db", nargs="*", default=list(DATABASES), choices=DATABASES)
    take.add_argument("--no-mongo", action="store_true")
    take.add_argument("--no-checksums", action="store_true", help="skip the per-table content checksums (row counts are kept)")
    commands.add_parser("list", help="backups, sizes, expiry and the last drill")
    back = commands.add_parser("restore", help="restore a backup (default: latest) into databases")
    back.add_argument("--id")
    back.add_argument("--into", nargs="*", default=[], metavar="ARTIFACT=DATABASE",
                      help="targets (default: the restore_drill_* scratch databases)")
    back.add_argument("--keep", action="store_true", help="keep the restored data (default: empty afterwards)")
    drill = commands.add_parser("drill", help="restore drill of the latest backup")
    drill.add_argument("--id")
    commands.add_parser("expire", help="delete backups past their expiry")
    args = parser.parse_args(argv)
    settings.load_env_file(missing_ok=True)
    root = catalog.backup_root() if not args.dir else __import__("pathlib").Path(args.dir)
    now = dt.datetime.now(dt.UTC)
    try:
        if args.command == "backup":
            manifest = take_backup(root, args.id or catalog.backup_id_for(now), databases=args.db,
                                   mongo=not args.no_mongo, checksums=not args.no_checksums)
            print(f"backup {manifest['backup_id']}: {manifest['bytes']:,} bytes in {manifest['seconds']}s, "
                  f"expires {manifest['expires_at']}")
        elif args.command == "list":
            for manifest in catalog.list_backups(root):
                drill_result = catalog.read_drill(root, manifest["backup_id"])
                drilled = "not drilled" if drill_result is None else ("drill ok" if drill_result["ok"] else "DRILL FAILED")
                print(f"{manifest['backup_id']}  {manifest['bytes']:>14,} bytes  expires {manifest['expires_at']}  "
                      f"{drilled}")
        elif args.command == "restore":
            targets = dict(item.split("=", 1) for item in args.into)
            print(json.dumps(restore(root, args.id, targets=targets, keep=args.keep), indent=2))
        elif args.command == "drill":
            result = restore_drill(root, args.id)
            print(json.dumps(result.as_dict(), indent=2))
            return 0 if result.ok else 1
        else:
            print(f"expired: {', '.join(catalog.expire(root, now)) or 'none'}")
    except (catalog.BackupNotFound, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
