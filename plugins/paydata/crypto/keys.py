"""Key rings read from files (or one environment variable) named by the deployment.

A key ring is text with one ``<key_id>:<base64 of 32 bytes>`` entry per line. The last entry is the
active key used for new wrapping/tokens; earlier entries stay so that data written under them can
still be unwrapped or recognised. Blank lines and lines starting with ``#`` are ignored. In the
inline variable form the entries may also be separated by spaces or commas, because multi-line
values are awkward in compose files.

Keys never live in code or in a database: :meth:`KeyRing.load` reads them from the file named by
``PAYDATA_KEK_FILE`` / ``PAYDATA_TOKEN_KEY_FILE`` or from the inline ``PAYDATA_KEK`` /
``PAYDATA_TOKEN_KEY`` variables.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from paydata.crypto.errors import InvalidInput, KeyConfigError, UnknownKeyError

KEK_FILE_ENV = "PAYDATA_KEK_FILE"
KEK_INLINE_ENV = "PAYDATA_KEK"
TOKEN_KEY_FILE_ENV = "PAYDATA_TOKEN_KEY_FILE"
TOKEN_KEY_INLINE_ENV = "PAYDATA_TOKEN_KEY"

KEY_BYTES = 32
# No '_' (tokens are split on it) and no ':' (the key-file separator).
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,47}")
EXPECTED_FORMAT = (
    "one '<key_id>:<base64 of 32 bytes>' per line, last line = active key "
    "(key_id: letters, digits, '.', '-'; at most 48 characters); "
    "create one with 'python -m paydata.crypto new-keyfile PATH'"
)


def validate_key_id(key_id: str) -> str:
    """Return ``key_id`` if it is 1-48 characters of letters, digits, '.' or '-' (starting alnum).

    Raises :class:`InvalidInput` otherwise.
    """
    if not isinstance(key_id, str) or not KEY_ID_PATTERN.fullmatch(key_id):
        raise InvalidInput(
            f"invalid key id {key_id!r}: use 1-48 letters, digits, '.' or '-', starting with a letter or digit"
        )
    return key_id


def new_key_id(prefix: str = "k") -> str:
    """A fresh key id such as ``k20250614-3fa9c2``: UTC date plus random hex."""
    return validate_key_id(f"{prefix}{dt.datetime.now(dt.UTC):%Y%m%d}-{secrets.token_hex(3)}")


class KeyRing:
    """An ordered, immutable set of 32-byte keys; the last one added is the active key.

    ``repr`` and ``str`` show key ids only, never key material.
    """

    __slots__ = ("_keys", "_active_id", "source")

    def __init__(self, keys: dict[str, bytes], source: str = "<memory>") -> None:
        if not keys:
            raise KeyConfigError(f"{source}: key ring is empty; expected {EXPECTED_FORMAT}")
        for key_id, key in keys.items():
            validate_key_id(key_id)
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise KeyConfigError(f"{source}: key {key_id!r} must be exactly {KEY_BYTES} bytes")
        self._keys = dict(keys)
        self._active_id = next(reversed(self._keys))
        self.source = source

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, env_var_file: str, env_var_inline: str | None = None) -> KeyRing:
        """Load the ring from the file named by ``env_var_file``, else from ``env_var_inline``.

        Exactly one of the two variables must be set (and non-empty). Raises
        :class:`KeyConfigError` naming the variable and the expected format when neither or both
        are set, the file cannot be read, or any entry is malformed (bad base64, wrong length,
        duplicate id, no entries).
        """
        file_value = os.environ.get(env_var_file, "").strip()
        inline_value = os.environ.get(env_var_inline, "").strip() if env_var_inline else ""
        if file_value and inline_value:
            raise KeyConfigError(f"both {env_var_file} and {env_var_inline} are set; set only one of them")
        if file_value:
            path = Path(file_value)
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise KeyConfigError(
                    f"{env_var_file}={file_value}: file does not exist; expected a key file with {EXPECTED_FORMAT}"
                ) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise KeyConfigError(f"{env_var_file}={file_value}: cannot read key file ({exc})") from None
            return cls.parse(text, source=f"{env_var_file}={file_value}")
        if inline_value:
            return cls.parse(inline_value, source=env_var_inline, inline=True)
        names = f"{env_var_file} (path of a key file)" + (
            f" or {env_var_inline} (inline)" if env_var_inline else ""
        )
        raise KeyConfigError(f"no key configured: set {names}; expected {EXPECTED_FORMAT}")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KeyRing:
        """Load a ring from a key file; raises :class:`KeyConfigError` if missing or malformed."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyConfigError(
                f"{path}: cannot read key file ({exc}); expected {EXPECTED_FORMAT}"
            ) from None
        return cls.parse(text, source=str(path))

    @classmethod
    def parse(cls, text: str, *, source: str = "<text>", inline: bool = False) -> KeyRing:
        """Parse key-ring text; ``source`` is used in error messages (never the key material).

        With ``inline=True`` entries may be separated by whitespace or commas as well as newlines.
        """
        keys: dict[str, bytes] = {}
        for number, entry in _entries(text, inline=inline):
            where = f"{source}: entry {number}" if inline else f"{source}: line {number}"
            key_id, sep, encoded = entry.partition(":")
            if not sep:
                raise KeyConfigError(f"{where}: missing ':'; expected {EXPECTED_FORMAT}")
            key_id = key_id.strip()
            if not KEY_ID_PATTERN.fullmatch(key_id):
                raise KeyConfigError(f"{where}: invalid key id {key_id!r}; expected {EXPECTED_FORMAT}")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise KeyConfigError(
                    f"{where}: key {key_id!r} is not valid base64; expected {EXPECTED_FORMAT}"
                ) from None
            if len(key) != KEY_BYTES:
                raise KeyConfigError(
                    f"{where}: key {key_id!r} decodes to {len(key)} bytes, expected {KEY_BYTES}; "
                    f"expected {EXPECTED_FORMAT}"
                )
            if key_id in keys:
                raise KeyConfigError(f"{where}: duplicate key id {key_id!r}")
            keys[key_id] = key
        if not keys:
            raise KeyConfigError(f"{source}: no keys found (empty); expected {EXPECTED_FORMAT}")
        return cls(keys, source=source)

    @staticmethod
    def generate_line(key_id: str | None = None) -> str:
        """A new ``<key_id>:<base64>`` line (no newline) holding 32 random bytes."""
        key_id = validate_key_id(key_id) if key_id is not None else new_key_id()
        return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode('ascii')}"

    # -- access --------------------------------------------------------------------------------

    @property
    def active_id(self) -> str:
        return self._active_id

    @property
    def active_key(self) -> bytes:
        return self._keys[self._active_id]

    @property
    def ids(self) -> tuple[str, ...]:
        """Key ids, oldest first; the last one is active."""
        return tuple(self._keys)

    def get(self, key_id: str) -> bytes:
        """The key with ``key_id``; raises :class:`UnknownKeyError` if the ring does not hold it."""
        try:
            return self._keys[key_id]
        except KeyError:
            raise UnknownKeyError(
                f"key id {key_id!r} is not in the key ring from {self.source} (holds {', '.join(self._keys)}); "
                "an old key line was probably removed from the key file"
            ) from None

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return iter(self._keys.items())

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing(source={self.source!r}, ids={list(self._keys)!r}, active={self._active_id!r})"


