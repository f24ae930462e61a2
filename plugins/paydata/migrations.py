"""Versioned schema migrations for the paydata Postgres databases.

Migrations are plain SQL files ``include/sql/<database>/migrations/V<NNN>__<name>.sql`` (three or more digits,
lower-case snake-case name). Each database records what it has applied in its own
``schema_migrations`` table (version, file name, SHA-256 of the file). Guarantees:

* pending migrations are applied in version order, each in its own transaction together with its
  bookkeeping row, so a failing migration leaves no trace and stops the run;
* runners on the same database are serialised by an advisory lock, so two at once cannot both
  apply a version (the second waits, then finds nothing to do);
* applying twice is a no-op;
* an applied file that was later edited, renamed or deleted, or a new file numbered below an
  already-applied version, is an error naming the file: applied history is never rewritten.

Command line: ``python -m paydata.migrations apply [--db reference|oltp|all]`` and
``python -m paydata.migrations status [--db ...]``.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from paydata import settings
from paydata.sql import SQL_ROOT, load_sql

# Databases whose schema this module owns; ``--db all`` applies these, in this order. The key
# store comes first: the sources' data keys move into it before their migrations drop the old
# tables (see :func:`apply_all`).
MANAGED_DATABASES = ("keystore", "reference", "oltp", "warehouse")

MIGRATION_FILENAME = re.compile(r"^V(?P<version>\d{3,})__(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")

# Arbitrary constant; advisory locks are per database, so one key serves every database.
ADVISORY_LOCK_KEY = 7_411_020_310_001


class MigrationError(RuntimeError):
    """A migration cannot be discovered, validated or applied; the message names the file."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    checksum: str

    @property
    def label(self) -> str:
        """The version as spelled in the file name's digits, e.g. ``"001"``."""
        return self.path.name[1:].split("__", 1)[0]


