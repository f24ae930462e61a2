"""Deterministic keyed tokens, blind indexes and card fingerprints."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from paydata.crypto import (
    TOKEN_KEY_FILE_ENV,
    TOKEN_KEY_INLINE_ENV,
    InvalidInput,
    InvalidPAN,
    KeyConfigError,
    KeyRing,
    Tokeniser,
    UnknownKeyError,
    append_key,
    blind_index,
    card_fingerprint,
    new_keyfile,
    normalise,
    reload_keys,
    token_key_id,
    tokenise,
    validate_pan,
)

VISA = "4111 1111 1111 1111"


@pytest.fixture
def token_file(tmp_path, monkeypatch):
    path = tmp_path / "token-key"
    new_keyfile(path, "t1")
    monkeypatch.setenv(TOKEN_KEY_FILE_ENV, str(path))
    monkeypatch.delenv(TOKEN_KEY_INLINE_ENV, raising=False)
    reload_keys()
    yield path
    reload_keys()


def test_token_shape_and_determinism(token_file):
    token = tokenise("alice@example.com", domain="email")
    assert token.startswith("tok_t1_")
    assert len(token.split("_")[-1]) == 32
    assert tokenise("alice@example.com", domain="email") == token
    assert token_key_id(token) == "t1"


def test_tokens_are_stable_across_processes(token_file):
    script = "from paydata.crypto import tokenise; print(tokenise('alice@example.com', domain='email'))"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_plugins_dir()), env.get("PYTHONPATH")]))
    other = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == tokenise("alice@example.com", domain="email")


def _plugins_dir():
    import paydata.crypto

    return os.path.dirname(os.path.dirname(os.path.dirname(paydata.crypto.__file__)))


def test_different_keys_give_different_tokens(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    new_keyfile(first, "t1")
    new_keyfile(second, "t1")
    value = "alice@example.com"
    assert Tokeniser(KeyRing.from_file(first)).tokenise(value, domain="email") != Tokeniser(
        KeyRing.from_file(second)
    ).tokenise(value, domain="email")


def test_domain_separation(token_file):
    tokens = {tokenise("1234567", domain=domain) for domain in ("customer", "merchant", "order_ref", "phone")}
    assert len(tokens) == 4
    assert blind_index("1234567", domain="customer") != blind_index("1234567", domain="merchant")


@pytest.mark.parametrize(
    ("domain", "variants"),
    [
        ("email", ["Alice@Example.COM", "  alice@example.com\n", "alice@example.com"]),
        ("phone", ["+44 20 7946 0958", "44-20-7946-0958", "(44) 2079460958"]),
        ("pan", ["4111111111111111", "4111-1111-1111-1111", " 4111 1111 1111 1111 "]),
        ("ip", ["2001:db8:0:0:0:0:0:1", "2001:DB8::1"]),
        ("customer", ["Zoe\u0308", "Zo\u00eb "]),  # decomposed vs composed umlaut, NFC-normalised
    ],
)
def test_normalisation_per_domain(token_file, domain, variants):
    assert len({tokenise(variant, domain=domain) for variant in variants}) == 1


def test_key_rotation_is_versioned(token_file):
    tokeniser_before = Tokeniser(KeyRing.from_file(token_file))
    old_token = tokeniser_before.tokenise("alice@example.com", domain="email")
    append_key(token_file, "t2")
    reload_keys()
    new_token = tokenise("alice@example.com", domain="email")
    assert token_key_id(new_token) == "t2" and token_key_id(old_token) == "t1"
    assert new_token != old_token
    rotated = Tokeniser(KeyRing.from_file(token_file))
    assert rotated.tokenise("alice@example.com", domain="email", key_id="t1") == old_token
    assert rotated.matches(old_token, "ALICE@example.com", domain="email")
    assert rotated.matches(new_token, "alice@example.com", domain="email")
    assert not rotated.matches(old_token, "bob@example.com", domain="email")
    assert not rotated.matches(old_token, "alice@example.com", domain="customer")
    # Without the old key line old tokens are still recognisable, but no longer verifiable.
    retired = Tokeniser(KeyRing.parse(token_file.read_text().splitlines()[1]))
    with pytest.raises(UnknownKeyError, match="'t1'"):
        retired.matches(old_token, "alice@example.com", domain="email")


def test_key_ids_with_dots_and_hyphens_parse(tmp_path):
    path = tmp_path / "k"
    new_keyfile(path, "2025-06.rotation-b")
    token = Tokeniser(KeyRing.from_file(path)).tokenise("x", domain="customer")
    assert token_key_id(token) == "2025-06.rotation-b"


@pytest.mark.parametrize("bad", ["", "tok_t1_short", "t1_" + "a" * 32, "tok_t1_" + "A" * 32, None])
def test_token_key_id_rejects_non_tokens(bad):
    with pytest.raises(InvalidInput):
        token_key_id(bad)


def test_blind_index_determinism_and_rotation(token_file):
    index = blind_index(" Alice@Example.com", domain="email")
    assert index == blind_index("alice@example.com", domain="email")
    assert index != blind_index("bob@example.com", domain="email")
    assert index[0] == 0x01 and index[2:4] == b"t1"
    assert len(index) == 2 + 2 + 16
    append_key(token_file, "t2")
    reload_keys()
    candidates = Tokeniser(KeyRing.from_file(token_file)).blind_index_candidates(
        "alice@example.com", domain="email"
    )
    assert candidates[0] == blind_index("alice@example.com", domain="email")
    assert candidates[1] == index  # rows indexed before the rotation are still found


def test_card_fingerprint(token_file):
    fingerprint = card_fingerprint(VISA)
    assert fingerprint == card_fingerprint("4111111111111111")
    assert fingerprint != card_fingerprint("5555 5555 5555 4444")
    assert fingerprint != tokenise(VISA, domain="pan")


@pytest.mark.parametrize(
    ("pan", "message"),
    [
        ("4111 1111 1111 1112", "Luhn"),
        ("4111111111111", "Luhn"),
        ("41111111111", "12-19 digits, got 11"),
        ("4111 1111 1111 1111 1111", "12-19 digits, got 20"),
        ("4111.1111.1111.1111", "only digits"),
        ("４１１１１１１１１１１１１１１１", "only digits"),  # full-width digits
        ("", "empty"),
    ],
)
def test_luhn_rejection(token_file, pan, message):
    with pytest.raises(InvalidPAN, match=message) as info:
        card_fingerprint(pan)
    assert pan.strip() == "" or pan not in str(info.value)


def test_validate_pan_returns_digits():
    assert validate_pan(" 3782-822463-10005 ") == "378282246310005"
    with pytest.raises(InvalidPAN):
        validate_pan(4111111111111111)


@pytest.mark.parametrize(
    ("value", "domain", "message"),
    [
        ("", "customer", "empty"),
        ("   ", "customer", "empty"),
        ("no-at-sign", "email", "local@domain"),
        ("a b@example.com", "email", "local@domain"),
        ("12", "phone", "6-15 digits"),
        ("999.1.1.1", "ip", "IPv4 or IPv6"),
        ("x", "Email", "invalid token domain"),
        ("x", "", "invalid token domain"),
        (123, "customer", "must be a string"),
    ],
)
def test_bad_token_input(token_file, value, domain, message):
    with pytest.raises(InvalidInput, match=message):
        tokenise(value, domain=domain)


def test_normalise_examples():
    assert normalise(" Alice@Example.COM ", "email") == "alice@example.com"
    assert normalise("+1 (555) 123-4567", "phone") == "15551234567"
    assert normalise("::ffff:10.0.0.1", "ip") == "::ffff:a00:1"


def test_missing_token_key_names_variables(monkeypatch):
    monkeypatch.delenv(TOKEN_KEY_FILE_ENV, raising=False)
    monkeypatch.delenv(TOKEN_KEY_INLINE_ENV, raising=False)
    reload_keys()
    with pytest.raises(KeyConfigError, match=f"{TOKEN_KEY_FILE_ENV}.*{TOKEN_KEY_INLINE_ENV}"):
        tokenise("x", domain="customer")


def test_inline_token_key(monkeypatch):
    line = f"t9:{base64.b64encode(b'q' * 32).decode()}"
    monkeypatch.delenv(TOKEN_KEY_FILE_ENV, raising=False)
    monkeypatch.setenv(TOKEN_KEY_INLINE_ENV, line)
    reload_keys()
    try:
        assert tokenise("x", domain="customer") == Tokeniser(KeyRing.parse(line)).tokenise(
            "x", domain="customer"
        )
    finally:
        reload_keys()
