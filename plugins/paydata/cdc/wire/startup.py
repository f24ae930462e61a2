"""Starting a session: the start-up message, authentication, then ``START_REPLICATION`` until CopyBoth."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import psycopg2

from paydata.cdc.wire.protocol import (
    _HEADER,
    _INT32,
    PROTOCOL_VERSION,
    SEND_TIMEOUT_SECONDS,
    _error_from_fields,
    _message,
    start_replication_command,
)
from paydata.cdc.wire.scram import ScramClient
from paydata.cdc.wire.stream import ReplicationStream
from paydata.cdc.wire.transport import _open_transport, _Transport


def _read_message(sock: _Transport, pending: bytearray) -> tuple[bytes, bytes]:
    while True:
        if len(pending) >= 5:
            kind, length = _HEADER.unpack_from(pending, 0)
            if length < 4:
                raise psycopg2.OperationalError(f"malformed message from the server: length {length}")
            if len(pending) >= 1 + length:
                body = bytes(pending[5 : 1 + length])
                del pending[: 1 + length]
                return kind, body
        chunk = sock.recv(65536)
        if not chunk:
            raise psycopg2.OperationalError("server closed the connection during start-up")
        pending.extend(chunk)


def _authenticate(sock: _Transport, pending: bytearray, params: Mapping[str, Any]) -> int:
    """Run start-up until ReadyForQuery; return the backend PID."""
    user = str(params.get("user") or "")
    password = str(params.get("password") or "")
    backend_pid = 0
    scram: ScramClient | None = None
    while True:
        kind, body = _read_message(sock, pending)
        if kind == b"R":
            (code,) = _INT32.unpack_from(body)
            if code == 0:
                continue
            if code == 3:
                sock.sendall(_message(b"p", password.encode() + b"\0"))
            elif code == 5:
                inner = hashlib.md5(password.encode() + user.encode()).hexdigest()  # noqa: S324 (protocol)
                outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()  # noqa: S324 (protocol)
                sock.sendall(_message(b"p", b"md5" + outer.encode() + b"\0"))
            elif code == 10:
                mechanisms = [m.decode() for m in body[4:].split(b"\0") if m]
                if "SCRAM-SHA-256" not in mechanisms:
                    raise psycopg2.OperationalError(f"no supported SASL mechanism among {mechanisms}")
                scram = ScramClient(password)
                first = scram.first_message()
                sock.sendall(_message(b"p", b"SCRAM-SHA-256\0" + _INT32.pack(len(first)) + first))
            elif code == 11 and scram is not None:
                sock.sendall(_message(b"p", scram.final_message(body[4:])))
            elif code == 12 and scram is not None:
                scram.verify(body[4:])
            else:
                raise psycopg2.OperationalError(f"unsupported authentication request {code}")
        elif kind == b"K":
            backend_pid = _INT32.unpack_from(body)[0]
        elif kind == b"E":
            raise _error_from_fields(body)
        elif kind == b"Z":
            return backend_pid
        # ParameterStatus ('S') and notices ('N') need no answer.


def start_logical_stream(
    params: Mapping[str, Any], slot: str, start_lsn: int, options: Mapping[str, str]
) -> ReplicationStream:
    """Connect with ``params`` (psycopg2 keyword names: host, port, user, password, dbname, sslmode,
    sslrootcert, ...) as a logical replication connection and start streaming ``slot``.

    Raises the psycopg2 exception class of the server's SQLSTATE (e.g. ``ObjectInUse`` while another
    process holds the slot) or ``psycopg2.OperationalError`` for connection and authentication failures.
    """
    sock = _open_transport(params)
    try:
        startup = {
            "user": str(params.get("user") or ""),
            "database": str(params.get("dbname") or params.get("database") or ""),
            "replication": "database",
            "application_name": str(params.get("application_name") or "paydata-cdc"),
            "client_encoding": "UTF8",
        }
        if params.get("options"):  # libpq's "options": command-line settings such as "-c wal_sender_timeout=5s"
            startup["options"] = str(params["options"])
        body = _INT32.pack(PROTOCOL_VERSION) + b"".join(
            key.encode() + b"\0" + value.encode() + b"\0" for key, value in startup.items()
        ) + b"\0"
        sock.sendall(_INT32.pack(len(body) + 4) + body)
        pending = bytearray()
        backend_pid = _authenticate(sock, pending, params)
        command = start_replication_command(slot, start_lsn, options)
        sock.sendall(_message(b"Q", command.encode() + b"\0"))
        while True:
            kind, body = _read_message(sock, pending)
            if kind == b"W":  # CopyBothResponse: streaming starts
                break
            if kind == b"E":
                raise _error_from_fields(body)
        # Reads wait in select() with the engine's timeout; a send that a wedged server never drains
        # fails after this long instead of blocking the run forever.
        sock.sock.settimeout(SEND_TIMEOUT_SECONDS)
        stream = ReplicationStream(sock, backend_pid)
        stream._buffer = bytes(pending)
        return stream
    except BaseException:
        sock.close()
        raise
