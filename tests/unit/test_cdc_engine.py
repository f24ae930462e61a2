"""Engine pieces that need no database: COPY parsing, slot health verdicts, engine wiring, and how
the stream is cut into batches and confirmed (against a scripted replication stream)."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from decimal import Decimal

import pytest

from paydata.cdc import wire
from paydata.cdc.capture import CopyRowReader, copy_text_field
from paydata.cdc.engine import SNAPSHOT_INDEX_BASE, CdcEngine, EngineLimits
from paydata.cdc.health import SlotLostError, assess_slot, resnapshot_command
from paydata.cdc.manifest import SchemaDriftError, SourceColumn, load_manifest
from paydata.cdc.model import Position


class MemoryLedger:
    """The confirm ledger in memory (the engine's contract: written before every reported position)."""

    def __init__(self, slot: str = "s", lsn: int = 0):
        self.slot, self.lsn, self.source_time = slot, lsn, None

    def entry(self, source):
        from paydata.cdc.ledger import LedgerEntry

        return LedgerEntry(self.slot, self.lsn, self.source_time)

    def reset(self, source, slot, lsn, source_time):
        self.slot, self.lsn, self.source_time = slot, lsn, source_time

    def advance(self, source, slot, lsn, source_time):
        assert slot == self.slot
        if lsn >= self.lsn:
            self.lsn, self.source_time = lsn, source_time or self.source_time

    def close(self):
        pass


class MemoryDeadLetters:
    def __init__(self):
        self.letters = []

    def record(self, letters):
        self.letters.extend(letters)

    def counts(self, source):
        return len(self.letters), len(self.letters)

    def close(self):
        pass


class MemorySink:
    def __init__(self, name: str):
        self.name = name
        self.position = Position.zero()

    def prepare(self, specs):
        pass

    def applied_position(self, source):
        return self.position

    def apply(self, source, changes):
        self.position = max(self.position, changes[-1].position)
        return self.position


@pytest.mark.parametrize(
    ("raw", "value"),
    [("\\N", None), ("plain", "plain"), ("a\\tb\\nc\\\\d", "a\tb\nc\\d"), ("\\101\\x42", "AB"), ("", "")],
)
def test_copy_text_fields(raw, value):
    assert copy_text_field(raw) == value


def test_copy_reader_parses_rows_across_chunk_boundaries_with_the_decoder_types():
    columns = [SourceColumn("id", 20, "bigint"), SourceColumn("amount", 1700, "numeric"), SourceColumn("note", 25, "text")]
    chunks: list[list[dict]] = []
    reader = CopyRowReader(columns, chunks.append, chunk_rows=2)
    data = "1\t1.50\tx\\ty\n2\t\\N\t\\N\n3\t7\tlast\n"
    for start in range(0, len(data), 5):  # COPY hands data over in arbitrary pieces
        reader.write(data[start:start + 5])
    reader.flush()
    assert chunks == [
        [{"id": 1, "amount": Decimal("1.50"), "note": "x\ty"}, {"id": 2, "amount": None, "note": None}],
        [{"id": 3, "amount": Decimal("7"), "note": "last"}],
    ]


def test_copy_reader_rejects_wrong_field_counts_and_truncated_output():
    reader = CopyRowReader([SourceColumn("id", 20, "bigint")], lambda rows: None, chunk_rows=10)
    with pytest.raises(ValueError, match="2 fields"):
        reader.write("1\t2\n")
    reader = CopyRowReader([SourceColumn("id", 20, "bigint")], lambda rows: None, chunk_rows=10)
    reader.write("1\n2")
    with pytest.raises(ValueError, match="middle of a row"):
        reader.flush()


def test_lost_slot_row_fails_with_the_resnapshot_command():
    row = {"wal_status": "lost", "lag_bytes": 10, "confirmed_flush_lsn": "0/10"}
    with pytest.raises(SlotLostError, match="python -m paydata.cdc resnapshot --source oltp"):
        assess_slot("oltp", "paydata_oltp", row, snapshot_recorded=True)


def test_missing_slot_is_lost_only_after_a_recorded_snapshot():
    assert not assess_slot("oltp", "s", None, snapshot_recorded=False).exists
    with pytest.raises(SlotLostError, match="missing"):
        assess_slot("reference", "s", None, snapshot_recorded=True)
    assert resnapshot_command("reference") == "python -m paydata.cdc resnapshot --source reference"


@pytest.mark.parametrize(("status", "healthy"), [("reserved", True), ("extended", True), ("unreserved", False)])
def test_wal_status_verdicts(status, healthy):
    row = {"wal_status": status, "lag_bytes": 5, "confirmed_flush_lsn": "0/1", "current_wal_lsn": "0/6",
           "active_pid": None}
    health = assess_slot("oltp", "s", row, snapshot_recorded=True)
    assert health.healthy is healthy and health.as_dict()["lag_bytes"] == 5


def test_engine_requires_every_sink_the_manifest_routes_to():
    manifest = load_manifest("oltp")
    with pytest.raises(ValueError, match="mongo"):
        CdcEngine(manifest, [MemorySink("warehouse")], connect=None, replication_connect=None, owner_connect=None,
                  stream_params=None, ledger=MemoryLedger(), dead_letters=MemoryDeadLetters())
    with pytest.raises(ValueError, match="unique"):
        CdcEngine(manifest, [MemorySink("warehouse"), MemorySink("warehouse")], connect=None,
                  replication_connect=None, owner_connect=None, stream_params=None, ledger=MemoryLedger(),
                  dead_letters=MemoryDeadLetters())


def test_snapshot_positions_sort_before_streamed_changes_and_fit_int4():
    assert Position(100, SNAPSHOT_INDEX_BASE) < Position(100, SNAPSHOT_INDEX_BASE + 1) < Position(100, 0)
    assert SNAPSHOT_INDEX_BASE >= -(2**31)


# -- streaming: a scripted replication stream -------------------------------------------------------

ITEM_OID = 7001
COMMIT_MICROS = 800_000_000_000_000


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def begin(final_lsn: int, xid: int) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, COMMIT_MICROS, xid)


