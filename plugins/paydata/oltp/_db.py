"""Short transactions with database errors translated into :mod:`paydata.oltp.errors`."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions

from paydata.oltp.errors import (
    ConcurrencyConflict,
    DatabaseError,
    IllegalTransition,
    OltpError,
    RuleViolation,
)
from paydata.sql import load_sql

_RETRYABLE_CODES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def oltp_sql(name: str) -> str:
    return load_sql(f"oltp/queries/app/{name}.sql")


def reference_sql(name: str) -> str:
    return load_sql(f"reference/queries/app/{name}.sql")


def translate(exc: psycopg2.Error, operation: str) -> OltpError:
    """The :class:`OltpError` for a psycopg2 error raised while doing ``operation``."""
    diag = getattr(exc, "diag", None)
    primary = (diag.message_primary if diag is not None else None) or str(exc).strip() or type(exc).__name__
    constraint = diag.constraint_name if diag is not None else None
    hint = diag.message_hint if diag is not None else None
    code = exc.pgcode
    message = f"{operation} rejected by the database: {primary}"
    if constraint:
        message += f" (constraint {constraint})"
    if hint:
        message += f"; hint: {hint}"
    if code in _RETRYABLE_CODES:
        return ConcurrencyConflict(f"{operation} hit a concurrency conflict and was rolled back: {primary}")
    if code is not None and code.startswith("23"):
        error_type = IllegalTransition if primary.startswith("illegal charge status transition") else RuleViolation
        return error_type(message, pgcode=code, constraint=constraint, hint=hint)
    if code is None:
        return DatabaseError(f"{operation} failed: {primary}")
    return DatabaseError(f"{operation} failed ({code}): {primary}")


@contextmanager
def transaction(conn, operation: str) -> Generator[psycopg2.extensions.cursor, None, None]:
    """Run the block in one transaction on ``conn`` and commit it; roll back on any error.

    ``conn`` must have no transaction open, so a call never commits someone else's work by
    accident (:class:`DatabaseError` otherwise). Autocommit connections are switched off for the
    block and restored. psycopg2 errors come out as :class:`OltpError` subclasses naming
    ``operation``.
    """
    if conn.closed:
        raise DatabaseError(f"{operation}: the connection is closed")
    if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        raise DatabaseError(
            f"{operation} runs in its own transaction, but the connection has one open: "
            "commit or roll it back first"
        )
    autocommit = conn.autocommit
    if autocommit:
        conn.autocommit = False
    try:
        try:
            with conn.cursor() as cursor:
                yield cursor
            conn.commit()
        except psycopg2.Error as exc:
            _rollback_quietly(conn)
            raise translate(exc, operation) from exc
        except BaseException:
            _rollback_quietly(conn)
            raise
    finally:
        if autocommit and not conn.closed:
            conn.autocommit = True


def _rollback_quietly(conn) -> None:
    try:
        conn.rollback()
    except psycopg2.Error:
        pass  # the connection is gone; the server has already ended the transaction
