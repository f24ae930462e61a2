"""SCRAM-SHA-256 authentication, the client side (RFC 5802 / RFC 7677), as PostgreSQL asks for it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import psycopg2


class ScramClient:
    """Client side of SCRAM-SHA-256 without channel binding (RFC 5802 / RFC 7677)."""

    def __init__(self, password: str, nonce: str | None = None, user: str = "") -> None:
        # PostgreSQL takes the user from the start-up message and ignores SCRAM's, so libpq sends "n=".
        self.password = password.encode("utf-8")
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode("ascii")
        self.client_first_bare = f"n={user},r={self.nonce}"
        self._server_signature = b""

    def first_message(self) -> bytes:
        return ("n,," + self.client_first_bare).encode("ascii")

    def final_message(self, server_first: bytes) -> bytes:
        text = server_first.decode("ascii")
        parts = dict(item.split("=", 1) for item in text.split(","))
        nonce, salt, iterations = parts["r"], base64.b64decode(parts["s"]), int(parts["i"])
        if not nonce.startswith(self.nonce):
            raise psycopg2.OperationalError("SCRAM: the server's nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.client_first_bare},{text},{without_proof}".encode("ascii")
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self._server_signature = hmac.digest(server_key, auth_message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode('ascii')}".encode("ascii")

    def verify(self, server_final: bytes) -> None:
        text = server_final.decode("ascii")
        if text.startswith("e="):
            raise psycopg2.OperationalError(f"SCRAM authentication failed: {text[2:]}")
        expected = "v=" + base64.b64encode(self._server_signature).decode("ascii")
        if not hmac.compare_digest(text.split(",")[0], expected):
            raise psycopg2.OperationalError("SCRAM: the server's signature does not match (wrong server?)")