def commit(commit_lsn: int, end_lsn: int) -> bytes:
    return b"C" + struct.pack(">BQQq", 0, commit_lsn, end_lsn, COMMIT_MICROS)


def relation(columns: tuple[str, ...] = ("id", "v")) -> bytes:
    out = b"R" + struct.pack(">I", ITEM_OID) + cstr("public") + cstr("item") + b"d" + struct.pack(">h", len(columns))
    for name in columns:
        out += struct.pack(">B", name == "id") + cstr(name) + struct.pack(">Ii", 20, -1)
    return out


def insert(*values: int) -> bytes:
    out = b"I" + struct.pack(">I", ITEM_OID) + b"N" + struct.pack(">h", len(values))
    for value in values:
        text = str(value).encode()
        out += b"t" + struct.pack(">i", len(text)) + text
    return out


def heartbeat(lsn: int) -> bytes:
    return b"M" + struct.pack(">BQ", 0, lsn) + cstr("paydata.heartbeat") + struct.pack(">i", 2) + b"hb"


def transaction(commit_lsn: int, xid: int, rows: list[tuple[int, int]], columns=("id", "v")) -> list:
    """Messages of one transaction as the server sends them: (lsn, payload)."""
    messages = [(commit_lsn - 100, begin(commit_lsn, xid)), (commit_lsn - 99, relation(columns))]
    messages += [(commit_lsn - 90 + i, insert(*row)) for i, row in enumerate(rows)]
    return [*messages, (commit_lsn + 8, commit(commit_lsn, commit_lsn + 8))]


class ScriptedStream:
    """Stands in for wire.ReplicationStream: plays messages, then keepalives carrying ``server_lsn``."""

    def __init__(self, messages, keepalive_lsn: int = 0, sinks=(), ledger=None):
        self.messages = list(messages)
        self.keepalive_lsn = keepalive_lsn
        self.server_lsn = 0
        self.sinks = sinks
        self.ledger = ledger
        self.confirmed: list[tuple[int, dict]] = []
        self.keepalives = 0

    def read(self, timeout):
        if self.messages:
            lsn, payload = self.messages.pop(0)
            self.server_lsn = lsn
            return lsn, payload
        self.server_lsn = max(self.server_lsn, self.keepalive_lsn)
        return None

    def confirm(self, lsn):
        # The ledger is written before the server is told: it always covers what was confirmed.
        assert self.ledger is None or self.ledger.lsn >= lsn
        self.confirmed.append((lsn, {sink.name: sink.position for sink in self.sinks}))

    def request_status(self):
        pass

    def keep_alive(self):
        self.keepalives += 1


