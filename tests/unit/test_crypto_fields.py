"""Envelope keys, field encryption bound to its cell, key rotation and crypto-shredding."""

from __future__ import annotations

import uuid

import pytest

from paydata.crypto import (
    KEK_FILE_ENV,
    KEK_INLINE_ENV,
    CryptoError,
    DataKeyResolver,
    Envelope,
    FieldCipher,
    IntegrityError,
    InvalidInput,
    KeyDestroyed,
    KeyRing,
    MalformedCiphertext,
    UnknownKeyError,
    WrongKeyError,
    append_key,
    data_key_row,
    key_id_of,
    new_data_key,
    new_keyfile,
    new_owner_key,
    reencrypt,
    reload_keys,
    rewrap_data_key,
    unwrap_data_key,
    wrapped_kek_id,
)

CELL = {"table": "customer", "column": "email", "pk": 42}


@pytest.fixture
def kek_file(tmp_path, monkeypatch):
    path = tmp_path / "kek"
    new_keyfile(path, "kek1")
    monkeypatch.setenv(KEK_FILE_ENV, str(path))
    monkeypatch.delenv(KEK_INLINE_ENV, raising=False)
    reload_keys()
    yield path
    reload_keys()


@pytest.fixture
def cipher(kek_file):
    return new_owner_key().cipher()


@pytest.mark.parametrize("plaintext", ["alice@example.com", "", "Zoë Ünïcødé 😀 日本語", "x" * 10_000])
def test_round_trip(cipher, plaintext):
    blob = cipher.encrypt(plaintext, **CELL)
    assert isinstance(blob, bytes)
    assert plaintext.encode() not in blob or plaintext == ""
    assert cipher.decrypt(blob, **CELL) == plaintext
    assert cipher.decrypt(memoryview(blob), **CELL) == plaintext  # what psycopg2 returns for bytea


def test_none_stays_none(cipher):
    assert cipher.encrypt(None, **CELL) is None
    assert cipher.decrypt(None, **CELL) is None


def test_ciphertext_is_self_describing_and_randomised(cipher):
    first, second = cipher.encrypt("same", **CELL), cipher.encrypt("same", **CELL)
    assert first != second
    assert first[0] == 0x01
    assert key_id_of(first) == cipher.key_id
    # version + id length + id + nonce + 4 plaintext bytes + tag
    assert len(first) == 2 + len(cipher.key_id) + 12 + 4 + 16


@pytest.mark.parametrize(
    "other_cell",
    [
        {"table": "merchant", "column": "email", "pk": 42},
        {"table": "customer", "column": "phone", "pk": 42},
        {"table": "customer", "column": "email", "pk": 43},
        {"table": "customer", "column": "email", "pk": (42, 1)},
    ],
)
def test_wrong_associated_data_fails(cipher, other_cell):
    blob = cipher.encrypt("alice@example.com", **CELL)
    with pytest.raises(IntegrityError, match="failed authentication"):
        cipher.decrypt(blob, **other_cell)


def test_int_and_str_primary_keys_are_the_same_cell(cipher):
    blob = cipher.encrypt("v", table="t", column="c", pk=7)
    assert cipher.decrypt(blob, table="t", column="c", pk="7") == "v"
    row_id = uuid.uuid4()
    blob = cipher.encrypt("v", table="t", column="c", pk=row_id)
    assert cipher.decrypt(blob, table="t", column="c", pk=str(row_id)) == "v"


def test_swapped_rows_fail(cipher):
    alice = cipher.encrypt("alice@example.com", table="customer", column="email", pk=1)
    bob = cipher.encrypt("bob@example.com", table="customer", column="email", pk=2)
    with pytest.raises(IntegrityError):
        cipher.decrypt(bob, table="customer", column="email", pk=1)
    with pytest.raises(IntegrityError):
        cipher.decrypt(alice, table="customer", column="email", pk=2)


