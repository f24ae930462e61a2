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
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import select
import socket
import ssl
import struct
import time
from collections.abc import Mapping
from typing import Any

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


class ScramClient:
    """Client side of SCRAM-SHA-256 without channel binding (RFC 5802 / RFC 7677)."""

    def __init__(self, password: str, nonce: str | None = None, user: str = "") -> None:
        # PostgreSQL takes the user from the start-up message and ignores SCRAM's, so libpq sends "n=".
        self.password = password.encode("utf-8")
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode("ascii")
        self.client_first_bare = f"n={user},r={self.nonce}"
        self._server_signature = b""

    def first_message(self) -> bytes:
        return ("n,," + self.client_first_bare).encode("ascii")

    def final_message(self, server_first: bytes) -> bytes:
        text = server_first.decode("ascii")
        parts = dict(item.split("=", 1) for item in text.split(","))
        nonce, salt, iterations = parts["r"], base64.b64decode(parts["s"]), int(parts["i"])
        if not nonce.startswith(self.nonce):
            raise psycopg2.OperationalError("SCRAM: the server's nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.client_first_bare},{text},{without_proof}".encode("ascii")
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self._server_signature = hmac.digest(server_key, auth_message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode('ascii')}".encode("ascii")

    def verify(self, server_final: bytes) -> None:
        text = server_final.decode("ascii")
        if text.startswith("e="):
            raise psycopg2.OperationalError(f"SCRAM authentication failed: {text[2:]}")
        expected = "v=" + base64.b64encode(self._server_signature).decode("ascii")
        if not hmac.compare_digest(text.split(",")[0], expected):
            raise psycopg2.OperationalError("SCRAM: the server's signature does not match (wrong server?)")


class _Transport:
    """A connected socket, plain or TLS; ``recv`` returns what is available (b"" at end of stream)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def buffered(self) -> bytes:
        """Plaintext already received but not yet returned (TLS records decrypted without a syscall)."""
        return b""

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


class _TlsTransport(_Transport):
    """TLS over memory buffers: one ``recv`` syscall brings many records, decrypted one by one in memory.

    (``ssl.SSLSocket.recv`` returns a single record per call, and a walsender sends one record per
    change: two syscalls per change.)
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str) -> None:
        super().__init__(sock)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                if not data:
                    raise ssl.SSLError("connection closed during the TLS handshake") from None
                self._incoming.write(data)
        self._flush()

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def _decrypt_available(self, size: int) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self._tls.read(size)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            if not chunk:  # the peer closed the TLS session
                break
            chunks.append(chunk)
        self._flush()  # TLS 1.3 may answer post-handshake messages
        return b"".join(chunks)

    def buffered(self) -> bytes:
        return self._decrypt_available(READ_CHUNK) if self._incoming.pending else b""

    def recv(self, size: int) -> bytes:
        while True:
            plain = self._decrypt_available(size)
            if plain:
                return plain
            data = self.sock.recv(size)
            if not data:
                return b""
            self._incoming.write(data)

    def sendall(self, data: bytes) -> None:
        self._tls.write(data)
        self._flush()


