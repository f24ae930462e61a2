"""Engine pieces that need no database: COPY parsing, slot health verdicts, engine wiring."""

from __future__ import annotations

from decimal import Decimal

import pytest

from paydata.cdc.capture import CopyRowReader, copy_text_field
from paydata.cdc.engine import SNAPSHOT_INDEX_BASE, CdcEngine
from paydata.cdc.health import SlotLostError, assess_slot, resnapshot_command
from paydata.cdc.manifest import SourceColumn, load_manifest
from paydata.cdc.model import Position


class MemorySink:
    def __init__(self, name: str):
        self.name = name
        self.position = Position.zero()

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
        CdcEngine(manifest, [MemorySink("warehouse")], connect=None, replication_connect=None, owner_connect=None)
    with pytest.raises(ValueError, match="unique"):
        CdcEngine(manifest, [MemorySink("warehouse"), MemorySink("warehouse")], connect=None,
                  replication_connect=None, owner_connect=None)


def test_snapshot_positions_sort_before_streamed_changes_and_fit_int4():
    assert Position(100, SNAPSHOT_INDEX_BASE) < Position(100, SNAPSHOT_INDEX_BASE + 1) < Position(100, 0)
    assert SNAPSHOT_INDEX_BASE >= -(2**31)