class RecordingSink(MemorySink):
    def __init__(self, name: str):
        super().__init__(name)
        self.batches: list[list] = []

    def apply(self, source, changes):
        self.batches.append([(c.position, c.row["id"]) for c in changes])
        return super().apply(source, changes)


def streaming_engine(**limits):
    manifest = load_manifest({
        "source": "tsrc", "slot": "s", "publication": "s",
        "tables": {"item": {"key": ["id"], "sinks": ["warehouse"], "columns": {"id": "keep", "v": "keep"}}},
    })
    manifest.tokenise = lambda value, domain: f"tok_{domain}_{value}"  # no token key needed
    sink = RecordingSink("warehouse")
    engine = CdcEngine(manifest, [sink], connect=None, replication_connect=None, owner_connect=None,
                       stream_params=None, ledger=MemoryLedger(), dead_letters=MemoryDeadLetters(),
                       limits=EngineLimits(stream_idle_seconds=0.05, **limits))
    return engine, sink


def stream(engine, sink, messages, *, keepalive_lsn=0, target=10**9, max_batches=None, applied=None):
    scripted = ScriptedStream(messages, keepalive_lsn, [sink], engine.ledger)
    report = {"batches": 0, "transactions": 0, "changes_read": 0, "dead_lettered": 0, "applied": {sink.name: 0}}
    caught_up = engine._stream_batches(None, scripted, {sink.name: applied or Position.zero()}, report, 0, target,
                                       max_batches=max_batches, upto_lsn=None)
    return caught_up, scripted, report


def test_batches_hold_whole_transactions_and_are_confirmed_after_the_sink_applied_them():
    engine, sink = streaming_engine(batch_changes=4)
    messages = (transaction(1000, 1, [(1, 10), (2, 20)]) + transaction(2000, 2, [(3, 30)])
                + transaction(3000, 3, [(4, 40), (5, 50), (6, 60)]))
    caught_up, scripted, report = stream(engine, sink, messages, keepalive_lsn=3500, target=3400)
    assert caught_up
    # A batch ends at the first commit after the limit: never inside a transaction.
    assert sink.batches == [
        [(Position(1000, 0), 1), (Position(1000, 1), 2)],
        [(Position(2000, 0), 3)],
        [(Position(3000, 0), 4), (Position(3000, 1), 5), (Position(3000, 2), 6)],
    ]
    # Each confirmation is the end LSN of a transaction the sink had already applied in full; caught up
    # with nothing open, the run ends by confirming the server's sent position (its last keepalive).
    assert scripted.confirmed == [
        (1008, {"warehouse": Position(1000, 1)}),
        (2008, {"warehouse": Position(2000, 0)}),
        (3008, {"warehouse": Position(3000, 2)}),
        (3500, {"warehouse": Position(3000, 2)}),
    ]
    assert engine.ledger.lsn == 3500
    assert report["batches"] == 3 and report["transactions"] == 3 and report["applied"]["warehouse"] == 6


def test_a_commit_past_the_target_ends_the_run_without_waiting_for_the_stream():
    engine, sink = streaming_engine()
    messages = transaction(1000, 1, [(1, 1)]) + transaction(2000, 2, [(2, 2)]) + transaction(3000, 3, [(3, 3)])
    caught_up, scripted, _ = stream(engine, sink, messages, target=1500)
    assert caught_up and [lsn for lsn, _ in scripted.confirmed] == [2008]
    assert scripted.messages == transaction(3000, 3, [(3, 3)])  # left for the next run


def test_a_heartbeat_advances_an_idle_slot_without_touching_the_sinks():
    engine, sink = streaming_engine()
    caught_up, scripted, report = stream(engine, sink, [(500, heartbeat(500))], target=400)
    assert caught_up and sink.batches == [] and [lsn for lsn, _ in scripted.confirmed] == [500]
    assert report["batches"] == 1 and report["transactions"] == 0