class ReplicationStream:
    """One ``START_REPLICATION ... LOGICAL`` session on a logical slot.

    :meth:`read` returns ``(data_start, payload)`` of the next ``XLogData`` or ``None`` when
    nothing arrived within the timeout; :attr:`server_lsn` is the WAL end the server last
    reported; :meth:`confirm` reports a flushed position; :meth:`keep_alive` tells the server the
    client is alive while it reads nothing (a batch being applied).

    The reported position moves only through :meth:`confirm`. Keepalives are answered with the
    last confirmed position, never with their own WAL end: which messages are applied is known to
    the engine only. (libpq-based clients, psycopg2 among them, move the position to a keepalive's
    WAL end once the last ``XLogData`` received is confirmed, judged by its ``dataStart``; pgoutput
    sends Relation and Type messages with ``dataStart`` 0, so right after one that rule passes while
    a received transaction is still unapplied, and the slot is confirmed past it.)
    """

    def __init__(self, transport: _Transport, backend_pid: int) -> None:
        self._transport = transport
        self.backend_pid = backend_pid
        self._buffer = b""
        self._offset = 0
        self._wal_end = 0
        self._confirmed = 0
        self._closed = False

    # -- the stream interface the engine uses ----------------------------------------------------------

    @property
    def server_lsn(self) -> int:
        return self._wal_end

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        message = self._next_xlog()
        if message is not None:
            return message
        buffered = self._transport.buffered()
        if buffered:
            self._append(buffered)
        elif select.select([self._transport], [], [], timeout)[0]:
            self._receive()
        else:
            return None
        return self._next_xlog()

    @property
    def confirmed_lsn(self) -> int:
        """The highest position reported as flushed in this session (0 before the first confirm)."""
        return self._confirmed

    def confirm(self, lsn: int) -> None:
        """Report everything below ``lsn`` as durably applied (never moves back); asks for a reply."""
        self._confirmed = max(self._confirmed, lsn)
        self._send_status(self._confirmed, reply=True)

    def request_status(self) -> None:
        """Ask the server for a keepalive: it carries how far the server has read and sent WAL."""
        self._send_status(self._confirmed, reply=True)

    def keep_alive(self) -> None:
        """A status update with the confirmed position and no reply requested.

        The server ends a session it has heard nothing from for ``wal_sender_timeout``; while the
        engine waits for a slow sink it reads nothing, so it sends this instead. It confirms
        nothing new.
        """
        self._send_status(self._confirmed, reply=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._transport.sendall(_message(b"c", b"") + _message(b"X", b""))
        except (OSError, ssl.SSLError):
            pass
        self._transport.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- internals ------------------------------------------------------------------------------------

    def _receive(self) -> None:
        try:
            chunk = self._transport.recv(READ_CHUNK)
        except (OSError, ssl.SSLError) as exc:
            raise psycopg2.OperationalError(f"replication connection failed: {exc}") from exc
        if not chunk:
            raise psycopg2.OperationalError("server closed the replication connection unexpectedly")
        self._append(chunk)

    def _append(self, chunk: bytes) -> None:
        rest = self._buffer[self._offset:]
        self._buffer = rest + chunk if rest else chunk
        self._offset = 0

    def _next_xlog(self) -> tuple[int, bytes] | None:
        """The next XLogData in the buffer; keepalives and other messages are handled on the way."""
        buffer = self._buffer
        offset = self._offset
        size = len(buffer)
        while size - offset >= 5:
            kind, length = _HEADER.unpack_from(buffer, offset)
            if length < 4:
                raise psycopg2.OperationalError(f"malformed message from the server: length {length}")
            end = offset + 1 + length
            if end > size:
                break
            if kind == b"d" and length > 4 and buffer[offset + 5] == 0x77:  # CopyData carrying 'w' (XLogData)
                if length < 4 + _XLOG_HEADER.size:
                    raise psycopg2.OperationalError(f"malformed XLogData from the server: {length - 4} bytes")
                _, data_start, wal_end, _ = _XLOG_HEADER.unpack_from(buffer, offset + 5)
                self._offset = end
                if wal_end > self._wal_end:
                    self._wal_end = wal_end
                return data_start, buffer[offset + 30 : end]
            body = buffer[offset + 5 : end]
            self._offset = offset = end
            self._handle(kind, body)
        return None

    def _handle(self, kind: bytes, body: bytes) -> None:
        if kind == b"d" and body[:1] == b"k":
            if len(body) < _KEEPALIVE.size:
                raise psycopg2.OperationalError(f"malformed keepalive from the server: {len(body)} bytes")
            _, wal_end, _, reply = _KEEPALIVE.unpack_from(body)
            self._wal_end = max(self._wal_end, wal_end)
            if reply:
                self._send_status(self._confirmed, reply=False)
        elif kind == b"E":
            raise _error_from_fields(body)
        elif kind in (b"c", b"C", b"Z"):
            raise psycopg2.OperationalError("the server ended the replication stream")
        # NoticeResponse ('N'), ParameterStatus ('S') and anything else carry nothing for us.

    def _send_status(self, lsn: int, *, reply: bool) -> None:
        body = _STATUS.pack(b"r", lsn, lsn, lsn, _pg_now(), 1 if reply else 0)
        try:
            self._transport.sendall(_message(b"d", body))
        except (OSError, ssl.SSLError) as exc:
            raise psycopg2.OperationalError(f"replication connection failed: {exc}") from exc


# -- connecting ------------------------------------------------------------------------------------------


def _open_transport(params: Mapping[str, Any]) -> _Transport:
    host = str(params.get("host") or "/var/run/postgresql")
    port = int(params.get("port") or 5432)
    timeout = float(params.get("connect_timeout") or 30)
    sslmode = str(params.get("sslmode") or "prefer")
    if host.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(os.path.join(host, f".s.PGSQL.{port}"))
        except OSError as exc:
            sock.close()
            raise psycopg2.OperationalError(f"connection to server on socket {host} failed: {exc}") from exc
        if sslmode in ("require", "verify-ca", "verify-full"):
            sock.close()
            raise psycopg2.OperationalError(f"sslmode {sslmode} needs TCP; {host} is a Unix socket folder")
        return _Transport(sock)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise psycopg2.OperationalError(f"connection to server at {host}:{port} failed: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if sslmode == "disable":
        return _Transport(sock)
    sock.sendall(struct.pack(">ii", 8, SSL_REQUEST_CODE))
    answer = sock.recv(1)
    if answer != b"S":
        if sslmode in ("require", "verify-ca", "verify-full"):
            sock.close()
            raise psycopg2.OperationalError(f"server at {host}:{port} does not support SSL, but sslmode={sslmode}")
        if answer != b"N":
            sock.close()
            raise psycopg2.OperationalError("unexpected answer to the SSL request")
        return _Transport(sock)
    context = ssl.create_default_context(cafile=params.get("sslrootcert"))
    if sslmode in ("prefer", "require") and not params.get("sslrootcert"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif sslmode in ("prefer", "require", "verify-ca"):
        context.check_hostname = False
    if params.get("sslcert"):
        context.load_cert_chain(params["sslcert"], params.get("sslkey"))
    try:
        return _TlsTransport(sock, context, host)
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        raise psycopg2.OperationalError(f"TLS handshake with {host}:{port} failed: {exc}") from exc


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
