"""The replication protocol client without a server: SCRAM, command quoting, error mapping, and the
CopyBoth stream driven from the other end of a socket pair."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import random
import select
import socket
import ssl
import tempfile
import threading
import time

import psycopg2
import psycopg2.errors
import pytest

from paydata.cdc import wire

# RFC 7677, section 3.
RFC_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

STATUS_SIZE = 1 + 4 + wire._STATUS.size


# -- SCRAM ---------------------------------------------------------------------------------------------


def rfc_client() -> wire.ScramClient:
    return wire.ScramClient("pencil", nonce=RFC_NONCE, user="user")


def test_scram_matches_the_rfc_7677_test_vector():
    client = rfc_client()
    assert client.first_message() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert client.final_message(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify(RFC_SERVER_FINAL)  # no exception: the server proved it knows the password


def test_scram_without_a_user_sends_an_empty_name_and_a_fresh_nonce():
    first, second = wire.ScramClient("x"), wire.ScramClient("x")
    assert first.nonce != second.nonce
    assert len(base64.b64decode(first.nonce)) == 18
    assert first.first_message() == f"n,,n=,r={first.nonce}".encode()


def test_scram_rejects_a_server_nonce_that_does_not_extend_ours():
    server_first = RFC_SERVER_FIRST.replace(b"r=rOprNGfwEbeRWgbNEkqO", b"r=somebodyElsesNonce")
    with pytest.raises(psycopg2.OperationalError, match="nonce"):
        rfc_client().final_message(server_first)


def test_scram_rejects_a_wrong_server_signature():
    client = rfc_client()
    client.final_message(RFC_SERVER_FIRST)
    wrong = b"v=" + base64.b64encode(bytes(32))
    with pytest.raises(psycopg2.OperationalError, match="signature"):
        client.verify(wrong)


def test_scram_rejects_a_signature_for_another_password():
    other = wire.ScramClient("not pencil", nonce=RFC_NONCE, user="user")
    other.final_message(RFC_SERVER_FIRST)
    with pytest.raises(psycopg2.OperationalError, match="signature"):
        other.verify(RFC_SERVER_FINAL)


def test_scram_reports_a_server_error():
    client = rfc_client()
    client.final_message(RFC_SERVER_FIRST)
    with pytest.raises(psycopg2.OperationalError, match="invalid-proof"):
        client.verify(b"e=invalid-proof")


# -- START_REPLICATION ----------------------------------------------------------------------------------


def test_start_replication_command_formats_the_position_and_options():
    command = wire.start_replication_command(
        "slot_a", 0x16_B374D848, {"proto_version": "1", "publication_names": "pub_a"}
    )
    assert command == (
        'START_REPLICATION SLOT "slot_a" LOGICAL 16/B374D848 ("proto_version" \'1\', "publication_names" \'pub_a\')'
    )


def test_start_replication_command_without_options_has_no_parentheses():
    assert wire.start_replication_command("s", 0, {}) == 'START_REPLICATION SLOT "s" LOGICAL 0/0'


def test_start_replication_command_quotes_identifiers_and_literals():
    command = wire.start_replication_command('my"slot', 1, {'we"ird': "it's", "n": 7})
    assert command == (
        'START_REPLICATION SLOT "my""slot" LOGICAL 0/1 ("we""ird" \'it\'\'s\', "n" \'7\')'
    )


# -- ErrorResponse -> psycopg2 class --------------------------------------------------------------------


def error_body(code: str | None, message: str, detail: str | None = None) -> bytes:
    fields = [b"SERROR", b"VERROR"]
    if code is not None:
        fields.append(b"C" + code.encode())
    fields.append(b"M" + message.encode())
    if detail is not None:
        fields.append(b"D" + detail.encode())
    return b"\0".join(fields) + b"\0\0"


def test_slot_in_use_maps_to_object_in_use_with_message_and_detail():
    error = wire._error_from_fields(
        error_body("55006", 'replication slot "s" is active for PID 4242', "held by another walsender")
    )
    assert type(error) is psycopg2.errors.ObjectInUse
    assert isinstance(error, psycopg2.OperationalError)
    text = str(error)
    assert 'replication slot "s" is active for PID 4242' in text
    assert "DETAIL:  held by another walsender" in text
    assert text.startswith("ERROR:")


def test_missing_slot_maps_to_undefined_object():
    error = wire._error_from_fields(error_body("42704", 'replication slot "gone" does not exist'))
    assert type(error) is psycopg2.errors.UndefinedObject
    assert 'replication slot "gone" does not exist' in str(error)
    assert "DETAIL" not in str(error)


@pytest.mark.parametrize("code", ["ZZ999", None])
def test_unknown_or_missing_sqlstate_maps_to_operational_error(code):
    error = wire._error_from_fields(error_body(code, "something odd", "more"))
    assert type(error) is psycopg2.OperationalError
    assert "something odd" in str(error) and "DETAIL:  more" in str(error)


# -- ReplicationStream over a socket pair ----------------------------------------------------------------


def xlog(data_start: int, payload: bytes, wal_end: int | None = None) -> bytes:
    header = wire._XLOG_HEADER.pack(b"w", data_start, data_start if wal_end is None else wal_end, 123)
    return wire._message(b"d", header + payload)


def keepalive(wal_end: int, reply: bool) -> bytes:
    return wire._message(b"d", wire._KEEPALIVE.pack(b"k", wal_end, 456, 1 if reply else 0))


def receive_exactly(sock: socket.socket, size: int, timeout: float = 2.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return data


def receive_status(sock: socket.socket) -> tuple[int, int, int, bool]:
    """(write, flush, apply, reply requested) of the next standby status update the client sent."""
    raw = receive_exactly(sock, STATUS_SIZE)
    kind, length = wire._HEADER.unpack_from(raw)
    assert (kind, length) == (b"d", 4 + wire._STATUS.size)
    tag, write, flush, apply, client_time, reply = wire._STATUS.unpack_from(raw, 5)
    assert tag == b"r"
    now = wire._pg_now()
    assert now - 10_000_000 < client_time <= now  # the protocol's clock, in microseconds since 2000
    return write, flush, apply, bool(reply)


def nothing_sent(sock: socket.socket, wait: float = 0.05) -> bool:
    return not select.select([sock], [], [], wait)[0]


@pytest.fixture
def pair():
    """``(stream, server)``: a ReplicationStream on one end of a socket pair, the raw other end."""
    client, server = socket.socketpair()
    server.settimeout(5)  # a client that stops reading fails the test instead of blocking the sender
    stream = wire.ReplicationStream(wire._Transport(client), backend_pid=4242)
    yield stream, server
    stream.close()
    server.close()


def read_all(stream: wire.ReplicationStream, count: int, timeout: float = 2.0) -> list[tuple[int, bytes]]:
    messages = []
    deadline = time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        message = stream.read(0.2)
        if message is not None:
            messages.append(message)
    return messages


def sample_frames(count: int, seed: int) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    frames, lsn = [], 0x1_0000_0000
    for i in range(count):
        lsn += rng.randint(1, 5000)
        # payloads of every size, including empty and ones whose bytes look like message headers
        payload = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 5, 29, 300, 4000])))
        frames.append((lsn, payload if i % 7 else b"dw\0\0\0\x05" + payload))
    return frames


def test_frames_fed_one_byte_at_a_time_come_out_whole_and_in_order(pair):
    stream, server = pair
    frames = sample_frames(40, seed=1)
    wire_bytes = b"".join(xlog(lsn, payload) for lsn, payload in frames)
    received = []
    for i in range(len(wire_bytes)):
        server.sendall(wire_bytes[i:i + 1])
        message = stream.read(1.0)
        if message is not None:
            received.append(message)
    assert received == frames
    assert stream.read(0.01) is None


def test_frames_in_big_random_chunks_across_read_boundaries(pair):
    stream, server = pair
    frames = sample_frames(1500, seed=2)
    interleaved = []
    for i, (lsn, payload) in enumerate(frames):
        interleaved.append(xlog(lsn, payload))
        if i % 50 == 0:  # keepalives and notices between frames are consumed silently
            interleaved.append(keepalive(lsn, reply=False))
            interleaved.append(wire._message(b"N", b"SNOTICE\0Mhello\0\0"))
    wire_bytes = b"".join(interleaved)
    assert len(wire_bytes) > 2 * wire.READ_CHUNK  # frames straddle the client's read size

    def send() -> None:
        rng = random.Random(3)
        position = 0
        while position < len(wire_bytes):
            size = rng.choice([1, 3, 17, 4096, 65536, 300_000])
            server.sendall(wire_bytes[position:position + size])
            position += size

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = read_all(stream, len(frames), timeout=10)
    sender.join(5)
    assert received == frames
    assert stream.server_lsn == frames[-1][0]


def test_tiny_reads_cut_frames_at_every_offset(pair, monkeypatch):
    stream, server = pair
    monkeypatch.setattr(wire.protocol, "READ_CHUNK", 7)
    frames = sample_frames(60, seed=4)
    payloads = b"".join(xlog(lsn, payload) for lsn, payload in frames)
    sender = threading.Thread(target=server.sendall, args=(payloads,), daemon=True)
    sender.start()
    assert read_all(stream, len(frames), timeout=10) == frames
    sender.join(5)


def test_server_lsn_follows_xlog_wal_end_and_keepalives(pair):
    stream, server = pair
    assert stream.server_lsn == 0
    server.sendall(xlog(100, b"a", wal_end=150))
    assert stream.read(1) == (100, b"a")
    assert stream.server_lsn == 150
    server.sendall(keepalive(900, reply=False))
    assert stream.read(0.2) is None  # only a keepalive arrived
    assert stream.server_lsn == 900
    server.sendall(xlog(950, b"b", wal_end=1000))
    assert stream.read(1) == (950, b"b")
    assert stream.server_lsn == 1000


def test_keepalive_asking_for_a_reply_gets_the_confirmed_position(pair):
    stream, server = pair
    server.sendall(xlog(100, b"a") + xlog(200, b"b"))
    assert read_all(stream, 2) == [(100, b"a"), (200, b"b")]
    stream.confirm(100)
    assert receive_status(server) == (100, 100, 100, True)

    server.sendall(keepalive(500, reply=True))
    assert stream.read(0.2) is None
    # 200 is received but not confirmed: the reply repeats 100, it does not jump to the WAL end.
    assert receive_status(server) == (100, 100, 100, False)

    server.sendall(keepalive(600, reply=False))
    assert stream.read(0.2) is None
    assert nothing_sent(server)  # no reply asked, none sent


def test_confirm_sends_a_status_with_that_lsn_and_never_goes_back(pair):
    stream, server = pair
    stream.confirm(0x2_0000_0010)
    assert receive_status(server) == (0x2_0000_0010,) * 3 + (True,)
    stream.confirm(0x1_0000_0000)  # older than what was confirmed: the report stays put
    assert receive_status(server) == (0x2_0000_0010,) * 3 + (True,)
    stream.request_status()
    assert receive_status(server) == (0x2_0000_0010,) * 3 + (True,)
    stream.keep_alive()  # alive, no reply wanted, nothing new confirmed
    assert receive_status(server) == (0x2_0000_0010,) * 3 + (False,)
    assert stream.confirmed_lsn == 0x2_0000_0010


def test_keepalives_never_move_the_reported_position_even_when_everything_received_is_confirmed(pair):
    stream, server = pair
    server.sendall(keepalive(50, reply=True))
    assert stream.read(0.2) is None
    assert receive_status(server)[1] == 0  # nothing confirmed yet: the server ignores 0

    server.sendall(xlog(100, b"a") + xlog(300, b"b"))
    assert read_all(stream, 2) == [(100, b"a"), (300, b"b")]
    stream.confirm(300)
    receive_status(server)
    server.sendall(keepalive(400, reply=True))
    assert stream.read(0.2) is None
    # Which messages are applied only the engine knows; the stream reports what it was told.
    assert receive_status(server)[1] == 300
    assert stream.server_lsn == 400


# pgoutput as a walsender frames it: XLogData dataStart is the change's LSN for the messages that end
# a write (Begin, Insert, Commit) and 0 for Relation and Type messages (WalSndPrepareWrite with
# last_write=false).
T1_BEGIN, T1_COMMIT_END = 0x1C20_0000, 0x1C20_5F18
T2_BEGIN = 0x1C20_6000
TWO_TRANSACTIONS = [
    (T1_BEGIN, b"B-t1"),
    (0, b"R-relation"),
    (T1_BEGIN + 0x40, b"I-t1-row"),
    (T1_COMMIT_END, b"C-t1"),
    (T2_BEGIN, b"B-t2"),
    (0, b"R-relation-again"),
    (T2_BEGIN + 0x40, b"I-t2-row"),
]
KEEPALIVE_WAL_END = 0x1C20_DD88  # past T1's commit: the server has sent all of T1


@pytest.mark.parametrize("place", range(len(TWO_TRANSACTIONS) + 1))
@pytest.mark.parametrize("confirmed_before", [0, 0x1C1F_0000])
def test_a_keepalive_anywhere_in_or_between_transactions_reports_only_the_confirmed_position(
    pair, place, confirmed_before
):
    """T1 received, not applied; T2 begun; a Relation with dataStart 0; a keepalive past T1's commit.

    The reply must not report a position past T1: a crash then would lose T1 (libpq's rule,
    'everything received is confirmed if the last dataStart is', passes right after a Relation).
    """
    stream, server = pair
    if confirmed_before:
        stream.confirm(confirmed_before)
        receive_status(server)
    frames = [xlog(lsn, payload) for lsn, payload in TWO_TRANSACTIONS]
    frames.insert(place, keepalive(KEEPALIVE_WAL_END, reply=True))
    server.sendall(b"".join(frames))
    assert read_all(stream, len(TWO_TRANSACTIONS)) == TWO_TRANSACTIONS
    assert stream.read(0.1) is None
    write, flush, apply, reply = receive_status(server)
    assert (write, flush, apply) == (confirmed_before,) * 3 and not reply
    assert nothing_sent(server)


def test_error_response_mid_stream_raises_the_mapped_class(pair):
    stream, server = pair
    server.sendall(xlog(100, b"a") + wire._message(b"E", error_body("55006", 'slot "s" is active for PID 1')))
    assert stream.read(1) == (100, b"a")
    with pytest.raises(psycopg2.errors.ObjectInUse, match="is active for PID 1"):
        stream.read(1)


def test_unknown_error_mid_stream_raises_operational_error(pair):
    stream, server = pair
    server.sendall(wire._message(b"E", error_body("ZZ999", "internal trouble", "details")))
    with pytest.raises(psycopg2.OperationalError, match="internal trouble"):
        stream.read(1)


def test_server_ending_the_copy_raises_operational_error(pair):
    stream, server = pair
    server.sendall(wire._message(b"c", b""))
    with pytest.raises(psycopg2.OperationalError, match="ended the replication stream"):
        stream.read(1)


def test_end_of_stream_raises_operational_error(pair):
    stream, server = pair
    server.sendall(xlog(100, b"a"))
    server.close()
    assert stream.read(1) == (100, b"a")  # what arrived before the close is still delivered
    with pytest.raises(psycopg2.OperationalError, match="closed"):
        stream.read(1)


def test_end_of_stream_inside_a_frame_raises_operational_error(pair):
    stream, server = pair
    server.sendall(xlog(100, b"payload")[:-3])
    server.close()
    with pytest.raises(psycopg2.OperationalError, match="closed"):
        for _ in range(3):  # the first read may only take in the partial frame
            assert stream.read(1) is None


@pytest.mark.parametrize(
    "message",
    [
        b"d" + wire._INT32.pack(3),  # a length that cannot even cover itself
        wire._message(b"d", b"w" + bytes(10)),  # XLogData shorter than its header
        wire._message(b"d", b"k" + bytes(5)),  # keepalive shorter than its fields
    ],
    ids=["length", "short-xlogdata", "short-keepalive"],
)
def test_malformed_messages_raise_operational_error(pair, message):
    stream, server = pair
    server.sendall(message + xlog(100, b"never reached"))
    with pytest.raises(psycopg2.OperationalError, match="malformed"):
        stream.read(1)


def test_empty_copy_data_is_skipped(pair):
    stream, server = pair
    server.sendall(wire._message(b"d", b""))  # alone, so it ends the buffer
    assert stream.read(0.2) is None
    server.sendall(xlog(100, b"a"))
    assert stream.read(1) == (100, b"a")


def test_read_times_out_with_none_when_nothing_arrives(pair):
    stream, _ = pair
    started = time.monotonic()
    assert stream.read(0.3) is None
    assert time.monotonic() - started >= 0.25


class RecordingTransport(wire._Transport):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.sent: list[bytes] = []
        self.closes = 0

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)
        super().sendall(data)

    def close(self) -> None:
        self.closes += 1
        super().close()


def test_close_sends_copy_done_and_terminate_once():
    client, server = socket.socketpair()
    transport = RecordingTransport(client)
    stream = wire.ReplicationStream(transport, backend_pid=1)
    try:
        assert not stream.closed
        stream.close()
        assert stream.closed
        assert receive_exactly(server, 10) == b"c\0\0\0\x04X\0\0\0\x04"
        assert server.recv(10) == b""  # and the connection is closed
        stream.close()  # idempotent: nothing more sent, the socket closed once
        assert transport.sent == [b"c\0\0\0\x04X\0\0\0\x04"] and transport.closes == 1
    finally:
        server.close()


def test_close_after_the_server_went_away_does_not_raise(pair):
    stream, server = pair
    server.close()
    stream.close()
    stream.close()
    assert stream.closed


# -- start-up against a scripted server on a Unix socket ----------------------------------------------


def read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    kind, length = wire._HEADER.unpack(receive_exactly(sock, 5))
    return kind, receive_exactly(sock, length - 4)


def auth_request(code: int, extra: bytes = b"") -> bytes:
    return wire._message(b"R", wire._INT32.pack(code) + extra)


READY = (
    auth_request(0)
    + wire._message(b"S", b"server_version\x0016.0\0")
    + wire._message(b"K", wire._INT32.pack(777) + wire._INT32.pack(12345))
    + wire._message(b"Z", b"I")
)


class ScriptedServer:
    """A one-connection server on a Unix socket in a short temporary folder (socket paths are limited
    to ~100 bytes); ``serve(handler)`` runs ``handler(conn, startup)`` in a thread to play the server,
    ``finish()`` waits for it and re-raises what went wrong there."""

    def __init__(self) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="pgw")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(f"{self.folder.name}/.s.PGSQL.6543")
        self.listener.listen(1)
        self.listener.settimeout(5)
        self.errors: list[BaseException] = []
        self.thread: threading.Thread | None = None

    def serve(self, handler) -> dict:
        def run() -> None:
            try:
                conn, _ = self.listener.accept()
                with conn:
                    (length,) = wire._INT32.unpack(receive_exactly(conn, 4))
                    body = receive_exactly(conn, length - 4)
                    (version,) = wire._INT32.unpack_from(body)
                    assert version == wire.PROTOCOL_VERSION
                    items = body[4:].split(b"\0")[:-2]
                    startup = {items[i].decode(): items[i + 1].decode() for i in range(0, len(items), 2)}
                    handler(conn, startup)
            except BaseException as exc:
                self.errors.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return {"host": self.folder.name, "port": 6543, "user": "alice", "password": "postgres", "dbname": "src"}

    def finish(self) -> None:
        if self.thread is not None:
            self.thread.join(5)
            assert not self.thread.is_alive(), "the scripted server did not finish"
            self.thread = None
        if self.errors:
            raise self.errors.pop(0)

    def close(self) -> None:
        self.listener.close()
        self.folder.cleanup()


@pytest.fixture
def scripted_server():
    server = ScriptedServer()
    yield server
    try:
        server.finish()
    finally:
        server.close()


def test_start_up_with_cleartext_password_then_streaming(scripted_server):
    seen = {}

    def handler(conn, startup):
        seen["startup"] = startup
        conn.sendall(auth_request(3))
        seen["password"] = read_message(conn)
        conn.sendall(READY)
        seen["query"] = read_message(conn)
        # The CopyBothResponse and the first frames in one segment: nothing may be lost.
        conn.sendall(wire._message(b"W", b"\0\0\0") + xlog(0x10, b"first") + xlog(0x20, b"second"))
        seen["after"] = read_message(conn)

    params = scripted_server.serve(handler)
    stream = wire.start_logical_stream(params | {"application_name": "probe"}, 'sl"ot', 0x1_0000_0002,
                                       {"publication_names": "p"})
    try:
        assert stream.backend_pid == 777
        assert read_all(stream, 2) == [(0x10, b"first"), (0x20, b"second")]
    finally:
        stream.close()
    scripted_server.finish()
    assert seen["startup"] == {
        "user": "alice", "database": "src", "replication": "database",
        "application_name": "probe", "client_encoding": "UTF8",
    }
    assert seen["password"] == (b"p", b"postgres\0")
    assert seen["query"] == (
        b"Q", b'START_REPLICATION SLOT "sl""ot" LOGICAL 1/2 ("publication_names" \'p\')\0'
    )
    assert seen["after"] == (b"c", b"")


def test_start_up_with_md5_password(scripted_server):
    salt = b"\x01\x02\x03\x04"
    answers = []

    def handler(conn, startup):
        conn.sendall(auth_request(5, salt))
        answers.append(read_message(conn))
        conn.sendall(READY)
        read_message(conn)
        conn.sendall(wire._message(b"W", b"\0\0\0"))

    params = scripted_server.serve(handler) | {"user": "postgres"}
    wire.start_logical_stream(params, "s", 0, {}).close()
    scripted_server.finish()
    # md5(password + user) is the stored hash PostgreSQL keeps for postgres/postgres.
    stored = "3175bce1d3201d16594cebf9d7eb3f9d"
    expected = b"md5" + hashlib.md5(stored.encode() + salt).hexdigest().encode() + b"\0"
    assert answers == [(b"p", expected)]


@pytest.mark.parametrize(
    "request_",
    [auth_request(7), auth_request(10, b"SCRAM-SHA-256-PLUS\0\0")],
    ids=["gss", "sasl-without-scram-sha-256"],
)
def test_unsupported_authentication_is_an_operational_error(scripted_server, request_):
    def handler(conn, startup):
        conn.sendall(request_)
        conn.settimeout(5)
        assert conn.recv(1) == b""  # the client gives up and closes

    params = scripted_server.serve(handler)
    with pytest.raises(psycopg2.OperationalError, match="unsupported authentication|SASL mechanism"):
        wire.start_logical_stream(params, "s", 0, {})


def test_error_during_start_up_raises_the_mapped_class(scripted_server):
    def handler(conn, startup):
        conn.sendall(auth_request(3))
        read_message(conn)
        conn.sendall(wire._message(b"E", error_body("28P01", 'password authentication failed for user "alice"')))

    params = scripted_server.serve(handler)
    with pytest.raises(psycopg2.errors.InvalidPassword, match="password authentication failed"):
        wire.start_logical_stream(params, "s", 0, {})


def test_connection_closed_during_start_up_is_an_operational_error(scripted_server):
    params = scripted_server.serve(lambda conn, startup: conn.sendall(auth_request(3)[:4]))
    with pytest.raises(psycopg2.OperationalError, match="during start-up"):
        wire.start_logical_stream(params, "s", 0, {})


def test_no_server_on_the_socket_is_an_operational_error(tmp_path):
    with pytest.raises(psycopg2.OperationalError, match="failed"):
        wire.start_logical_stream({"host": str(tmp_path), "port": 1}, "s", 0, {})


# -- TLS over memory buffers ---------------------------------------------------------------------------


def write_certificate(folder) -> tuple[str, str]:
    """A self-signed certificate for localhost and its key, as PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.crt", folder / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return str(cert_path), str(key_path)


