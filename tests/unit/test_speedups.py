"""The C accelerators (paydata._speedups) against the Python twins they replace.

TupleData: the same values for every well-formed tuple, the same failure (as callers see it,
through ``decode_message``) for every malformed one. COPY rows, base32 and prepared token
functions: the same text for the same input.
"""

from __future__ import annotations

import base64
import os
import random
import struct

import pytest

from paydata.cdc import pgoutput
from paydata.cdc.pgoutput import UNCHANGED_TOAST, DecodeError, decode_message

speedups = pytest.importorskip("paydata._speedups", reason="the optional C module is not built")


def c_tuple(buf: bytes, pos: int):
    speedups.configure(UNCHANGED_TOAST, DecodeError)
    return speedups.tuple_data(buf, pos)


def tuple_bytes(values) -> bytes:
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED_TOAST:
            out += b"u"
        elif isinstance(value, bytes):
            out += b"b" + struct.pack(">i", len(value)) + value
        else:
            data = value.encode()
            out += b"t" + struct.pack(">i", len(data)) + data
    return out


def random_value(rng: random.Random):
    roll = rng.random()
    if roll < 0.15:
        return None
    if roll < 0.25:
        return UNCHANGED_TOAST
    if roll < 0.35:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
    alphabet = "abc xyz 0123456789 \t\n\\ é€𝄞"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))


def outcome(decode, buf: bytes, pos: int):
    try:
        return ("ok", decode(buf, pos))
    except DecodeError as exc:
        return ("decode-error", str(exc))
    except (IndexError, struct.error):
        return ("truncated", None)
    except UnicodeDecodeError:
        return ("utf8", None)


def test_the_engine_uses_the_c_loops_when_they_are_built():
    from paydata.cdc.sinks.warehouse import versions
    from paydata.crypto import tokens

    expected = not os.environ.get("PAYDATA_PURE_PYTHON")
    assert pgoutput.ACCELERATED is expected
    assert (pgoutput._tuple is speedups.tuple_data) is expected
    assert (versions._copy_fields is speedups.copy_fields) is expected
    assert (tokens._base32_lower is speedups.base32_lower) is expected


def test_well_formed_tuples_decode_identically():
    rng = random.Random(11)
    for _ in range(3000):
        values = tuple(random_value(rng) for _ in range(rng.randrange(0, 30)))
        buf = b"prefix" + tuple_bytes(values)
        assert c_tuple(buf, 6) == pgoutput._python_tuple(buf, 6) == (values, len(buf))


def test_malformed_tuples_fail_the_same_way():
    rng = random.Random(12)
    for _ in range(3000):
        values = tuple(random_value(rng) for _ in range(rng.randrange(1, 12)))
        buf = bytearray(tuple_bytes(values))
        mutation = rng.random()
        if mutation < 0.4:
            del buf[rng.randrange(len(buf)):]  # truncated anywhere
        elif mutation < 0.7:
            buf[rng.randrange(len(buf))] = rng.randrange(256)  # one byte corrupted
        else:
            buf += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))  # trailing junk
        buf = bytes(buf)
        assert outcome(c_tuple, buf, 0) == outcome(pgoutput._python_tuple, buf, 0), buf


@pytest.mark.parametrize(
    "tail",
    [
        struct.pack(">h", 1) + b"x",  # unknown column kind
        struct.pack(">h", 1) + b"t" + struct.pack(">i", -5),  # negative length
        struct.pack(">h", 1) + b"t" + struct.pack(">i", 99) + b"ab",  # length past the end
        struct.pack(">h", 2) + b"n",  # a column missing
        struct.pack(">h", 1) + b"t" + struct.pack(">i", 2) + b"\xff\xfe",  # not UTF-8
        b"\x00",  # header cut short
    ],
)
def test_corrupt_inserts_raise_decode_error_through_both_paths(tail):
    payload = b"I" + struct.pack(">I", 5) + b"N" + tail
    with pytest.raises(DecodeError):
        decode_message(payload)
    decoder = pgoutput.PgOutputDecoder()
    decoder.feed(b"R" + struct.pack(">I", 5) + b"public\0t\0d" + struct.pack(">h", 1)
                 + b"\x01id\0" + struct.pack(">Ii", 25, -1))
    decoder.feed(b"B" + struct.pack(">QqI", 100, 0, 1))
    with pytest.raises(DecodeError):
        decoder.feed(payload)


def test_tuple_data_refuses_non_bytes_and_bad_arguments():
    with pytest.raises(TypeError):
        speedups.tuple_data(bytearray(b"\x00\x00"), 0)
    with pytest.raises(TypeError):
        speedups.tuple_data(b"\x00\x00")
    with pytest.raises(IndexError):
        speedups.tuple_data(b"\x00\x00", -1)


def copied(copy_fields, values):
    try:
        return copy_fields(values)
    except ValueError as exc:  # NUL: both refuse it (the sink's error is a ValueError)
        return ("refused", "NUL" in str(exc))


def test_copy_rows_are_identical():
    from paydata.cdc.sinks.warehouse.versions import _python_copy_fields

    c_copy_fields = speedups.copy_fields
    speedups.configure(UNCHANGED_TOAST, DecodeError)
    rng = random.Random(13)
    for _ in range(3000):
        values = [random_value(rng) for _ in range(rng.randrange(1, 15))]
        values = [value.decode("latin-1") if isinstance(value, bytes) else value for value in values]
        for shaped in (values, tuple(values)):
            assert copied(c_copy_fields, shaped) == copied(_python_copy_fields, shaped)
    assert c_copy_fields(["\\N", None]) == "\\\\N\t\\N"  # a literal backslash-N is not NULL


def test_copy_fields_refuses_what_is_not_text():
    with pytest.raises(TypeError, match="not str or None"):
        speedups.copy_fields(["a", 1])
    with pytest.raises(TypeError):
        speedups.copy_fields(42)


def test_base32_is_rfc_4648_lower_case():
    from paydata.crypto.tokens import _python_base32_lower

    rng = random.Random(14)
    for length in (0, 5, 10, 20, 40):
        for _ in range(200):
            digest = bytes(rng.randrange(256) for _ in range(length))
            expected = base64.b32encode(digest).decode().lower()
            assert speedups.base32_lower(digest) == expected
            if length == 20:
                assert _python_base32_lower(digest) == expected
    with pytest.raises(ValueError, match="multiple of 5"):
        speedups.base32_lower(b"1234")


def test_prepared_token_functions_give_the_tokens_of_tokenise():
    from paydata.crypto import InvalidInput, KeyRing
    from paydata.crypto.tokens import Tokeniser

    tokeniser = Tokeniser(KeyRing.parse(KeyRing.generate_line("k1") + "\n" + KeyRing.generate_line("k2")))
    samples = {
        "customer": ["42", " 42 ", "Ünïcödé", "e\u0301", "x" * 300],
        "email": [" Alice@Example.COM ", "bob@example.org"],
        "phone": ["+44 20 7946-0000"],
        "ip": ["::ffff:10.0.0.1", "10.0.0.1"],
        "pan": ["4242 4242 4242 4242"],
    }
    for domain, values in samples.items():
        token_of = tokeniser.token_function(domain)
        for value in values:
            assert token_of(value) == tokeniser.tokenise(value, domain=domain)
            assert token_of(value).startswith("tok_k2_")
    for domain, bad in (("customer", "   "), ("email", "no-at-sign"), ("pan", "1234")):
        with pytest.raises(InvalidInput):
            tokeniser.token_function(domain)(bad)
    with pytest.raises(InvalidInput, match="invalid token domain"):
        tokeniser.token_function("Bad-Domain")
