"""Key rings: loading from files/inline variables, clear errors for bad configuration, rotation CLI."""

from __future__ import annotations

import base64
import os

import pytest

from paydata.crypto import (
    KEK_FILE_ENV,
    KEK_INLINE_ENV,
    KeyConfigError,
    KeyRing,
    UnknownKeyError,
    append_key,
    kek_ring,
    new_keyfile,
    reload_keys,
)
from paydata.crypto.__main__ import main as crypto_cli


@pytest.fixture(autouse=True)
def _clean_key_env(monkeypatch):
    for name in (KEK_FILE_ENV, KEK_INLINE_ENV):
        monkeypatch.delenv(name, raising=False)
    reload_keys()
    yield
    reload_keys()


def _line(key_id: str, raw: bytes) -> str:
    return f"{key_id}:{base64.b64encode(raw).decode()}"


def test_load_from_file_last_line_is_active(tmp_path, monkeypatch):
    path = tmp_path / "kek"
    path.write_text(f"# comment\n{_line('old', b'a' * 32)}\n\n{_line('new', b'b' * 32)}\n")
    monkeypatch.setenv(KEK_FILE_ENV, str(path))
    ring = KeyRing.load(KEK_FILE_ENV, KEK_INLINE_ENV)
    assert ring.ids == ("old", "new")
    assert ring.active_id == "new"
    assert ring.active_key == b"b" * 32
    assert ring.get("old") == b"a" * 32
    assert "b" * 10 not in repr(ring) and "YmJi" not in repr(ring)


def test_load_inline_accepts_space_or_comma_separation(monkeypatch):
    monkeypatch.setenv(KEK_INLINE_ENV, f"{_line('k1', b'x' * 32)}, {_line('k2', b'y' * 32)}")
    ring = KeyRing.load(KEK_FILE_ENV, KEK_INLINE_ENV)
    assert ring.ids == ("k1", "k2")
    assert kek_ring().active_key == b"y" * 32


def test_missing_variables_name_both_and_the_format():
    with pytest.raises(KeyConfigError) as info:
        KeyRing.load(KEK_FILE_ENV, KEK_INLINE_ENV)
    message = str(info.value)
    assert KEK_FILE_ENV in message and KEK_INLINE_ENV in message
    assert "<key_id>:<base64 of 32 bytes>" in message
    assert isinstance(info.value, KeyError)


def test_both_variables_set_is_rejected(tmp_path, monkeypatch):
    path = tmp_path / "kek"
    new_keyfile(path)
    monkeypatch.setenv(KEK_FILE_ENV, str(path))
    monkeypatch.setenv(KEK_INLINE_ENV, KeyRing.generate_line("k1"))
    with pytest.raises(KeyConfigError, match="set only one"):
        KeyRing.load(KEK_FILE_ENV, KEK_INLINE_ENV)


def test_missing_file_names_variable_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv(KEK_FILE_ENV, str(tmp_path / "absent"))
    with pytest.raises(KeyConfigError, match=f"{KEK_FILE_ENV}=.*absent: file does not exist"):
        KeyRing.load(KEK_FILE_ENV, KEK_INLINE_ENV)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty"),
        ("# only a comment\n\n", "empty"),
        ("k1:not*base64!\n", "line 1: key 'k1' is not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}\n", "decodes to 5 bytes, expected 32"),
        (f"k1:{base64.b64encode(b'z' * 64).decode()}\n", "decodes to 64 bytes, expected 32"),
        ("no-separator-here\n", "missing ':'"),
        (f"bad_id:{base64.b64encode(b'z' * 32).decode()}\n", "invalid key id 'bad_id'"),
        (f"{_line('k1', b'a' * 32)}\n{_line('k1', b'b' * 32)}\n", "line 2: duplicate key id 'k1'"),
    ],
)
def test_bad_key_files_give_clear_errors(tmp_path, monkeypatch, content, expected):
    path = tmp_path / "kek"
    path.write_text(content)
    monkeypatch.setenv(KEK_FILE_ENV, str(path))
    with pytest.raises(KeyConfigError) as info:
        KeyRing.load(KEK_FILE_ENV, KEK_INLINE_ENV)
    assert expected in str(info.value)
    assert KEK_FILE_ENV in str(info.value)
    # The error must never echo key material.
    assert base64.b64encode(b"a" * 32).decode() not in str(info.value)


def test_unknown_key_id_names_the_source(tmp_path):
    path = tmp_path / "kek"
    new_keyfile(path, "k1")
    with pytest.raises(UnknownKeyError, match="'gone' is not in the key ring"):
        KeyRing.from_file(path).get("gone")


def test_generate_line_parses_and_is_random():
    first, second = KeyRing.generate_line("k1"), KeyRing.generate_line("k1")
    assert first != second
    assert len(KeyRing.parse(first).active_key) == 32


def test_new_keyfile_is_private_and_never_overwritten(tmp_path):
    path = tmp_path / "kek"
    key_id = new_keyfile(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert KeyRing.from_file(path).ids == (key_id,)
    with pytest.raises(KeyConfigError, match="already exists"):
        new_keyfile(path)
    assert KeyRing.from_file(path).ids == (key_id,)


def test_append_key_keeps_old_keys_and_mode(tmp_path):
    path = tmp_path / "kek"
    first = new_keyfile(path)
    old_key = KeyRing.from_file(path).get(first)
    second = append_key(path, "k2")
    ring = KeyRing.from_file(path)
    assert ring.ids == (first, "k2") and second == "k2"
    assert ring.get(first) == old_key
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(KeyConfigError, match="already exists"):
        append_key(path, "k2")


def test_append_key_refuses_a_corrupt_file(tmp_path):
    path = tmp_path / "kek"
    path.write_text("k1:???\n")
    with pytest.raises(KeyConfigError, match="not valid base64"):
        append_key(path)
    assert path.read_text() == "k1:???\n"


def test_cli_new_keyfile_rotate_and_show(tmp_path, monkeypatch, capsys):
    path = tmp_path / "kek"
    assert crypto_cli(["new-keyfile", str(path), "--key-id", "k1"]) == 0
    monkeypatch.setenv(KEK_FILE_ENV, str(path))
    assert crypto_cli(["rotate-kek", "--key-id", "k2"]) == 0  # file taken from the variable
    assert crypto_cli(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "k1\nk2  (active)" in out
    assert base64.b64encode(KeyRing.from_file(path).active_key).decode() not in out
    assert crypto_cli(["new-keyfile", str(path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_rotate_without_file_explains(monkeypatch, capsys):
    monkeypatch.delenv("PAYDATA_TOKEN_KEY_FILE", raising=False)
    assert crypto_cli(["rotate-token-key"]) == 2
    assert "PAYDATA_TOKEN_KEY_FILE" in capsys.readouterr().err
