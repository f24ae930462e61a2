"""The local cluster's least-privilege roles and its database audit logging.

Roles are cluster-wide, so the stack creates them (as the superuser) and the migrations grant on
their own objects (``paydata.privileges``). What :func:`ensure_roles` makes, idempotently:

* each group role of ``privileges.GROUP_ROLES``, NOLOGIN;
* each login user of ``privileges.LOGIN_USERS``, LOGIN with its password from the secrets folder,
  member of its group;
* CONNECT on the databases each group needs, nothing else at the database level.

Audit logging (:func:`ensure_audit_logging`): with pgaudit in the server's library folder it is
preloaded and session audit logging of ``read, write, role, ddl`` is set on reference and OLTP;
without it, DDL statements are logged in those databases and every statement of the login users
that read or write personal data or the audit trail (``log_statement`` per role and database).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from paydata import privileges


def pgaudit_library(bin_dir: Path) -> Path | None:
    """The ``pgaudit.so`` of the Postgres installation in ``bin_dir``, or None when it has none."""
    try:
        result = subprocess.run([str(bin_dir / "pg_config"), "--pkglibdir"], capture_output=True, text=True,
                                check=False, timeout=10)
    except OSError:
        return None
    if result.returncode != 0:
        return None
    library = Path(result.stdout.strip()) / "pgaudit.so"
    return library if library.exists() else None


def conf_lines(pgaudit: bool) -> list[str]:
    """postgresql.conf lines for audit logging (preloading pgaudit needs a restart, which ``up`` does)."""
    if not pgaudit:
        return ["# No pgaudit in this installation: statement logging is set per role and database instead."]
    return ["shared_preload_libraries = 'pgaudit'", "pgaudit.log_parameter = off", "pgaudit.log_relation = on"]


def ensure_roles(cursor, passwords: dict[str, str]) -> None:
    """Create or repair the group roles and login users (``cursor``: superuser, autocommit)."""
    from paydata.stack.postgres import _ensure_login_role, sql_statement

    for group in privileges.GROUP_ROLES:
        cursor.execute(sql_statement("role_exists"), {"role": group})
        if not cursor.fetchone():
            cursor.execute(sql_statement("create_group_role", role=group))
    for user in privileges.LOGIN_USERS:
        _ensure_login_role(cursor, user.name, passwords[user.name])
        cursor.execute(sql_statement("grant_membership", group=user.group, member=user.name))
    for group, databases in privileges.GROUP_DATABASES.items():
        for database in databases:
            cursor.execute(sql_statement("grant_connect", database=database, role=group))


def ensure_audit_logging(connect, pgaudit: bool) -> str:
    """Set the audit logging of the sensitive databases; return a one-line description for ``status``.

    ``connect(dbname)`` returns a superuser connection. With ``pgaudit`` the extension must be
    preloaded (:func:`conf_lines`); a server started before it was is reported, not changed.
    """
    from paydata.stack.postgres import sql_statement

    admin = connect("postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql_statement("preload_libraries"))
            preloaded = "pgaudit" in cursor.fetchone()[0]
            for database, level in privileges.DATABASE_LOGGING.items():
                cursor.execute(sql_statement("set_database_log_statement", database=database), {"value": level})
            for (group, database), level in privileges.STATEMENT_LOGGING.items():
                for user in privileges.LOGIN_USERS:
                    if user.group == group:
                        cursor.execute(sql_statement("set_role_log_statement", role=user.name, database=database),
                                       {"value": level})
    finally:
        admin.close()
    if not (pgaudit and preloaded):
        return describe(False)
    for database in privileges.PGAUDIT_DATABASES:
        conn = connect(database)
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql_statement("create_pgaudit"))
                cursor.execute(sql_statement("set_database_pgaudit", database=database),
                               {"value": privileges.PGAUDIT_CLASSES})
        finally:
            conn.close()
    return describe(True)


def describe(pgaudit: bool) -> str:
    databases = ", ".join(privileges.PGAUDIT_DATABASES)
    if pgaudit:
        return f"pgaudit ({privileges.PGAUDIT_CLASSES}) on {databases}"
    users = sorted({u.name for u in privileges.LOGIN_USERS
                    for (group, _db) in privileges.STATEMENT_LOGGING if u.group == group})
    return (f"no pgaudit: log_statement=ddl on {databases}, every statement of {', '.join(users)} "
            "(ALTER ROLE ... IN DATABASE ... SET log_statement)")
