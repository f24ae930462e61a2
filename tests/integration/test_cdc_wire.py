"""The replication protocol client against the local stack's Postgres: it must stream exactly what
libpq (psycopg2) streams, over the Unix socket and over TLS, confirm positions the server keeps, and
fail with the same error classes."""

from __future__ import annotations

import datetime
import random
import select
import ssl
import string
import threading
import time
import uuid

import psycopg2
import psycopg2.errors
import pytest
from psycopg2.extras import LogicalReplicationConnection

from paydata import settings
from paydata.cdc import capture, wire
from paydata.cdc.pgoutput import parse_lsn

pytestmark = pytest.mark.integration


SCHEMA = """
CREATE TABLE item (id bigint PRIMARY KEY, label text NOT NULL, amount numeric(12, 2), blob text);
GRANT USAGE ON SCHEMA public TO paydata_cdc;
GRANT SELECT ON item TO paydata_cdc;
"""
CREATE_PUBLICATION = "CREATE PUBLICATION {} FOR TABLE item"
CREATE_SLOT = "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')"
END_MARKER = b"wire-test-end"
# Random letters defeat compression: one change larger than the client's read size.
HUGE_BLOB = "".join(random.Random(11).choices(string.ascii_letters, k=wire.READ_CHUNK + 50_000))


