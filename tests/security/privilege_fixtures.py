"""Throwaway databases and logins for the role-matrix replays (imported by the security tests).

Each database is created for the module, owned by the stack's real owner role and migrated by it
(as ``schema_migrate`` does); each login is a new LOGIN role that is a member of one of the stack's
group roles, so the privileges under test are exactly the ones the migrations grant to the groups.
"""

from __future__ import annotations

import secrets
import uuid
from contextlib import contextmanager

import psycopg2
from psycopg2 import sql

from paydata.stack.config import StackConfig

SQLSTATE_DENIED = "42501"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextmanager
def throwaway_logins(admin, groups: dict[str, str | None], databases: list[str]):
    """``{label: group}`` -> ``{label: (role, password)}``: LOGIN roles, members of ``group`` (None: of
    nothing), with CONNECT on ``databases``; dropped afterwards. Drop ``databases`` before leaving
    the block: a role holding privileges in a database cannot be dropped."""
    admin.autocommit = True
    made: dict[str, tuple[str, str]] = {}
    try:
        with admin.cursor() as cursor:
            for label, group in groups.items():
                role, password = unique(f"sec_{label}"), secrets.token_urlsafe(16)
                cursor.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)), (password,))
                made[label] = (role, password)
                if group:
                    cursor.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role)))
                for database in databases:
                    cursor.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                        sql.Identifier(database), sql.Identifier(role)))
        yield made
    finally:
        with admin.cursor() as cursor:
            for role, _ in made.values():
                cursor.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@contextmanager
def migrated_database(stack: StackConfig, admin_connect, prefix: str, owner_role: str, migrations: str,
                      groups: dict[str, str | None]):
    """A fresh database owned by the stack's ``owner_role`` and migrated by it (``migrations``: the
    database kind), with throwaway logins of ``groups`` (:func:`throwaway_logins`); yields
    ``(dbname, owner connection, logins)``. The database is dropped before the logins."""
    from paydata.migrations import apply_migrations

    admin = admin_connect("postgres")
    admin.autocommit = True
    dbname = unique(prefix)
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(owner_role)))
    try:
        owner = login(stack, owner_role, stack.password_file(owner_role).read_text().strip(), dbname)
        try:
            apply_migrations(owner, migrations)
            with throwaway_logins(admin, groups, [dbname]) as logins:
                try:
                    yield dbname, owner, logins
                finally:
                    owner.close()
                    with admin.cursor() as cursor:
                        cursor.execute(drop)
        finally:
            owner.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(drop)


def as_owner(chain: dict, *statements: str) -> None:
    """Run ``statements`` on ``chain["owner"]`` (the schema owner) with every trigger of audit_log off."""
    with chain["owner"].cursor() as cursor:
        cursor.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for statement in statements:
            cursor.execute(statement)
        cursor.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    chain["owner"].commit()


def login(stack: StackConfig, role: str, password: str, dbname: str):
    """A connection as ``role`` over the cluster's socket (SCRAM, like every stack login)."""
    return psycopg2.connect(host=str(stack.pg_socket_dir), port=stack.pg_port, user=role, password=password,
                            dbname=dbname, connect_timeout=5, application_name="paydata-security-test")


def outcome(conn, statement: str, params=None) -> str:
    """Run ``statement`` in a transaction that is rolled back; ``"ok"`` or the SQLSTATE it failed with."""
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement, params)
        return "ok"
    except psycopg2.Error as exc:
        return exc.pgcode or type(exc).__name__
    finally:
        conn.rollback()
