"""A generated world for monitoring tests and benchmarks: daily batches of the generator's traffic
(optionally shifted, ``paydata.generator.shift``) written into a warehouse staging layout by
:class:`ml.training.synthetic.SyntheticHistory`, then marts and features built by production code.

Each day is its own batch of the same size. Days generated with the same seed are independent
draws from one process (a batch's random stream follows from its seed *and* its start; the seed
alone sets the merchants' sizes, so two seeds are two slightly different markets), and a
customer's activity is spread over one day in every batch, so velocity features mean the same
thing on every day.
"""

from __future__ import annotations

import datetime as dt

from ml.features.definitions import Definitions
from ml.features.offline import build_features
from ml.training.synthetic import InMemorySessions, SyntheticHistory
from paydata.generator.config import TrafficConfig
from paydata.generator.shift import NO_SHIFT, WorldShift
from paydata.warehouse import build


class GeneratedWorld:
    """Days of traffic on one warehouse connection; call :meth:`build` after adding days."""

    def __init__(self, conn, start: dt.datetime, *, days_of_fx: int, merchants: int = 40, seed: int = 5,
                 payments_per_day: int = 1000):
        self.conn, self.start, self.payments_per_day = conn, start, payments_per_day
        self.sessions = InMemorySessions()
        self.history = SyntheticHistory(conn, merchants=merchants, seed=seed)
        self.history.reference(start.date() - dt.timedelta(days=1), days_of_fx + 2, seed=seed)

    def day(self, index: int) -> dt.datetime:
        return self.start + dt.timedelta(days=index)

    def add_days(self, first: int, count: int, *, seed: int, shift: WorldShift = NO_SHIFT) -> None:
        """``count`` days from day ``first``, each its own batch of the generator with ``seed``."""
        for offset in range(count):
            self.history.traffic(TrafficConfig(payments=self.payments_per_day, start=self.day(first + offset), days=1,
                                               seed=seed, shift=shift, chunk_size=self.payments_per_day),
                                 sessions_db=self.sessions)

    def build(self, definitions: Definitions) -> dict:
        build(self.conn)
        return build_features(self.conn, definitions, sessions_db=self.sessions)
