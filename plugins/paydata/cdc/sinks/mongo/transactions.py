"""Running one Mongo transaction again when the server reports a write conflict without the label
that makes pymongo retry it (SecantusDB; see docs/mongo.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

INTERNAL_ERROR = 1
COMMIT_CONFLICT_ATTEMPTS = 4


def is_reported_commit_conflict(exc: BaseException) -> bool:
    """True for a storage write conflict that the server reports as a plain internal error.

    MongoDB labels write conflicts ``TransientTransactionError`` and pymongo's ``with_transaction``
    retries them; SecantusDB reports WiredTiger's "conflict between concurrent operations" as code 1
    without a label, which would otherwise stop the whole CDC run (docs/mongo.md).
    """
    from pymongo.errors import OperationFailure

    if not isinstance(exc, OperationFailure) or exc.code != INTERNAL_ERROR:
        return False
    return "conflict" in str(exc.details.get("errmsg", "") if exc.details else exc).lower()


def run_transaction_retrying_conflicts(
    transaction: Callable[[], Any], *, attempts: int = COMMIT_CONFLICT_ATTEMPTS, pause: float = 0.05
) -> Any:
    """Run ``transaction`` (one whole ``with_transaction``), again after an unlabelled conflict.

    Safe because a failed transaction keeps nothing and a batch that did commit is skipped by the
    offset guard on the next attempt. Any other error, or the last conflict, is raised.
    """
    for attempt in range(1, attempts + 1):
        try:
            return transaction()
        except Exception as exc:
            if attempt == attempts or not is_reported_commit_conflict(exc):
                raise
            log.warning("Mongo transaction hit a write conflict reported as an internal error; "
                        "retrying (attempt %d of %d)", attempt + 1, attempts)
            time.sleep(pause * attempt)
    raise AssertionError("unreachable")
