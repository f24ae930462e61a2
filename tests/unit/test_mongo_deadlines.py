"""A Mongo server that accepts connections and then never answers fails the caller within its deadline.

The fake server completes pymongo's handshake (``hello``/``isMaster``, over OP_MSG or OP_QUERY) and
then reads every later command without ever replying, as a wedged wire server did.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from datetime import UTC, datetime

import bson
import pytest
from pymongo.errors import PyMongoError

from paydata import settings
from paydata.cdc.sinks.mongo import MongoSink

HELLO = {"ismaster": True, "isWritablePrimary": True, "helloOk": True, "maxWireVersion": 17, "minWireVersion": 0,
         "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000,
         "logicalSessionTimeoutMinutes": 30, "connectionId": 1, "ok": 1.0}
OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError
        data += chunk
    return data


def _serve(conn: socket.socket, wedged: list[str]) -> None:
    try:
        while True:
            length, request_id, _, opcode = struct.unpack("<iiii", _read_exactly(conn, 16))
            body = _read_exactly(conn, length - 16)
            if opcode == OP_MSG:
                command = bson.decode(body[5:5 + struct.unpack_from("<i", body, 5)[0]])
            else:  # OP_QUERY: flags, collection name, skip, return, query
                name_end = body.index(b"\0", 4)
                start = name_end + 1 + 8
                command = bson.decode(body[start:start + struct.unpack_from("<i", body, start)[0]])
            name = next(iter(command)).lower()
            if name not in {"hello", "ismaster"}:
                wedged.append(name)
                continue  # read, never answered
            reply = bson.encode({**HELLO, "localTime": datetime.now(UTC)})
            if opcode == OP_MSG:
                payload = struct.pack("<I", 0) + b"\0" + reply
                conn.sendall(struct.pack("<iiii", 16 + len(payload), 1, request_id, OP_MSG) + payload)
            else:
                payload = struct.pack("<iqii", 0, 0, 0, 1) + reply
                conn.sendall(struct.pack("<iiii", 16 + len(payload), 1, request_id, OP_REPLY) + payload)
    except (ConnectionError, OSError):
        pass
    finally:
        conn.close()


@pytest.fixture
def wedged_server():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    wedged: list[str] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_serve, args=(conn, wedged), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], wedged
    listener.close()


def test_every_client_the_platform_builds_has_a_socket_deadline():
    assert all(0 < value <= 120_000 for value in settings.MONGO_DEADLINES.values())


def test_a_sink_on_a_wedged_server_fails_within_its_deadline(wedged_server, monkeypatch):
    port, wedged = wedged_server
    monkeypatch.setenv("AIRFLOW_CONN_PAYDATA_MONGO_WEDGED", json.dumps(
        {"conn_type": "mongo", "host": "127.0.0.1", "port": port, "schema": "paydata", "extra": {}}))
    client = settings.mongo_client("paydata_mongo_wedged", socketTimeoutMS=800)
    assert client.options.pool_options.socket_timeout == 0.8
    sink = MongoSink(lambda: client["paydata"])
    started = time.monotonic()
    with pytest.raises(PyMongoError, match="timed out"):
        sink.applied_position("oltp")
    assert time.monotonic() - started < 10
    assert "find" in wedged  # the server got the command and never answered it
    client.close()


def test_the_default_deadline_applies_without_overrides(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PAYDATA_MONGO_WEDGED", json.dumps(
        {"conn_type": "mongo", "host": "127.0.0.1", "port": 1, "schema": "paydata", "extra": {}}))
    client = settings.mongo_client("paydata_mongo_wedged")
    assert client.options.pool_options.socket_timeout == settings.MONGO_DEADLINES["socketTimeoutMS"] / 1000
    assert client.options.server_selection_timeout == settings.MONGO_DEADLINES["serverSelectionTimeoutMS"] / 1000
    client.close()


def _plaintext_uri(config, port=None):
    return f"mongodb://127.0.0.1:{port or config.mongo_port}/?directConnection=true"


def test_the_stack_health_ping_gives_up_on_a_wedged_server(wedged_server, monkeypatch, tmp_path):
    from paydata.stack import StackConfig
    from paydata.stack import mongo as stack_mongo

    port, wedged = wedged_server
    monkeypatch.setattr(stack_mongo, "uri", _plaintext_uri)
    config = StackConfig(state_dir=tmp_path, pg_port=61000, mongo_port=port)
    started = time.monotonic()
    assert stack_mongo.ping(config, timeout_ms=500) is False
    assert time.monotonic() - started < 10
    assert "ping" in wedged  # the handshake worked; the command was never answered


def test_up_restarts_a_server_that_runs_but_never_answers(wedged_server, monkeypatch, tmp_path):
    from paydata.stack import StackConfig
    from paydata.stack import mongo as stack_mongo

    port, wedged = wedged_server
    config = StackConfig(state_dir=tmp_path, pg_port=61000, mongo_port=port)
    config.mongo_pid_file.parent.mkdir(parents=True, exist_ok=True)
    stopped: list[int] = []

    class FreshProcess:
        pid = 777

        def poll(self):
            return None

    monkeypatch.setattr(stack_mongo, "uri", _plaintext_uri)
    monkeypatch.setattr(stack_mongo, "START_TIMEOUT", 1)
    monkeypatch.setattr(stack_mongo, "running_pid", lambda config: None if stopped else 4242)
    monkeypatch.setattr(stack_mongo, "_runs_current_options", lambda pid, config: True)
    monkeypatch.setattr(stack_mongo, "stop", lambda config: stopped.append(4242) or True)
    monkeypatch.setattr(stack_mongo, "port_in_use", lambda port: False)
    monkeypatch.setattr(stack_mongo, "_check_installed", lambda python: None)
    monkeypatch.setattr(stack_mongo, "_spawn", lambda config, args: FreshProcess())
    monkeypatch.setattr(stack_mongo, "_wait_ready", lambda config, process, port: None)

    assert stack_mongo.start(config) == 777
    assert stopped == [4242] and "ping" in wedged
    assert config.mongo_pid_file.read_text().strip() == "777"