def test_changes_a_sink_already_has_are_skipped_but_still_confirmed():
    engine, sink = streaming_engine()
    messages = transaction(1000, 1, [(1, 1), (2, 2)]) + transaction(2000, 2, [(3, 3)])
    caught_up, scripted, _ = stream(engine, sink, messages, keepalive_lsn=2500, target=2100,
                                    applied=Position(1000, 1))
    assert caught_up and sink.batches == [[(Position(2000, 0), 3)]]
    assert [lsn for lsn, _ in scripted.confirmed] == [2008, 2500]


def test_schema_drift_confirms_nothing_of_its_batch():
    engine, sink = streaming_engine(batch_changes=1)
    messages = transaction(1000, 1, [(1, 1)]) + transaction(2000, 2, [(2,)], columns=("id",))
    scripted = ScriptedStream(messages, 2500, [sink], engine.ledger)
    report = {"batches": 0, "transactions": 0, "changes_read": 0, "dead_lettered": 0, "applied": {sink.name: 0}}
    with pytest.raises(SchemaDriftError, match="v"):
        engine._stream_batches(None, scripted, {sink.name: Position.zero()}, report, 0, 2100,
                               max_batches=None, upto_lsn=None)
    assert sink.batches == [[(Position(1000, 0), 1)]]
    assert [lsn for lsn, _ in scripted.confirmed] == [1008]


def test_max_batches_stops_the_run_before_it_is_caught_up():
    engine, sink = streaming_engine(batch_changes=1)
    messages = transaction(1000, 1, [(1, 1)]) + transaction(2000, 2, [(2, 2)]) + transaction(3000, 3, [(3, 3)])
    caught_up, scripted, report = stream(engine, sink, messages, keepalive_lsn=3500, target=3100, max_batches=2)
    assert not caught_up and report["batches"] == 2 and [lsn for lsn, _ in scripted.confirmed] == [1008, 2008]


def test_a_stream_that_stops_inside_a_transaction_is_not_caught_up_and_applies_none_of_it():
    engine, sink = streaming_engine()
    messages = transaction(1000, 1, [(1, 1)]) + transaction(2000, 2, [(2, 2)])[:-1]
    caught_up, scripted, _ = stream(engine, sink, messages, target=2100)
    assert not caught_up
    assert sink.batches == [[(Position(1000, 0), 1)]] and [lsn for lsn, _ in scripted.confirmed] == [1008]


# -- the confirmed position over a real stream client ----------------------------------------------------


class BlockingSink(RecordingSink):
    """Holds each batch until released: a batch that is received but not yet applied."""

    def __init__(self, name: str):
        super().__init__(name)
        self.release = threading.Event()
        self.entered = threading.Event()

    def apply(self, source, changes):
        self.entered.set()
        assert self.release.wait(10), "the test never released the sink"
        return super().apply(source, changes)


def statuses(server: socket.socket, until: float) -> list[tuple[int, bool]]:
    """(flush position, reply requested) of every standby status update the client sends until ``until``."""
    found, buffer = [], b""
    while time.monotonic() < until:
        if not select.select([server], [], [], 0.02)[0]:
            continue
        buffer += server.recv(65536)
        while len(buffer) >= 1 + 4 + wire._STATUS.size:
            _, _, flush, _, _, reply = wire._STATUS.unpack_from(buffer, 5)
            found.append((flush, bool(reply)))
            buffer = buffer[1 + 4 + wire._STATUS.size:]
    return found


def xlog_frame(data_start: int, payload: bytes) -> bytes:
    return wire._message(b"d", wire._XLOG_HEADER.pack(b"w", data_start, data_start, 0) + payload)


