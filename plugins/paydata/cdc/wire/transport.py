"""Opening the connection: a Unix socket or TCP, with TLS negotiated under libpq's ``sslmode`` rules.

TLS runs over memory buffers (:class:`_TlsTransport`) so that one ``recv`` brings many records.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
from collections.abc import Mapping
from typing import Any

import psycopg2

from paydata.cdc.wire.protocol import READ_CHUNK, SSL_REQUEST_CODE


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
