"""Traffic generation settings, validated up front so bad input fails before any work is done."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paydata.generator.shift import NO_SHIFT, WorldShift


class GeneratorError(ValueError):
    """Bad generator input (counts, dates, rates, currencies); the message says what and why."""


@dataclass(frozen=True)
class TrafficConfig:
    """One batch of synthetic traffic: ``payments`` charges between ``start`` and ``start + days``.

    Everything generated is a pure function of these fields (and of the merchants and currencies
    passed alongside), so the same config gives the same rows and landing files.
    """

    payments: int
    start: dt.datetime
    days: float = 1.0
    seed: int = 42
    chunk_size: int = 20_000
    customers_per_payment: float = 0.3
    fraud_customer_rate: float = 0.02
    card_testing_rate: float = 0.01
    cross_border_rate: float = 0.15
    # a shifted world for monitoring tests (paydata.generator.shift); off by default
    shift: WorldShift = NO_SHIFT

    def __post_init__(self) -> None:
        if isinstance(self.payments, bool) or not isinstance(self.payments, int) or self.payments < 0:
            raise GeneratorError(f"payments must be a non-negative integer, got {self.payments!r}")
        if not isinstance(self.start, dt.datetime) or self.start.tzinfo is None:
            raise GeneratorError(f"start must be a timezone-aware datetime, got {self.start!r}")
        if not self.days > 0:
            raise GeneratorError(f"days must be positive, got {self.days!r}")
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise GeneratorError(f"chunk_size must be a positive integer, got {self.chunk_size!r}")
        if not 0 < self.customers_per_payment <= 1:
            raise GeneratorError(f"customers_per_payment must be in (0, 1], got {self.customers_per_payment!r}")
        for name in ("fraud_customer_rate", "card_testing_rate", "cross_border_rate"):
            value = getattr(self, name)
            if not 0 <= value <= 0.5:
                raise GeneratorError(f"{name} must be between 0 and 0.5, got {value!r}")
        if not isinstance(self.shift, WorldShift):
            raise GeneratorError(f"shift must be a WorldShift, got {self.shift!r}")

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(days=self.days)

    @property
    def batch_key(self) -> str:
        """16 hex characters naming this batch; equal configs share it, so reruns are detectable."""
        text = "|".join(str(part) for part in (
            self.seed, self.start.astimezone(dt.UTC).isoformat(), self.days, self.payments,
            self.chunk_size, self.customers_per_payment, self.fraud_customer_rate,
            self.card_testing_rate, self.cross_border_rate,
        ) + ((self.shift.key(),) if self.shift.active else ()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def chunk_count(self) -> int:
        return -(-self.payments // self.chunk_size)


def interval_seed(start: dt.datetime, end: dt.datetime, base_seed: int = 0) -> int:
    """A seed derived from a data interval: the same interval always generates the same traffic."""
    text = f"{base_seed}|{start.astimezone(dt.UTC).isoformat()}|{end.astimezone(dt.UTC).isoformat()}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def run_interval(context: Mapping[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    """The data interval a workload run generates for, from an Airflow task context.

    Scheduled runs and backfills have ``data_interval_start``/``data_interval_end``. A manual run with a
    logical date has an empty interval ending at it; one triggered without a logical date (UI, CLI,
    REST) has no interval at all: both get the day that ends at the run's logical date, or else at
    its ``run_after`` (fixed when the run is created), so retrying the run regenerates the same batch.
    """
    start = context.get("data_interval_start")
    end = context.get("data_interval_end")
    if end is None:
        end = context.get("logical_date")
    if end is None:
        dag_run = context.get("dag_run")
        end = getattr(dag_run, "run_after", None) or context.get("run_after")
    if end is None:
        raise GeneratorError("the run has no data interval, logical date or run_after to generate for")
    if start is None or end <= start:
        start = end - dt.timedelta(days=1)
    return start, end
