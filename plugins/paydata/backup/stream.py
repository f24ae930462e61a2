"""Streaming authenticated encryption of backup files: AES-256-GCM in chunks.

One backup has one random 32-byte data key (DEK), wrapped by the backup KEK (a key ring of its
own, ``PAYDATA_BACKUP_KEK_FILE``, kept apart from the data KEK). Each file is::

    b"PDBK" | version (1 byte) | header length (2 bytes) | header (JSON, UTF-8) | frame*
    frame = ciphertext length (4 bytes) | AES-256-GCM(DEK, nonce, chunk, aad = header bytes)
    nonce = 7-byte random prefix (per file, in the header) | chunk number (4 bytes) | last (1 byte)

The header names the format version, the backup and artifact, the backup KEK id and carries the
wrapped DEK; every chunk authenticates the whole header. The chunk number in the nonce makes a
reordered, duplicated or dropped chunk fail authentication, and the last-chunk flag makes a file
cut at a chunk boundary fail too (the STREAM construction of Hoang, Reyhanitabar, Rogaway and
Vizár, as in Tink's streaming AEAD). Plaintext exists only in memory, one chunk at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paydata.crypto import Envelope, IntegrityError, KeyRing
from paydata.crypto.errors import CryptoError

MAGIC = b"PDBK"
FORMAT_VERSION = 1
DEFAULT_CHUNK = 1 << 20
MAX_CHUNK = 64 << 20
_PREFIX_BYTES = 7
_TAG_BYTES = 16
BACKUP_KEK_FILE_ENV = "PAYDATA_BACKUP_KEK_FILE"
BACKUP_KEK_INLINE_ENV = "PAYDATA_BACKUP_KEK"


class BackupIntegrityError(IntegrityError):
    """A backup file is not what was written: wrong key, altered, truncated or reordered."""


def backup_kek_ring() -> KeyRing:
    """The backup KEK ring from ``PAYDATA_BACKUP_KEK_FILE`` (or inline ``PAYDATA_BACKUP_KEK``)."""
    return KeyRing.load(BACKUP_KEK_FILE_ENV, BACKUP_KEK_INLINE_ENV)


@dataclass(frozen=True, repr=False)
class BackupKey:
    """A backup's data key: the plaintext (memory only), its wrapped form and the KEK id."""

    plaintext: bytes
    wrapped: bytes
    kek_id: str

    @classmethod
    def new(cls, ring: KeyRing) -> BackupKey:
        envelope = Envelope(ring, cache_size=0)
        plaintext, wrapped = envelope.new_data_key()
        return cls(plaintext, wrapped, ring.active_id)

    @classmethod
    def unwrap(cls, wrapped: bytes, ring: KeyRing) -> BackupKey:
        from paydata.crypto import wrapped_kek_id

        return cls(Envelope(ring, cache_size=0).unwrap(wrapped), wrapped, wrapped_kek_id(wrapped))

    def __repr__(self) -> str:
        return f"BackupKey(kek_id={self.kek_id!r})"


def _nonce(prefix: bytes, number: int, last: bool) -> bytes:
    if number >= 1 << 32:
        raise CryptoError("backup file too long: more than 2^32 chunks")
    return prefix + struct.pack(">IB", number, 1 if last else 0)


@dataclass
class StreamStats:
    plaintext_bytes: int = 0
    plaintext_sha256: str = ""
    chunks: int = 0


def encrypt_stream(source: Iterable[bytes], out: BinaryIO, key: BackupKey, *, backup_id: str, artifact: str,
                   chunk_size: int = DEFAULT_CHUNK) -> StreamStats:
    """Encrypt the byte pieces from ``source`` into ``out`` (see the module docstring).

    Returns the plaintext size and SHA-256 and the number of chunks. ``source`` pieces may have
    any size; they are re-cut into ``chunk_size`` chunks.
    """
    if not 1 <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk_size must be 1..{MAX_CHUNK}")
    prefix = os.urandom(_PREFIX_BYTES)
    header = json.dumps({
        "format": FORMAT_VERSION, "backup_id": backup_id, "artifact": artifact, "kek_id": key.kek_id,
        "wrapped_key": key.wrapped.hex(), "nonce_prefix": prefix.hex(), "chunk_size": chunk_size,
        "cipher": "AES-256-GCM-STREAM",
    }, sort_keys=True, separators=(",", ":")).encode()
    out.write(MAGIC + bytes((FORMAT_VERSION,)) + struct.pack(">H", len(header)) + header)
    aead = AESGCM(key.plaintext)
    digest = hashlib.sha256()
    stats = StreamStats()
    pending = bytearray()
    held: bytes | None = None  # one chunk held back: only the next read tells whether it is the last

    def emit(chunk: bytes, last: bool) -> None:
        sealed = aead.encrypt(_nonce(prefix, stats.chunks, last), chunk, header)
        out.write(struct.pack(">I", len(sealed)))
        out.write(sealed)
        stats.chunks += 1

    for piece in source:
        if not piece:
            continue
        digest.update(piece)
        stats.plaintext_bytes += len(piece)
        pending += piece
        while len(pending) >= chunk_size:
            if held is not None:
                emit(held, last=False)
            held = bytes(pending[:chunk_size])
            del pending[:chunk_size]
    if pending:
        if held is not None:
            emit(held, last=False)
        held = bytes(pending)
    emit(held or b"", last=True)
    stats.plaintext_sha256 = digest.hexdigest()
    return stats