def file_checksum(path: Path) -> str:
    """SHA-256 hex digest of the file with line endings normalised (CRLF checkouts are not edits)."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def migrations_dir(database: str, sql_root: Path | None = None) -> Path:
    return (sql_root or SQL_ROOT) / database / "migrations"


def discover_migrations(database: str, sql_root: Path | None = None) -> list[Migration]:
    """Return the migrations of ``database`` sorted by version.

    Raises MigrationError if the folder does not exist, a ``.sql`` file's name does not follow
    ``V<NNN>__<name>.sql``, or two files share a version number. Other files (README, dotfiles)
    are ignored.
    """
    folder = migrations_dir(database, sql_root)
    if not folder.is_dir():
        raise MigrationError(f"no migrations folder for database {database!r}: {folder} does not exist")
    by_version: dict[int, Migration] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() != ".sql":
            continue
        match = MIGRATION_FILENAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path}: migration file names must look like V001__short_name.sql "
                "(V, at least three digits, two underscores, lower-case snake-case name)"
            )
        version = int(match["version"])
        if version == 0:
            raise MigrationError(f"{path}: version numbers start at 1")
        if version in by_version:
            raise MigrationError(
                f"{path}: version {version} is also used by {by_version[version].path.name}"
            )
        by_version[version] = Migration(version, match["name"], path, file_checksum(path))
    return [by_version[v] for v in sorted(by_version)]


def _applied(cursor) -> dict[int, tuple[str, str]]:
    cursor.execute(load_sql("cluster/queries/schema_migrations/table_exists.sql"))
    if not cursor.fetchone()[0]:
        return {}
    cursor.execute(load_sql("cluster/queries/schema_migrations/select_applied.sql"))
    return {version: (filename, checksum) for version, filename, checksum in cursor.fetchall()}


def _plan(
    migrations: list[Migration], applied: dict[int, tuple[str, str]], database: str, folder: Path
) -> list[Migration]:
    """Validate applied history against the files and return what is still to apply."""
    on_disk = {m.version: m for m in migrations}
    for version, (filename, checksum) in sorted(applied.items()):
        migration = on_disk.get(version)
        if migration is None:
            raise MigrationError(
                f"{database}: applied migration {filename} (version {version}) is missing from "
                f"{folder}; restore the file, applied migrations are never removed"
            )
        if migration.path.name != filename:
            raise MigrationError(
                f"{migration.path}: version {version} was applied as {filename}; "
                "applied migrations must not be renamed"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"checksum mismatch for {migration.path}: it changed after it was applied to "
                f"{database!r} (recorded {checksum[:12]}, now {migration.checksum[:12]}); "
                "revert the edit and add a new migration instead"
            )
    pending = [m for m in migrations if m.version not in applied]
    latest_applied = max(applied, default=0)
    for migration in pending:
        if migration.version < latest_applied:
            raise MigrationError(
                f"{migration.path}: version {migration.version} is older than the latest applied "
                f"version {latest_applied} of {database!r}; renumber it above {latest_applied}"
            )
    return pending


def pending_migrations(conn, database: str, sql_root: Path | None = None) -> list[Migration]:
    """Migrations of ``database`` not yet applied through ``conn``, in the order they would apply.

    Read-only (does not create ``schema_migrations``). Raises MigrationError on the same
    inconsistencies as :func:`apply_migrations` (edited, renamed or missing applied files).
    """
    migrations = discover_migrations(database, sql_root)
    with conn.cursor() as cursor:
        applied = _applied(cursor)
    conn.rollback()
    return _plan(migrations, applied, database, migrations_dir(database, sql_root))


def apply_migrations(conn, database: str, sql_root: Path | None = None) -> list[str]:
    """Apply the pending migrations of ``database`` through ``conn``; return the versions applied.

    ``conn`` is a psycopg2 connection to that database, with no transaction open; the role needs
    to own (or be allowed to create) the objects the migrations create. Versions are returned as
    spelled in the file names (``["001", "002"]``); ``[]`` when everything was already applied.
    Raises MigrationError naming the file when history and files disagree or a migration fails;
    migrations applied before the failing one stay applied.
    """
    import psycopg2
    import psycopg2.extensions

    migrations = discover_migrations(database, sql_root)
    if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        raise MigrationError("apply_migrations needs a connection with no open transaction")
    previous_autocommit = conn.autocommit
    conn.autocommit = False
    lock = {"lock_key": ADVISORY_LOCK_KEY}
    applied_now: list[str] = []
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("cluster/queries/schema_migrations/lock.sql"), lock)
            conn.commit()  # the session-level lock outlives this transaction
            try:
                cursor.execute(load_sql("cluster/queries/schema_migrations/create_table.sql"))
                conn.commit()
                # Read history only after taking the lock: another runner may just have finished.
                pending = _plan(
                    migrations, _applied(cursor), database, migrations_dir(database, sql_root)
                )
                for migration in pending:
                    try:
                        cursor.execute(migration.path.read_text())
                        cursor.execute(
                            load_sql("cluster/queries/schema_migrations/record_applied.sql"),
                            {
                                "version": migration.version,
                                "name": migration.name,
                                "filename": migration.path.name,
                                "checksum": migration.checksum,
                            },
                        )
                        conn.commit()
                    except psycopg2.Error as exc:
                        conn.rollback()
                        detail = (exc.pgerror or str(exc)).strip()
                        raise MigrationError(
                            f"{migration.path} failed on {database!r} and was rolled back: {detail}"
                        ) from exc
                    applied_now.append(migration.label)
            finally:
                try:
                    conn.rollback()
                    cursor.execute(load_sql("cluster/queries/schema_migrations/unlock.sql"), lock)
                    conn.commit()
                except psycopg2.Error:
                    pass  # the connection is gone, and a session lock ends with its session
    finally:
        if not conn.closed:
            conn.autocommit = previous_autocommit
    return applied_now


def apply_all(connect=None) -> dict[str, list[str]]:
    """Migrate every managed database, moving legacy data keys into the key store on the way.

    Order: key store migrations; then per source database (reference, oltp) its legacy data-key
    rows are moved into the key store (:func:`paydata.keystore.legacy.move_legacy_keys`, a no-op
    on a new database) and its migrations applied. ``connect(database)`` returns a connection
    (default: the database's owner connection from settings). Returns versions applied per database.
    """
    from paydata.keystore.legacy import LEGACY_SOURCES, move_legacy_keys
    from paydata.keystore.store import KeyStore

    def _connect(database: str):
        return connect(database) if connect else settings.pg_connect(settings.POSTGRES_DATABASES[database])

    applied: dict[str, list[str]] = {}
    for database in MANAGED_DATABASES:
        conn = _connect(database)
        try:
            if database in LEGACY_SOURCES:
                store = KeyStore(connect=lambda: _connect("keystore"))
                try:
                    move_legacy_keys(conn, database, store)
                finally:
                    store.close()
            applied[database] = apply_migrations(conn, database)
        finally:
            conn.close()
        apply_definitions(database, _connect)
    return applied


def apply_definitions(database: str, connect=None) -> dict:
    """What the migrate step applies after ``database``'s migrations, as its owner.

    The warehouse's marts, CDC staging layout and bookkeeping tables
    (:mod:`paydata.warehouse.definitions`), which the loader may not create; nothing for the
    other databases. ``connect(database)`` as in :func:`apply_all`.
    """
    if database != "warehouse":
        return {}
    from paydata.warehouse.definitions import apply_warehouse_definitions

    def _connect(name: str):
        return connect(name) if connect else settings.pg_connect(settings.POSTGRES_DATABASES[name])

    return apply_warehouse_definitions(lambda: _connect("warehouse"), _connect)


def _databases(choice: str) -> list[str]:
    return list(MANAGED_DATABASES) if choice == "all" else [choice]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paydata.migrations", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("apply", "status"))
    parser.add_argument("--db", default="all", choices=(*MANAGED_DATABASES, "all"))
    args = parser.parse_args(argv)
    if args.command == "apply" and args.db == "all":
        try:
            for database, applied in apply_all().items():
                print(f"{database}: applied {', '.join(applied)}" if applied else f"{database}: up to date")
        except (MigrationError, settings.SettingsError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    for database in _databases(args.db):
        try:
            conn = settings.pg_connect(settings.POSTGRES_DATABASES[database])
        except settings.SettingsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            if args.command == "apply":
                applied = apply_migrations(conn, database)
                print(f"{database}: applied {', '.join(applied)}" if applied else f"{database}: up to date")
                if apply_definitions(database):
                    print(f"{database}: definitions applied")
            else:
                pending = pending_migrations(conn, database)
                names = ", ".join(m.path.name for m in pending)
                print(f"{database}: {len(pending)} pending" + (f" ({names})" if pending else ""))
        except MigrationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