def _entries(text: str, *, inline: bool) -> Iterator[tuple[int, str]]:
    if inline:
        number = 0
        for line in text.splitlines():
            if line.strip().startswith("#"):
                continue
            for entry in re.split(r"[\s,]+", line.strip()):
                if entry:
                    number += 1
                    yield number, entry
        return
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped


def new_keyfile(path: str | os.PathLike[str], key_id: str | None = None) -> str:
    """Create a key file with one fresh key (mode 0600) and return its key id.

    Refuses to overwrite: raises :class:`KeyConfigError` if ``path`` exists, because replacing a
    key file loses every key needed to read existing data.
    """
    line = KeyRing.generate_line(key_id)
    try:
        fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyConfigError(f"{path}: already exists; use a rotate command to add a key to it") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return line.partition(":")[0]


def append_key(path: str | os.PathLike[str], key_id: str | None = None) -> str:
    """Append a fresh key to an existing key file, making it the active key; return its id.

    The existing file must parse (so a corrupt file is never extended) and the new id must be
    unused. The file is replaced atomically and keeps its permissions, so a reader sees either the
    old or the new ring. Raises :class:`KeyConfigError` on a missing/malformed file or a clash.
    """
    path = Path(path)
    ring = KeyRing.from_file(path)
    line = KeyRing.generate_line(key_id)
    new_id = line.partition(":")[0]
    if new_id in ring:
        raise KeyConfigError(f"{path}: key id {new_id!r} already exists; choose another id")
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text += "\n"
    mode = path.stat().st_mode & 0o777
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return new_id


_default_rings: dict[tuple[str, str, str], KeyRing] = {}


def default_ring(env_var_file: str, env_var_inline: str) -> KeyRing:
    """The ring configured by the two variables, loaded once per distinct variable values.

    A rotated key file is picked up after :func:`reload_keys` (or a process restart); loading on
    every call would put a file read on the hot encryption path.
    """
    cache_key = (env_var_file, os.environ.get(env_var_file, ""), os.environ.get(env_var_inline, ""))
    ring = _default_rings.get(cache_key)
    if ring is None:
        ring = KeyRing.load(env_var_file, env_var_inline)
        _default_rings[cache_key] = ring
    return ring


def kek_ring() -> KeyRing:
    """The key-encryption key ring from ``PAYDATA_KEK_FILE`` or ``PAYDATA_KEK``."""
    return default_ring(KEK_FILE_ENV, KEK_INLINE_ENV)


def token_ring() -> KeyRing:
    """The tokenisation key ring from ``PAYDATA_TOKEN_KEY_FILE`` or ``PAYDATA_TOKEN_KEY``."""
    return default_ring(TOKEN_KEY_FILE_ENV, TOKEN_KEY_INLINE_ENV)


def reload_keys() -> None:
    """Forget every ring loaded from the environment so the next use reads the files again."""
    _default_rings.clear()
