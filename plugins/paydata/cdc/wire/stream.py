"""Reading one started logical replication session: XLogData out of large reads, keepalives, status updates."""

from __future__ import annotations

import select
import ssl

import psycopg2

from paydata.cdc.wire import protocol
from paydata.cdc.wire.protocol import (
    _HEADER,
    _KEEPALIVE,
    _STATUS,
    _XLOG_HEADER,
    _error_from_fields,
    _message,
    _pg_now,
)
from paydata.cdc.wire.transport import _Transport


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
            chunk = self._transport.recv(protocol.READ_CHUNK)  # read at call time: tests shrink it
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
