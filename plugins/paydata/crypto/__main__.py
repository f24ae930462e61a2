"""Key-file maintenance: ``python -m paydata.crypto {new-keyfile,rotate-kek,rotate-token-key,show}``.

Only key ids are printed, never key material. Rotating appends a key that becomes the active one;
existing keys stay so old data remains readable. After a KEK rotation, re-wrap the stored data
keys with :func:`paydata.crypto.rewrap_data_key` at leisure; field ciphertexts are not touched.
"""

from __future__ import annotations

import argparse
import os
import sys

from paydata.crypto.errors import CryptoError
from paydata.crypto.keys import (
    KEK_FILE_ENV,
    TOKEN_KEY_FILE_ENV,
    KeyRing,
    append_key,
    new_keyfile,
)


def _file_argument(args: argparse.Namespace, env_var: str) -> str:
    path = args.file or os.environ.get(env_var, "").strip()
    if not path:
        raise CryptoError(f"no key file given: pass --file PATH or set {env_var}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paydata.crypto", description="Create, rotate and list paydata key files (key ids only are printed).")
    commands = parser.add_subparsers(dest="command", required=True)

    create = commands.add_parser("new-keyfile", help="create a key file with one fresh key (mode 0600)")
    create.add_argument("path")
    create.add_argument("--key-id", help="id of the key (default: k<YYYYMMDD>-<random hex>)")

    for name, env_var, what in (
        ("rotate-kek", KEK_FILE_ENV, "key-encryption key"),
        ("rotate-token-key", TOKEN_KEY_FILE_ENV, "tokenisation key"),
    ):
        rotate = commands.add_parser(name, help=f"append a new active {what} to its key file")
        rotate.add_argument("--file", help=f"key file (default: ${env_var})")
        rotate.add_argument("--key-id", help="id of the new key (default: k<YYYYMMDD>-<random hex>)")
        rotate.set_defaults(env_var=env_var)

    show = commands.add_parser("show", help="list the key ids in a key file (active last)")
    show.add_argument("path")

    args = parser.parse_args(argv)
    try:
        if args.command == "new-keyfile":
            print(f"created {args.path} with key {new_keyfile(args.path, args.key_id)}")
        elif args.command in ("rotate-kek", "rotate-token-key"):
            path = _file_argument(args, args.env_var)
            print(f"appended key {append_key(path, args.key_id)} to {path}; it is now the active key")
        else:
            ring = KeyRing.from_file(args.path)
            for key_id in ring.ids:
                print(f"{key_id}{'  (active)' if key_id == ring.active_id else ''}")
    except CryptoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
