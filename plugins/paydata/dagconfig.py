"""What every paydata DAG shares: owner, retries with backoff, task timeouts and the failure alert.

DAG files pass ``default_args=default_args(...)`` and ``on_failure_callback=DAG_FAILURE``; the
integrity tests check that every task ends up with an owner, at least two retries, exponential
backoff, an ``execution_timeout`` and the notifier. Imported at parse time: cheap.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from paydata.alerts import FailureNotifier

OWNER = "platform"
RETRY_BACKOFF = 2.0  # each retry waits twice as long as the one before ...
MAX_RETRY_DELAY = timedelta(minutes=10)  # ... up to this

# A DAG run that is still going after its dagrun_timeout is failed (and alerted by DAG_FAILURE).
DAG_FAILURE = FailureNotifier()


def default_args(*, retries: int = 2, retry_delay: timedelta = timedelta(seconds=30),
                 execution_timeout: timedelta = timedelta(minutes=30), **extra: Any) -> dict[str, Any]:
    """``default_args`` of a paydata DAG; ``execution_timeout`` bounds every try of every task."""
    return {
        "owner": OWNER,
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": RETRY_BACKOFF,
        "max_retry_delay": MAX_RETRY_DELAY,
        "execution_timeout": execution_timeout,
        "on_failure_callback": FailureNotifier(),
        **extra,
    }