def test_a_keepalive_after_a_relation_never_confirms_a_received_but_unapplied_transaction():
    """T1 received but not applied; T2's Begin; a Relation (dataStart 0); a keepalive whose WAL end is
    past T1's commit. Nothing may report a flush position past what the sink applied, and the
    server keeps hearing from the client while the sink works (no wal_sender_timeout)."""
    manifest = load_manifest({
        "source": "tsrc", "slot": "s", "publication": "s",
        "tables": {"item": {"key": ["id"], "sinks": ["warehouse"], "columns": {"id": "keep", "v": "keep"}}},
    })
    manifest.tokenise = lambda value, domain: f"tok_{domain}_{value}"  # no token key needed
    sink = BlockingSink("warehouse")
    ledger = MemoryLedger()
    engine = CdcEngine(manifest, [sink], connect=None, replication_connect=None, owner_connect=None,
                       stream_params=None, ledger=ledger, dead_letters=MemoryDeadLetters(),
                       limits=EngineLimits(batch_changes=4, stream_idle_seconds=0.2, keepalive_seconds=0.05))
    client, server = socket.socketpair()
    stream = wire.ReplicationStream(wire._Transport(client), backend_pid=1)
    t1 = [(900, begin(1000, 1)), (0, relation()), (910, insert(1, 10)), (1008, commit(1000, 1008))]
    t2_start = [(1900, begin(2000, 2)), (0, relation())]
    server.sendall(b"".join(xlog_frame(lsn, payload) for lsn, payload in t1 + t2_start))
    server.sendall(wire._message(b"d", wire._KEEPALIVE.pack(b"k", 5000, 0, 1)))
    report = {"batches": 0, "transactions": 0, "changes_read": 0, "dead_lettered": 0, "applied": {"warehouse": 0}}
    outcome: dict = {}

    def run():
        outcome["caught_up"] = engine._stream_batches(None, stream, {"warehouse": Position.zero()}, report, 0,
                                                       10**9, max_batches=None, upto_lsn=None)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        assert sink.entered.wait(5)
        while_applying = statuses(server, time.monotonic() + 0.6)
        sink.release.set()
        runner.join(5)
        after = statuses(server, time.monotonic() + 0.2)
    finally:
        sink.release.set()
        stream.close()
        server.close()
    # The keepalive's reply and the keep-alive updates during the apply report nothing applied yet.
    assert while_applying and all(flush == 0 for flush, _ in while_applying)
    assert any(not reply for _, reply in while_applying)  # the apply-time keep-alives ask for nothing
    # Once the sink returned: T1's end, and never the keepalive's WAL end (T2 is still open). A
    # keep-alive sent just before the sink returned may still report 0 (on a busy machine).
    flushes = [flush for flush, _ in after]
    assert flushes and flushes[-1] == 1008 and set(flushes) <= {0, 1008} and flushes == sorted(flushes)
    assert outcome["caught_up"] is False and sink.batches == [[(Position(1000, 0), 1)]]
    assert ledger.lsn == 1008


def test_a_slow_sink_gets_keep_alives_and_no_new_confirmation_until_it_returns():
    engine, sink = streaming_engine(batch_changes=1, keepalive_seconds=0.02)
    slow = threading.Event()
    original = sink.apply

    def slow_apply(source, changes):
        slow.wait(0.3)
        return original(source, changes)

    sink.apply = slow_apply
    messages = transaction(1000, 1, [(1, 1)]) + transaction(2000, 2, [(2, 2)])
    caught_up, scripted, _ = stream(engine, sink, messages, keepalive_lsn=2100, target=2050)
    assert caught_up and scripted.keepalives >= 5
    assert [lsn for lsn, _ in scripted.confirmed] == [1008, 2008, 2100]


# -- is this the slot the sinks were fed from? ----------------------------------------------------------


def slot_at(lsn: str) -> dict:
    return {"confirmed_flush_lsn": lsn, "wal_status": "reserved"}


def test_a_slot_at_or_behind_the_ledger_is_the_engines_own():
    from paydata.cdc.health import check_slot_identity
    from paydata.cdc.ledger import LedgerEntry

    check_slot_identity("oltp", "s", slot_at("0/100"), LedgerEntry("s", 0x100))
    check_slot_identity("oltp", "s", slot_at("0/F0"), LedgerEntry("s", 0x100))  # crashed between ledger and report


def test_a_slot_past_the_ledger_was_recreated_or_moved_by_someone_else():
    from paydata.cdc.health import SlotIdentityError, check_slot_identity
    from paydata.cdc.ledger import LedgerEntry

    with pytest.raises(SlotIdentityError, match=r"starts at 0/101, past 0/100.*resnapshot --source oltp"):
        check_slot_identity("oltp", "s", slot_at("0/101"), LedgerEntry("s", 0x100))
    assert issubclass(SlotIdentityError, SlotLostError)  # the DAG and `status` treat it as a lost slot


@pytest.mark.parametrize("entry", [None, ("other_slot", 0x100)])
def test_a_slot_the_ledger_knows_nothing_of_is_refused_with_both_ways_out(entry):
    from paydata.cdc.health import SlotIdentityError, check_slot_identity
    from paydata.cdc.ledger import LedgerEntry

    with pytest.raises(SlotIdentityError, match=r"resnapshot --source oltp.*adopt-slot --source oltp"):
        check_slot_identity("oltp", "s", slot_at("0/1"), None if entry is None else LedgerEntry(*entry))