def test_every_tampered_byte_fails(cipher):
    blob = cipher.encrypt("card holder", **CELL)
    for position in range(len(blob)):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(CryptoError):
            cipher.decrypt(bytes(tampered), **CELL)


@pytest.mark.parametrize("bad_blob", [b"", b"\x01", b"\x02" + b"\x00" * 40, b"\x01\x05abcde" + b"\x00" * 10])
def test_malformed_ciphertexts(cipher, bad_blob):
    with pytest.raises(MalformedCiphertext):
        key_id_of(bad_blob)
    with pytest.raises(CryptoError):
        cipher.decrypt(bad_blob, **CELL)


def test_truncated_ciphertext_fails(cipher):
    blob = cipher.encrypt("abc", **CELL)
    with pytest.raises(MalformedCiphertext, match="truncated"):
        cipher.decrypt(blob[: 2 + len(cipher.key_id) + 20], **CELL)


def test_wrong_key_fails(kek_file):
    alice, bob = new_owner_key(), new_owner_key()
    blob = alice.cipher().encrypt("secret", **CELL)
    with pytest.raises(WrongKeyError, match=alice.key_id):
        bob.cipher().decrypt(blob, **CELL)
    # Same key id but different key bytes (e.g. a corrupted key row): authentication fails.
    impostor = FieldCipher(bob.plaintext, alice.key_id)
    with pytest.raises(IntegrityError):
        impostor.decrypt(blob, **CELL)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"table": "", "column": "c", "pk": 1},
        {"table": "t", "column": "", "pk": 1},
        {"table": "t", "column": "c", "pk": ""},
        {"table": "t", "column": "c", "pk": None},
        {"table": "t", "column": "c", "pk": True},
        {"table": "t", "column": "c", "pk": ()},
        {"table": "t", "column": "c", "pk": 1.5},
    ],
)
def test_bad_cells_are_rejected(cipher, kwargs):
    with pytest.raises(InvalidInput):
        cipher.encrypt("v", **kwargs)


def test_bad_cipher_arguments(cipher):
    with pytest.raises(InvalidInput, match="plaintext must be str"):
        cipher.encrypt(b"bytes", **CELL)
    with pytest.raises(InvalidInput, match="32 bytes"):
        FieldCipher(b"short", "abc")
    with pytest.raises(InvalidInput, match="invalid key id"):
        FieldCipher(b"k" * 32, "has_underscore")
    assert "k" * 8 not in repr(FieldCipher(b"k" * 32, "abc"))


def test_envelope_wraps_under_active_kek(kek_file):
    plaintext, wrapped = new_data_key()
    assert len(plaintext) == 32
    assert plaintext not in wrapped
    assert wrapped_kek_id(wrapped) == "kek1"
    assert unwrap_data_key(wrapped) == plaintext
    assert unwrap_data_key(memoryview(wrapped)) == plaintext


def test_tampered_wrapped_key_fails(kek_file):
    _, wrapped = new_data_key()
    tampered = bytearray(wrapped)
    tampered[-1] ^= 0x80
    with pytest.raises(IntegrityError, match="KEK 'kek1'"):
        Envelope(KeyRing.from_file(kek_file)).unwrap(bytes(tampered))
    with pytest.raises(MalformedCiphertext):
        unwrap_data_key(wrapped[:-1])