class Source:
    """A fresh source database with a table, a publication and the slots a test creates."""

    def __init__(self, dbname: str, admin, name: str):
        self.dbname = dbname
        self.admin = admin
        self.publication = name
        self.slot_prefix = name
        self.slots: list[str] = []

    def execute(self, statement, params=None):
        with self.admin.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else None

    def create_slot(self, suffix: str) -> str:
        slot = f"{self.slot_prefix}_{suffix}"
        self.execute(CREATE_SLOT, (slot,))
        self.slots.append(slot)
        return slot

    def options(self) -> dict[str, str]:
        return {"proto_version": "1", "publication_names": self.publication, "messages": "true"}

    def unix_kwargs(self, **overrides) -> dict:
        return settings.connection("paydata_cdc_oltp").psycopg2_kwargs(dbname=self.dbname, **overrides)

    def tls_kwargs(self, **overrides) -> dict:
        warehouse = settings.connection(settings.WAREHOUSE_CONN_ID).psycopg2_kwargs()
        tls = {key: warehouse[key] for key in ("port", "sslmode", "sslrootcert")}
        return self.unix_kwargs(host="localhost", **tls) | overrides

    def slot(self, slot: str) -> dict:
        rows = self.execute(
            "SELECT active_pid, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        )
        active_pid, confirmed = rows[0]
        return {"active_pid": active_pid, "confirmed_flush": parse_lsn(confirmed)}

    def write_backlog(self) -> None:
        """Inserts, updates (one keeping a TOASTed value), deletes, a truncate and logical messages,
        in many transactions; ends with a non-transactional marker message."""
        for first in range(1, 3001, 500):
            self.execute(
                "INSERT INTO item (id, label, amount) SELECT g, 'label ' || g, g / 100.0 "
                "FROM generate_series(%s, %s) g",
                (first, first + 499),
            )
        self.execute("INSERT INTO item (id, label, blob) VALUES (0, 'huge', %s)", (HUGE_BLOB,))
        self.execute("UPDATE item SET amount = amount + 1 WHERE id % 7 = 0 OR id = 0")
        self.execute("SELECT pg_logical_emit_message(true, 'wire.test', 'in a transaction')")
        self.execute("DELETE FROM item WHERE id BETWEEN 100 AND 400")
        self.execute("TRUNCATE item")
        self.execute("INSERT INTO item (id, label) VALUES (1, 'after truncate')")
        self.execute("SELECT pg_logical_emit_message(false, 'wire.test', %s)", (END_MARKER,))


@pytest.fixture
def source(stack, fresh_database, admin_connect):
    dbname = fresh_database(prefix="wiresrc")
    admin = admin_connect(dbname)
    admin.autocommit = True
    src = Source(dbname, admin, f"t_wire_{uuid.uuid4().hex[:12]}")
    src.execute(SCHEMA)
    src.execute(CREATE_PUBLICATION.format(src.publication))
    yield src
    # A database with slots cannot be dropped; a slot held by a walsender cannot be dropped.
    src.execute(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
        "WHERE slot_name LIKE %s AND active_pid IS NOT NULL",
        (src.slot_prefix + "%",),
    )
    for slot in src.slots:
        capture.drop_slot(admin, slot, wait_seconds=10)
    admin.close()


def is_end(payload: bytes, marker: bytes = END_MARKER) -> bool:
    return payload[:1] == b"M" and payload.endswith(marker)


def read_with_psycopg2(kwargs: dict, slot: str, options: dict) -> list[tuple[int, bytes]]:
    conn = psycopg2.connect(connection_factory=LogicalReplicationConnection, **kwargs)
    try:
        cursor = conn.cursor()
        cursor.start_replication(slot_name=slot, decode=False, options=options)
        messages: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = cursor.read_message()
            if message is None:
                select.select([conn], [], [], 0.5)
                continue
            messages.append((message.data_start, bytes(message.payload)))
            if is_end(messages[-1][1]):
                return messages
        raise AssertionError(f"psycopg2 stream did not reach the end marker ({len(messages)} messages)")
    finally:
        conn.close()


def read_until_end(stream: wire.ReplicationStream, marker: bytes = END_MARKER) -> list[tuple[int, bytes]]:
    messages: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        message = stream.read(0.5)
        if message is not None:
            messages.append(message)
            if is_end(message[1], marker):
                return messages
    raise AssertionError(f"wire stream did not reach the end marker ({len(messages)} messages)")


def read_with_wire(kwargs: dict, slot: str, options: dict) -> list[tuple[int, bytes]]:
    stream = wire.start_logical_stream(kwargs, slot, 0, options)
    try:
        return read_until_end(stream)
    finally:
        stream.close()


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# -- same messages as libpq ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["unix", "tls"])
def test_wire_stream_gives_the_same_messages_as_psycopg2(source, transport):
    reference_slot, wire_slot = source.create_slot("ref"), source.create_slot("wire")
    source.write_backlog()
    kwargs = source.unix_kwargs() if transport == "unix" else source.tls_kwargs()
    if transport == "tls":
        assert kwargs["sslmode"] == "verify-full" and kwargs["host"] == "localhost"

    expected = read_with_psycopg2(source.unix_kwargs(), reference_slot, source.options())
    received = read_with_wire(kwargs, wire_slot, source.options())

    assert len(expected) > 3000
    assert any(len(payload) > wire.READ_CHUNK for _, payload in expected)  # the TOASTed insert
    assert {payload[:1] for _, payload in expected} >= {b"B", b"C", b"R", b"I", b"U", b"D", b"T", b"M"}
    assert received == expected


# -- confirming ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["unix", "tls"])
def test_confirmed_position_reaches_the_slot(source, transport):
    slot = source.create_slot("confirm")
    source.write_backlog()
    kwargs = source.unix_kwargs() if transport == "unix" else source.tls_kwargs()
    before = source.slot(slot)["confirmed_flush"]

    # Reading without confirming leaves the slot where it was.
    stream = wire.start_logical_stream(kwargs, slot, 0, source.options())
    try:
        messages = read_until_end(stream)
    finally:
        stream.close()
    assert wait_until(lambda: source.slot(slot)["active_pid"] is None)
    assert source.slot(slot)["confirmed_flush"] == before

    # The same messages again (nothing was confirmed), this time confirming the end marker.
    stream = wire.start_logical_stream(kwargs, slot, 0, source.options())
    try:
        again = read_until_end(stream)
        target = again[-1][0]
        assert target > before
        stream.confirm(target)
    finally:
        stream.close()
    assert again == messages
    assert wait_until(lambda: source.slot(slot)["active_pid"] is None)
    assert source.slot(slot)["confirmed_flush"] >= target

    # A new session resumes at the confirmed position: nothing below it comes back (the marker
    # itself starts at that position, so the server may send it again).
    later = b"after-" + END_MARKER
    stream = wire.start_logical_stream(kwargs, slot, 0, source.options())
    try:
        source.execute("SELECT pg_logical_emit_message(false, 'wire.test', %s)", (later,))
        resumed = read_until_end(stream, later)
    finally:
        stream.close()
    assert all(data_start >= target for data_start, _ in resumed)
    assert [payload for _, payload in resumed if payload != messages[-1][1]] == [resumed[-1][1]]


# -- errors ----------------------------------------------------------------------------------------------


def test_wrong_password_fails_authentication(source):
    slot = source.create_slot("auth")
    kwargs = source.unix_kwargs(password="not-the-password")
    with pytest.raises(psycopg2.OperationalError, match="authentication"):
        wire.start_logical_stream(kwargs, slot, 0, source.options())
    assert source.slot(slot)["active_pid"] is None


class ReleasedTls:
    """Stands in for a TLS session that a read is stuck on, so that read ends and the test can report."""

    def read(self, size: int) -> bytes:
        raise ssl.SSLWantReadError

    def write(self, data: bytes) -> int:
        raise ssl.SSLError("released")


def bounded(action, transports: list, seconds: float = 3.0) -> tuple[str, object]:
    """``("raised", exc)``, ``("returned", value)`` or ``("stuck", None)`` when ``action`` is still
    running after ``seconds`` (TLS sessions in ``transports`` are then swapped out so it ends)."""
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
        for transport in transports:
            if isinstance(transport, wire._TlsTransport):
                transport._tls = ReleasedTls()
        thread.join(5)
        return "stuck", None
    return outcome[0]


def test_wrong_password_over_tls_fails_authentication(source, monkeypatch):
    slot = source.create_slot("tlsauth")
    transports: list = []
    send = wire._TlsTransport.sendall

    def slow_client_sendall(self, data: bytes) -> None:
        transports.append(self)
        send(self, data)
        if data[:1] == b"p" and b"c=biws" in data:
            time.sleep(0.5)  # a busy client: the server's error and its close_notify arrive together

    monkeypatch.setattr(wire._TlsTransport, "sendall", slow_client_sendall)
    kwargs = source.tls_kwargs(password="not-the-password")
    outcome, error = bounded(lambda: wire.start_logical_stream(kwargs, slot, 0, source.options()), transports)
    assert outcome == "raised", f"start_logical_stream did not return: {outcome}"
    assert isinstance(error, psycopg2.OperationalError) and "authentication" in str(error)


@pytest.mark.parametrize("transport", ["unix", "tls"])
def test_terminated_walsender_raises_operational_error(source, transport):
    slot = source.create_slot("kill")
    kwargs = source.unix_kwargs() if transport == "unix" else source.tls_kwargs()
    stream = wire.start_logical_stream(kwargs, slot, 0, source.options())
    try:
        source.execute("SELECT pg_terminate_backend(%s)", (stream.backend_pid,))
        # Once the slot is released the walsender is gone; its last words wait in our socket.
        assert wait_until(lambda: source.slot(slot)["active_pid"] is None)

        def read_until_error() -> None:
            for _ in range(10):
                stream.read(0.2)

        outcome, error = bounded(read_until_error, [stream._transport])
        assert outcome == "raised", f"read() did not return: {outcome}"
        assert isinstance(error, psycopg2.OperationalError)
        assert "terminating connection" in str(error)
    finally:
        stream.close()


def test_missing_slot_raises_undefined_object(source):
    with pytest.raises(psycopg2.errors.UndefinedObject, match="does not exist"):
        wire.start_logical_stream(source.unix_kwargs(), f"{source.slot_prefix}_missing", 0, source.options())


def test_slot_held_by_psycopg2_raises_object_in_use_and_slot_busy(source):
    slot = source.create_slot("busy")
    holder = psycopg2.connect(connection_factory=LogicalReplicationConnection, **source.unix_kwargs())
    try:
        holder.cursor().start_replication(slot_name=slot, decode=False, options=source.options())
        assert wait_until(lambda: source.slot(slot)["active_pid"] == holder.get_backend_pid())
        with pytest.raises(psycopg2.errors.ObjectInUse, match="is active for PID"):
            wire.start_logical_stream(source.unix_kwargs(), slot, 0, source.options())

        started = time.monotonic()
        with pytest.raises(capture.SlotBusyError, match="another consumer is running"):
            capture.start_stream(source.unix_kwargs, slot, source.publication, 0, wait_seconds=0.5)
        assert time.monotonic() - started >= 0.5  # it retried until the wait ran out
    finally:
        holder.close()


def test_slot_held_by_a_wire_stream_is_busy_for_psycopg2(source):
    slot = source.create_slot("held")
    stream = wire.start_logical_stream(source.tls_kwargs(), slot, 0, source.options())
    try:
        conn = psycopg2.connect(connection_factory=LogicalReplicationConnection, **source.unix_kwargs())
        try:
            with pytest.raises(psycopg2.errors.ObjectInUse):
                conn.cursor().start_replication(slot_name=slot, decode=False, options=source.options())
        finally:
            conn.close()
    finally:
        stream.close()
    # Once closed, the slot is free again.
    assert wait_until(lambda: source.slot(slot)["active_pid"] is None)
    wire.start_logical_stream(source.unix_kwargs(), slot, 0, source.options()).close()


def write_throwaway_ca(folder) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "throwaway test CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = folder / "throwaway-ca.crt"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_verify_full_with_a_foreign_ca_fails(source, tmp_path):
    slot = source.create_slot("ca")
    kwargs = source.tls_kwargs(sslrootcert=write_throwaway_ca(tmp_path))
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        wire.start_logical_stream(kwargs, slot, 0, source.options())
    # The right CA on the same host and port works: the failure was the certificate, nothing else.
    wire.start_logical_stream(source.tls_kwargs(), slot, 0, source.options()).close()


@pytest.mark.parametrize("sslmode", ["require", "verify-full"])
def test_tls_modes_over_a_unix_socket_are_refused(source, sslmode):
    slot = source.create_slot("unixtls")
    kwargs = source.unix_kwargs(sslmode=sslmode)
    assert kwargs["host"].startswith("/")
    with pytest.raises(psycopg2.OperationalError, match="Unix socket"):
        wire.start_logical_stream(kwargs, slot, 0, source.options())


# -- the session on the server ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["unix", "tls"])
def test_backend_pid_is_the_walsender_streaming_the_slot(source, transport):
    slot = source.create_slot("pid")
    application = f"wire-test-{uuid.uuid4().hex[:8]}"
    kwargs = source.unix_kwargs() if transport == "unix" else source.tls_kwargs()
    stream = wire.start_logical_stream(kwargs | {"application_name": application}, slot, 0, source.options())
    try:
        assert stream.backend_pid > 0

        def walsenders():
            return source.execute(
                "SELECT r.pid, s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) "
                "WHERE r.application_name = %s",
                (application,),
            )

        assert wait_until(lambda: bool(walsenders()))
        assert walsenders() == [(stream.backend_pid, transport == "tls")]
        assert source.slot(slot)["active_pid"] == stream.backend_pid
    finally:
        stream.close()
    assert wait_until(lambda: not walsenders())
