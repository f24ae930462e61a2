"""Caller authentication: API keys, stored hashed.

The keys file (a Kubernetes Secret mounted read-only, or a local file) holds one key per line as
``<caller name> sha256:<hex digest of the key>``; blank lines and ``#`` comments are ignored. Keys
are random 256-bit strings (``python -m ml.serving.auth new <caller>`` prints one and its line),
so a plain SHA-256 is enough: there is nothing to brute-force, and a leaked file reveals no key.
A request presents its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; every stored
digest is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sys
from pathlib import Path

LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]{1,64})\s+sha256:(?P<digest>[0-9a-f]{64})$")


class KeysFileError(ValueError):
    """The keys file is missing or has a malformed line (the message names the line, never a key)."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_line(name: str, key: str) -> str:
    return f"{name} sha256:{digest(key)}"


class ApiKeys:
    def __init__(self, digests: dict[str, str]):
        if not digests:
            raise KeysFileError("no API keys: every caller needs one")
        self._digests = dict(digests)

    @classmethod
    def from_file(cls, path: Path | None) -> ApiKeys:
        if path is None:
            raise KeysFileError("PAYDATA_SCORER_API_KEYS_FILE is not set: the scorer does not run unauthenticated")
        digests = {}
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            match = LINE.match(line)
            if not match:
                raise KeysFileError(f"{path}:{number}: expected '<caller> sha256:<64 hex>'")
            digests[match["name"]] = match["digest"]
        return cls(digests)

    def caller(self, presented: str | None) -> str | None:
        """The caller a presented key belongs to, or None."""
        if not presented:
            return None
        presented_digest = digest(presented)
        found = None
        for name, stored in self._digests.items():
            if hmac.compare_digest(stored, presented_digest):
                found = name
        return found


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "new" or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", argv[1]):
        print("usage: python -m ml.serving.auth new <caller>", file=sys.stderr)
        return 2
    key = secrets.token_urlsafe(32)
    print(f"key (give it to the caller, store it nowhere else): {key}")
    print(f"line for the keys file: {key_line(argv[1], key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