def test_kek_rotation_rewraps_and_old_data_still_decrypts(kek_file):
    owner = new_owner_key()
    blob = owner.cipher().encrypt("4111 1111 1111 1111", **CELL)

    append_key(kek_file, "kek2")
    reload_keys()
    rewrapped = rewrap_data_key(owner.wrapped)
    assert wrapped_kek_id(owner.wrapped) == "kek1"
    assert wrapped_kek_id(rewrapped) == "kek2"
    assert rewrap_data_key(rewrapped) == rewrapped  # already current: unchanged
    assert unwrap_data_key(owner.wrapped) == owner.plaintext  # old KEK is still in the ring

    # The field ciphertext is untouched and opens with the re-wrapped key.
    resolver = DataKeyResolver({owner.key_id: rewrapped}.get)
    assert resolver.decrypt(blob, **CELL) == "4111 1111 1111 1111"

    # Once every key is re-wrapped the old KEK line may be retired; a stale wrapped key then fails clearly.
    kek_file.write_text(kek_file.read_text().splitlines()[1] + "\n")
    reload_keys()
    assert DataKeyResolver({owner.key_id: rewrapped}.get).decrypt(blob, **CELL) == "4111 1111 1111 1111"
    with pytest.raises(UnknownKeyError, match="'kek1' is not in the key ring"):
        unwrap_data_key(owner.wrapped)


def test_data_key_rotation_reencrypts(kek_file):
    old, new = new_owner_key(), new_owner_key()
    old_cipher, new_cipher = old.cipher(), new.cipher()
    blob = old_cipher.encrypt("alice@example.com", **CELL)
    rotated = reencrypt(blob, old_cipher, new_cipher, **CELL)
    assert key_id_of(rotated) == new.key_id
    assert new_cipher.decrypt(rotated, **CELL) == "alice@example.com"
    assert reencrypt(rotated, old_cipher, new_cipher, **CELL) == rotated  # re-running is harmless
    assert reencrypt(None, old_cipher, new_cipher, **CELL) is None
    with pytest.raises(IntegrityError):
        reencrypt(blob, old_cipher, new_cipher, table="customer", column="email", pk=99)


def test_crypto_shredding_makes_data_unrecoverable(kek_file):
    key_table: dict[str, bytes] = {}
    alice, bob = new_owner_key(), new_owner_key()
    for customer_id, owner in ((1, alice), (2, bob)):
        row = data_key_row(customer_id, owner)
        assert set(row) == {"customer_id", "key_id", "wrapped_key", "created_at"}
        assert owner.plaintext not in row.values()
        key_table[row["key_id"]] = row["wrapped_key"]
    resolver = DataKeyResolver(key_table.get)
    alice_blob = alice.cipher().encrypt("alice@example.com", table="customer", column="email", pk=1)
    bob_blob = bob.cipher().encrypt("bob@example.com", table="customer", column="email", pk=2)
    assert resolver.decrypt(alice_blob, table="customer", column="email", pk=1) == "alice@example.com"

    del key_table[alice.key_id]  # erasure of customer 1
    resolver.forget(alice.key_id)
    with pytest.raises(KeyDestroyed, match="crypto-shredded"):
        resolver.decrypt(alice_blob, table="customer", column="email", pk=1)
    with pytest.raises(KeyDestroyed):
        DataKeyResolver(key_table.get).decrypt(alice_blob, table="customer", column="email", pk=1)
    assert resolver.decrypt(bob_blob, table="customer", column="email", pk=2) == "bob@example.com"


def test_resolver_cache_is_bounded(kek_file):
    owners = [new_owner_key() for _ in range(5)]
    lookups: list[str] = []

    def lookup(key_id):
        lookups.append(key_id)
        return {o.key_id: o.wrapped for o in owners}.get(key_id)

    resolver = DataKeyResolver(lookup, max_cached=2)
    for owner in owners:
        resolver.cipher(owner.key_id)
    resolver.cipher(owners[-1].key_id)  # cached
    resolver.cipher(owners[0].key_id)  # evicted: looked up again
    assert lookups == [o.key_id for o in owners] + [owners[0].key_id]


def test_missing_kek_configuration_is_clear(monkeypatch):
    monkeypatch.delenv(KEK_FILE_ENV, raising=False)
    monkeypatch.delenv(KEK_INLINE_ENV, raising=False)
    reload_keys()
    with pytest.raises(CryptoError, match=KEK_FILE_ENV):
        new_data_key()
