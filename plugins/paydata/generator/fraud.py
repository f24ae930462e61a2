"""The fraud process: who is a fraudster and what their traffic looks like.

Signals a model can learn (each also occurs, more rarely, in legitimate traffic):

* **card testing**: bursts of many small charges on one fresh card at one merchant within minutes,
  mostly failing with CVC/issuer declines;
* **geo mismatch**: the card's BIN country differs from the country of the IP address;
* **velocity**: a fraudulent customer's charges come in clusters minutes apart;
* **new device**: fraudulent charges often come from a device never seen for that customer;
* **high-risk MCC**: fraudsters favour gambling, money transfer and quasi-cash merchants;
* **unusual hour**: fraud is shifted to the night (00-05 UTC);
* **amount**: stolen-card purchases are larger than the merchant's usual ticket.

Labels arrive late, as in production: most successful fraudulent charges receive a dispute with
reason ``fraudulent`` 5-45 days later; the landing ``fraud_labels`` files carry ground truth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class FraudModel:
    """Synthetic fraud parameters (probabilities are per customer or per charge as named)."""

    high_risk_merchant_boost: float = 6.0
    geo_mismatch_rate: float = 0.7
    legit_geo_mismatch_rate: float = 0.03
    new_device_rate: float = 0.7
    legit_new_device_rate: float = 0.05
    unusual_hour_rate: float = 0.55
    amount_multiplier: float = 1.8
    fraud_failure_rate: float = 0.25
    legit_failure_rate: float = 0.06
    fraud_dispute_rate: float = 0.7
    legit_dispute_rate: float = 0.004
    burst_min: int = 8
    burst_max: int = 30
    burst_failure_rate: float = 0.85
    velocity_gap_minutes: tuple[float, float] = (1.0, 30.0)
    burst_gap_seconds: tuple[float, float] = (3.0, 40.0)
    dispute_delay_days: tuple[float, float] = (5.0, 45.0)


FRAUD = FraudModel()

# Relative activity per UTC hour for legitimate traffic (synthetic diurnal curve).
DIURNAL = (0.25, 0.18, 0.14, 0.12, 0.12, 0.16, 0.3, 0.5, 0.7, 0.85, 0.95, 1.0,
           1.0, 1.0, 0.95, 0.95, 0.95, 1.0, 1.0, 0.95, 0.85, 0.7, 0.5, 0.35)
UNUSUAL_HOURS = range(0, 6)


def draw_offset_seconds(
    rng: random.Random, span_seconds: float, phase_seconds: float, *, unusual_hour: bool
) -> float:
    """An offset into the interval: diurnal for normal traffic, 00-05 UTC for ``unusual_hour``.

    Rejection sampling with a bounded number of tries, so intervals that contain no suitable hour
    (e.g. a one-hour interval at noon) still return an offset. ``phase_seconds`` is the interval
    start's second of the UTC day.
    """
    offset = rng.random() * span_seconds
    for _ in range(12):
        hour = int((phase_seconds + offset) // 3600) % 24
        accept = (1.0 if hour in UNUSUAL_HOURS else 0.05) if unusual_hour else DIURNAL[hour]
        if rng.random() < accept:
            return offset
        offset = rng.random() * span_seconds
    return offset