def tls_server(sock: socket.socket, context: ssl.SSLContext, records: list[bytes], close: bool) -> None:
    """Handshake, then write each of ``records`` as its own TLS record and send them all in one
    segment (as a walsender's flushed messages pile up); with ``close``, follow them with close_notify
    and end the TCP stream, as a server does when it ends a session."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            incoming.write(sock.recv(65536))
    for record in records:
        tls.write(record)
    if close:
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.unwrap()
    sock.sendall(outgoing.read())
    if close:
        sock.shutdown(socket.SHUT_WR)


class ReleasedTls:
    """Stands in for a TLS session that a read is stuck on, so that read ends and the test can report."""

    def read(self, size: int) -> bytes:
        raise ssl.SSLWantReadError

    def write(self, data: bytes) -> int:
        raise ssl.SSLError("released")


def bounded(action, transport: wire._TlsTransport, seconds: float = 3.0) -> tuple[str, object]:
    """``("raised", exc)``, ``("returned", value)`` or ``("stuck", None)`` when ``action`` is still
    running after ``seconds`` (the TLS session is then swapped out so the thread ends)."""
    outcome: list[tuple[str, object]] = []

    def run() -> None:
        try:
            outcome.append(("returned", action()))
        except BaseException as exc:
            outcome.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        transport._tls = ReleasedTls()
        thread.join(5)
        return "stuck", None
    return outcome[0]


@pytest.fixture
def tls_pair(tmp_path):
    """``connect(records, close) -> (stream, transport)``: a ReplicationStream on a _TlsTransport whose
    server already sent ``records`` (and close_notify) before the first read."""
    cert, key = write_certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    opened = []

    def connect(records: list[bytes], close: bool):
        client, server = socket.socketpair()
        client.settimeout(5)
        server.settimeout(5)
        serving = threading.Thread(target=tls_server, args=(server, server_context, records, close), daemon=True)
        serving.start()
        transport = wire._TlsTransport(client, client_context, "localhost")
        serving.join(5)
        stream = wire.ReplicationStream(transport, backend_pid=1)
        opened.append((stream, server))
        return stream, transport

    yield connect
    for stream, server in opened:
        stream.close()
        server.close()


def test_tls_transport_delivers_many_records_from_one_segment(tls_pair):
    frames = sample_frames(200, seed=5)
    stream, transport = tls_pair([xlog(lsn, payload) for lsn, payload in frames], close=False)
    outcome, value = bounded(lambda: read_all(stream, len(frames)), transport)
    assert outcome == "returned" and value == frames


def test_tls_close_notify_from_the_server_raises_operational_error(tls_pair):
    stream, transport = tls_pair([xlog(0x10, b"last")], close=True)

    def read_until_error() -> None:
        for _ in range(10):
            stream.read(0.2)

    outcome, value = bounded(read_until_error, transport)
    assert outcome == "raised", f"read() did not return: {outcome}"
    assert isinstance(value, psycopg2.OperationalError)
