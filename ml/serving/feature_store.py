"""The scorer's reads of the online store: entity documents and sessions, bounded in time.

One ``$in`` query on ``features`` by document id for every entity of every charge of a request
(only the fields scoring reads),
and one on ``sessions`` (the offline build's :func:`ml.features.sessions.fetch_sessions`), both
inside one ``pymongo.timeout`` (client-side operation timeout, the per-request budget). A store
that is down or slow makes the whole lookup *unavailable*: the request is still scored with every
stored feature unknown and flagged, never failed. An entity without a document is a *miss* that
reads as no history (docs/ml.md, *Serving*).

After a failed lookup the store is taken as down for ``RETRY_AFTER_SECONDS``: lookups in that time
answer *unavailable* at once instead of each waiting out the timeout (the scoring route runs on the
event loop, so a wait would hold every request behind it); the first lookup after it tries again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ml.features.sessions import fetch_sessions

PING_CACHE_SECONDS = 1.0
RETRY_AFTER_SECONDS = 1.0
# What the scorer reads of an entity document (:func:`ml.features.vector.aggregate_value`).
DOCUMENT_PROJECTION = {"values": 1, "expires_at": 1, "as_of": 1}


@dataclass
class Lookup:
    documents: dict[str, dict] = field(default_factory=dict)
    sessions: dict[str, list[dict]] = field(default_factory=dict)
    available: bool = True


class OnlineFeatureStore:
    def __init__(self, database, *, collection: str = "features", timeout_seconds: float = 0.05,
                 clock: Callable[[], float] = time.monotonic):
        self.database, self.collection, self.timeout_seconds = database, collection, timeout_seconds
        self._ping: tuple[float, bool] = (0.0, False)
        self._clock = clock
        self._down_until = float("-inf")

    def lookup(self, document_ids: list[str], session_tokens: list[str]) -> Lookup:
        import pymongo
        from pymongo.errors import PyMongoError

        ids = sorted(set(document_ids))
        if self._clock() < self._down_until:
            return Lookup(available=False)
        try:
            with pymongo.timeout(self.timeout_seconds):
                found = self.database[self.collection].find({"_id": {"$in": ids}}, DOCUMENT_PROJECTION) if ids else ()
                documents = {document["_id"]: document for document in found}
                sessions = fetch_sessions(self.database, session_tokens) if any(session_tokens) else {}
        except PyMongoError:
            self._down_until = self._clock() + RETRY_AFTER_SECONDS
            return Lookup(available=False)
        return Lookup(documents=documents, sessions=sessions)

    def reachable(self) -> bool:
        """A ping within the timeout (cached for a second: probes must not load the store)."""
        import pymongo
        from pymongo.errors import PyMongoError

        checked_at, result = self._ping
        if time.monotonic() - checked_at < PING_CACHE_SECONDS:
            return result
        try:
            with pymongo.timeout(max(self.timeout_seconds, 0.5)):
                self.database.command("ping")
            result = True
        except PyMongoError:
            result = False
        self._ping = (time.monotonic(), result)
        return result
