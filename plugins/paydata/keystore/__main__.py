"""``python -m paydata.keystore {move-legacy-keys,close-window,complete-erasures}``.

* ``move-legacy-keys``: move data keys still held by the OLTP / reference databases into the key
  store (``paydata.migrations apply`` does it too, before the migrations that drop those tables).
* ``close-window``: the platform's part of every pending erasure window (key table rewrite,
  VACUUM of the erasure tables, WAL segment switch and checkpoint).
* ``complete-erasures``: check every pending erasure and record the completed ones.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from paydata import settings
    from paydata.keystore.store import KeyStore, KeyStoreError

    parser = argparse.ArgumentParser(prog="python -m paydata.keystore", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("move-legacy-keys", "close-window", "complete-erasures"))
    args = parser.parse_args(argv)
    settings.load_env_file(missing_ok=True)
    store = KeyStore()
    try:
        if args.command == "move-legacy-keys":
            from paydata.keystore.legacy import LEGACY_SOURCES, move_legacy_keys

            for database in LEGACY_SOURCES:
                conn = settings.pg_connect(settings.POSTGRES_DATABASES[database])
                try:
                    print(json.dumps(move_legacy_keys(conn, database, store).as_dict()))
                finally:
                    conn.close()
            return 0
        from paydata.backup.catalog import backup_root
        from paydata.keystore.window import close_window, complete_erasures

        conn = settings.pg_connect(settings.OLTP_CONN_ID)
        try:
            if args.command == "close-window":
                result = close_window(conn, store)
            else:
                result = complete_erasures(conn, keys=store, backup_dir=backup_root())
        finally:
            conn.close()
        print(json.dumps(result, indent=2, default=str))
    except (KeyStoreError, settings.SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