@dataclass(frozen=True)
class StreamHeader:
    backup_id: str
    artifact: str
    kek_id: str
    wrapped_key: bytes
    nonce_prefix: bytes
    chunk_size: int
    raw: bytes


def read_header(handle: BinaryIO) -> StreamHeader:
    """Parse the header of a backup file; :class:`BackupIntegrityError` if it is not one."""
    start = handle.read(7)
    if len(start) < 7 or start[:4] != MAGIC:
        raise BackupIntegrityError("not a paydata backup file (bad magic)")
    if start[4] != FORMAT_VERSION:
        raise BackupIntegrityError(f"backup format version {start[4]} is not supported (expected {FORMAT_VERSION})")
    (length,) = struct.unpack(">H", start[5:7])
    raw = handle.read(length)
    try:
        data = json.loads(raw)
        header = StreamHeader(data["backup_id"], data["artifact"], data["kek_id"], bytes.fromhex(data["wrapped_key"]),
                              bytes.fromhex(data["nonce_prefix"]), int(data["chunk_size"]), raw)
    except (ValueError, KeyError, TypeError):
        raise BackupIntegrityError("backup file header is corrupted") from None
    if len(raw) != length or len(header.nonce_prefix) != _PREFIX_BYTES or not 1 <= header.chunk_size <= MAX_CHUNK:
        raise BackupIntegrityError("backup file header is corrupted")
    return header


def decrypt_stream(handle: BinaryIO, ring: KeyRing, *, expect_backup: str | None = None,
                   expect_artifact: str | None = None) -> Iterator[bytes]:
    """Yield the plaintext chunks of a backup file, each only after it authenticated.

    Raises :class:`BackupIntegrityError` for a wrong key, any altered byte, a truncated file,
    reordered or duplicated chunks, trailing data, or a file of another backup/artifact than
    expected; :class:`paydata.crypto.UnknownKeyError` if the backup KEK it names is not in ``ring``.
    A consumer must treat data already yielded as void when an error follows.
    """
    header = read_header(handle)
    if expect_backup is not None and header.backup_id != expect_backup:
        raise BackupIntegrityError(f"file belongs to backup {header.backup_id!r}, not {expect_backup!r}")
    if expect_artifact is not None and header.artifact != expect_artifact:
        raise BackupIntegrityError(f"file holds artifact {header.artifact!r}, not {expect_artifact!r}")
    try:
        key = BackupKey.unwrap(header.wrapped_key, ring)
    except IntegrityError as exc:
        raise BackupIntegrityError(f"the backup's data key does not open with backup KEK {header.kek_id!r}: "
                                   f"wrong key or altered header ({exc})") from None
    aead = AESGCM(key.plaintext)
    max_frame = header.chunk_size + _TAG_BYTES

    def frame() -> bytes | None:
        raw_length = handle.read(4)
        if not raw_length:
            return None
        if len(raw_length) < 4:
            raise BackupIntegrityError("backup file is truncated (inside a frame length)")
        (length,) = struct.unpack(">I", raw_length)
        if not _TAG_BYTES <= length <= max_frame:
            raise BackupIntegrityError("backup file is corrupted (impossible frame length)")
        sealed = handle.read(length)
        if len(sealed) != length:
            raise BackupIntegrityError("backup file is truncated (inside a chunk)")
        return sealed

    number = 0
    current = frame()
    if current is None:
        raise BackupIntegrityError("backup file is truncated (no chunks)")
    while current is not None:
        following = frame()
        last = following is None
        try:
            yield aead.decrypt(_nonce(header.nonce_prefix, number, last), current, header.raw)
        except InvalidTag:
            where = "its last chunk is missing (truncated)" if last else "altered or reordered"
            raise BackupIntegrityError(f"chunk {number} of {header.artifact!r} failed authentication: "
                                       f"{where}, or the file was altered") from None
        number += 1
        current = following
