"""Pure parts of the erasure window: WAL positions and the server settings that keep copies."""

from __future__ import annotations

import pytest

from paydata.keystore.store import KeyStore, KeyStoreError
from paydata.keystore.window import WalState, format_lsn, parse_lsn


@pytest.mark.parametrize("text, value", [("0/0", 0), ("0/4CD20EE8", 0x4CD20EE8), ("1A/10", (0x1A << 32) + 0x10)])
def test_lsn_round_trip(text, value):
    assert parse_lsn(text) == value and format_lsn(value) == text
    assert parse_lsn(None) == 0


def test_wal_settings_that_keep_copies_are_named():
    safe = WalState("000000010000000000000004", 4 << 24, {"wal_recycle": "off", "archive_mode": "off"}, [])
    assert safe.safe() == []
    unsafe = WalState(None, 0, {"wal_recycle": "on", "archive_mode": "on"}, [])
    assert [reason.split(" ")[0] for reason in unsafe.safe()] == ["wal_recycle", "archive_mode"]


def test_key_store_rejects_unknown_owners_and_ids_before_touching_a_database():
    store = KeyStore(connect=lambda: pytest.fail("no connection expected"))
    with pytest.raises(KeyStoreError, match="owner must be one of"):
        store.wrapped("employee", "abc")
    with pytest.raises(KeyStoreError, match="positive integer"):
        store.key_ids("customer", 0)
    with pytest.raises(KeyStoreError, match="destruction reason"):
        store.destroy("customer", 1, reason="whim")