def test_heartbeat_content_carries_its_time():
    from datetime import UTC, datetime

    from paydata.cdc.health import heartbeat_content, heartbeat_time

    now = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    assert heartbeat_time(heartbeat_content("oltp", now).encode()) == now
    assert heartbeat_time(b"hb") is None and heartbeat_time(b"\xff\xfe") is None


# -- a value the policy cannot be applied to -----------------------------------------------------------


def refusing_tokeniser(value, domain):
    if value.strip() in {"", "13", "424242"}:
        raise ValueError("cannot tokenise this value")  # as paydata.crypto.InvalidInput (a ValueError) does
    return f"tok_{domain}_{value}"


def tokenising_engine(on_error: str):
    manifest = load_manifest({
        "source": "tsrc", "slot": "s", "publication": "s",
        "tables": {"item": {"key": ["id"], "sinks": ["warehouse"], "on_error": on_error,
                            "columns": {"id": "keep", "v": "tokenise:device"}}},
    })
    manifest.tokenise = refusing_tokeniser
    sink = RecordingSink("warehouse")
    engine = CdcEngine(manifest, [sink], connect=None, replication_connect=None, owner_connect=None,
                       stream_params=None, ledger=MemoryLedger(), dead_letters=MemoryDeadLetters(),
                       limits=EngineLimits(stream_idle_seconds=0.05))
    return engine, sink


def test_a_value_that_cannot_be_tokenised_is_dead_lettered_and_the_stream_goes_on():
    engine, sink = tokenising_engine("dead_letter")
    messages = transaction(1000, 1, [(1, 10), (2, 13), (3, 30)]) + transaction(2000, 2, [(4, 40)])
    caught_up, scripted, report = stream(engine, sink, messages, keepalive_lsn=2500, target=2100)
    assert caught_up and sink.batches == [[(Position(1000, 0), 1), (Position(1000, 2), 3), (Position(2000, 0), 4)]]
    (letter,) = engine.dead_letters.letters
    assert (letter.table, letter.commit_lsn, letter.index_in_txn, letter.kind) == ("item", 1000, 1, "insert")
    assert letter.key_text == "2" and letter.columns == ("v",) and letter.reason == "ValueError"
    assert report["dead_lettered"] == 1
    # The stream is confirmed past the dead letter: the next run does not stop on it again.
    assert [lsn for lsn, _ in scripted.confirmed] == [2008, 2500]


def test_a_dead_letter_never_holds_a_value():
    engine, sink = tokenising_engine("dead_letter")
    stream(engine, sink, transaction(1000, 1, [(7, 424242)]), keepalive_lsn=1500, target=1100)
    (letter,) = engine.dead_letters.letters
    assert "424242" not in repr(letter) and letter.key_text == "7"


def test_on_error_stop_fails_the_run_and_applies_nothing_of_the_batch():
    from paydata.cdc.engine import CaptureError

    engine, sink = tokenising_engine("stop")
    messages = transaction(1000, 1, [(1, 10)]) + transaction(2000, 2, [(2, 13), (3, 30)])
    scripted = ScriptedStream(messages, 2500, [sink], engine.ledger)
    report = {"batches": 0, "transactions": 0, "changes_read": 0, "dead_lettered": 0, "applied": {sink.name: 0}}
    with pytest.raises(CaptureError, match=r"tsrc.item change at 0/7D0:0 \(key 2\).*ValueError in column\(s\) v"):
        engine._stream_batches(None, scripted, {sink.name: Position.zero()}, report, 0, 2100,
                               max_batches=None, upto_lsn=None)
    assert sink.batches == [] and scripted.confirmed == [] and engine.dead_letters.letters == []


def test_on_error_is_validated_in_the_manifest():
    from paydata.cdc.manifest import ManifestError

    with pytest.raises(ManifestError, match="on_error"):
        load_manifest({"source": "t", "slot": "s", "publication": "s",
                       "tables": {"item": {"key": ["id"], "sinks": ["warehouse"], "on_error": "ignore",
                                           "columns": {"id": "keep"}}}})
