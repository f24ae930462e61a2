"""A lean client for PostgreSQL's streaming replication protocol, for reading one logical slot.

Why not libpq through psycopg2: a walsender sends (and flushes) every decoded change as its own
``CopyData`` message, and psycopg2 hands them over one ``read_message()`` call at a time, each
with a result object, a copied buffer and, over TLS, a record decrypted by its own ``SSL_read``.
On the benchmark backlog that was a fifth of the engine's CPU over the Unix socket and more than
half of it over TLS. This client reads the socket in large chunks and cuts ``XLogData`` frames out
of them with one ``struct`` call each.

Scope, on purpose small: connect over a Unix socket or TCP (TLS with libpq's ``sslmode``
semantics: ``disable``/``prefer``/``require``/``verify-ca``/``verify-full``), authenticate with
SCRAM-SHA-256 (the stack's ``password_encryption``), MD5 or cleartext when the server asks,
``START_REPLICATION ... LOGICAL`` with options, then ``CopyBoth``: ``XLogData`` (``w``) and
keepalives (``k``) in, standby status updates (``r``) out. Server errors raise the psycopg2 class of
their SQLSTATE (so callers handle them as they would libpq's), a dropped connection raises
``psycopg2.OperationalError``. Slot creation and everything else stay on psycopg2.

Protocol reference: https://www.postgresql.org/docs/current/protocol-replication.html and
https://www.postgresql.org/docs/current/protocol-message-formats.html; SCRAM: RFC 5802 / RFC 7677.

Along a session: :mod:`.transport` (socket and TLS), :mod:`.startup` (start-up, authentication
with :mod:`.scram`, ``START_REPLICATION``), :mod:`.stream` (reading the session), :mod:`.protocol`
(message layouts).
"""

from paydata.cdc.wire.protocol import (
    _HEADER,
    _INT32,
    _KEEPALIVE,
    _STATUS,
    _XLOG_HEADER,
    PROTOCOL_VERSION,
    READ_CHUNK,
    _error_from_fields,
    _message,
    _pg_now,
    start_replication_command,
)
from paydata.cdc.wire.scram import ScramClient
from paydata.cdc.wire.startup import start_logical_stream
from paydata.cdc.wire.stream import ReplicationStream
from paydata.cdc.wire.transport import _TlsTransport, _Transport

__all__ = [
    "PROTOCOL_VERSION", "READ_CHUNK", "_HEADER", "_INT32", "_KEEPALIVE", "_STATUS", "_XLOG_HEADER",
    "ReplicationStream", "ScramClient", "_TlsTransport", "_Transport", "_error_from_fields", "_message", "_pg_now",
    "start_logical_stream",
    "start_replication_command",
]
