"""The C TupleData loop (paydata.cdc._speedups) against the Python one it replaces.

Both must give the same values for every well-formed tuple and fail the same way (as seen by
callers: through ``decode_message``) for every malformed one.
"""

from __future__ import annotations

import random
import struct

import pytest

from paydata.cdc import pgoutput
from paydata.cdc.pgoutput import UNCHANGED_TOAST, DecodeError, decode_message

speedups = pytest.importorskip("paydata.cdc._speedups", reason="the optional C decoder is not built")


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


def test_the_engine_uses_the_c_loop_when_it_is_built():
    assert pgoutput.ACCELERATED and pgoutput._tuple is speedups.tuple_data


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
    decoder = pgoutput.PgOutputDecoder(parse_values=False)
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
