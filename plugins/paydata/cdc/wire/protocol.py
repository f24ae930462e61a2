"""The replication protocol's framing: message layouts, building and cutting messages, server errors.

Reference: https://www.postgresql.org/docs/current/protocol-message-formats.html
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping

import psycopg2
import psycopg2.errors

PROTOCOL_VERSION = 3 << 16
SSL_REQUEST_CODE = 80877103
READ_CHUNK = 1 << 18  # bytes per recv: a quarter MiB holds ~1,700 typical change messages
SEND_TIMEOUT_SECONDS = 60.0
_PG_EPOCH_UNIX_SECONDS = 946_684_800

_HEADER = struct.Struct(">ci")
_XLOG_HEADER = struct.Struct(">cQQq")  # 'w', dataStart, walEnd, sendTime
_KEEPALIVE = struct.Struct(">cQqB")  # 'k', walEnd, sendTime, replyRequested
_STATUS = struct.Struct(">cQQQqB")  # 'r', write, flush, apply, clientTime, replyRequested
_INT32 = struct.Struct(">i")


def _pg_now() -> int:
    """Microseconds since 2000-01-01 UTC (the protocol's clock)."""
    return int((time.time() - _PG_EPOCH_UNIX_SECONDS) * 1_000_000)


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + _INT32.pack(len(body) + 4) + body


def _error_from_fields(body: bytes) -> psycopg2.Error:
    """The psycopg2 exception for an ``ErrorResponse`` body (class chosen by SQLSTATE)."""
    fields: dict[str, str] = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    message = fields.get("M", "unknown server error")
    if "D" in fields:
        message += f"\nDETAIL:  {fields['D']}"
    code = fields.get("C", "")
    try:
        error_class = psycopg2.errors.lookup(code)
    except KeyError:
        error_class = psycopg2.OperationalError
    return error_class(f"{fields.get('S', 'ERROR')}:  {message}")


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def start_replication_command(slot: str, start_lsn: int, options: Mapping[str, str]) -> str:
    """``START_REPLICATION SLOT "slot" LOGICAL X/X ("name" 'value', ...)`` with quoting."""
    position = f"{start_lsn >> 32:X}/{start_lsn & 0xFFFFFFFF:X}"
    command = f"START_REPLICATION SLOT {_quote_identifier(slot)} LOGICAL {position}"
    if options:
        command += " (" + ", ".join(
            f"{_quote_identifier(name)} {_quote_literal(str(value))}" for name, value in options.items()
        ) + ")"
    return command
