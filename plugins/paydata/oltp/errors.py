"""Exceptions raised by :mod:`paydata.oltp`.

Every failure is an :class:`OltpError`. Input the application can check itself raises
:class:`InvalidRequest` before touching the database; a rule the database enforces (constraint or
trigger) raises :class:`RuleViolation` carrying the database's own message, which names the rule
and the values involved. :class:`ConcurrencyConflict` is the one worth retrying.
"""

from __future__ import annotations


class OltpError(Exception):
    """Base class of every error raised by :mod:`paydata.oltp`."""

    retryable = False


class InvalidRequest(OltpError, ValueError):
    """An argument is missing, of the wrong type or out of range; nothing was written."""


class NotFound(OltpError, LookupError):
    """The customer, card, charge or dispute named does not exist."""


class RuleViolation(OltpError):
    """The database rejected the operation (constraint or trigger); nothing was written.

    ``pgcode`` is the SQLSTATE, ``constraint`` the violated constraint's name when Postgres
    reports one, ``hint`` the trigger's hint if any.
    """

    def __init__(self, message: str, *, pgcode: str | None = None, constraint: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.pgcode = pgcode
        self.constraint = constraint
        self.hint = hint


class IllegalTransition(RuleViolation):
    """A charge status change that ``charge_status_transition`` does not allow."""


class ConcurrencyConflict(OltpError):
    """Serialization failure or deadlock: the transaction was rolled back and may be retried."""

    retryable = True


class DatabaseError(OltpError):
    """Any other database failure (connection lost, missing table, ...); the transaction was rolled back."""
