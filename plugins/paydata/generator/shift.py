"""A shifted world for testing the fraud model's monitoring: the same traffic with one or two changes.

Two switches, both off by default (then the generator's output is byte-for-byte what it was):

* **covariate shift** (``covariate``): card testing moves to other merchants (the categories in
  ``card_testing_mccs``, and with them their countries) and every purchase amount grows by
  ``amount_growth``. Who is a fraudster, and what fraud looks like per charge, is unchanged: the
  inputs move, the relation between inputs and labels does not.
* **new fraud pattern** (``new_fraud_pattern``): account takeover. A share
  (``takeover_customer_rate``) of otherwise ordinary customers have their account taken over: their
  charges look exactly like theirs (own devices, own country, daytime, usual amounts, ordinary
  merchants) but are disputed as fraud like stolen-card charges. The inputs barely move; the
  relation between inputs and labels does (a concept shift: a model trained before it misses
  these frauds, so its precision-recall falls once their labels mature).

Everything else (merchants, customers, times, the other fraud signals) follows the same process.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorldShift:
    covariate: bool = False
    new_fraud_pattern: bool = False
    amount_growth: float = 2.0
    # digital goods, fast food, taxis: low-ticket, not high-risk (the usual card-testing targets
    # are the high-risk categories, favoured through the fraud merchant weights)
    card_testing_mccs: tuple[str, ...] = ("5817", "5814", "4121")
    takeover_customer_rate: float = 0.02

    def __post_init__(self) -> None:
        problem = None
        if not self.amount_growth > 0:
            problem = f"amount_growth must be positive, got {self.amount_growth!r}"
        elif not 0 <= self.takeover_customer_rate <= 0.5:
            problem = f"takeover_customer_rate must be between 0 and 0.5, got {self.takeover_customer_rate!r}"
        elif not self.card_testing_mccs:
            problem = "card_testing_mccs must name at least one merchant category"
        if problem:
            from paydata.generator.config import GeneratorError  # config imports this module

            raise GeneratorError(problem)

    @property
    def active(self) -> bool:
        return self.covariate or self.new_fraud_pattern

    def key(self) -> str:
        """What makes a shifted batch differ from the default one (part of its batch key)."""
        return (f"shift:{int(self.covariate)}{int(self.new_fraud_pattern)}:{self.amount_growth}:"
                f"{','.join(self.card_testing_mccs)}:{self.takeover_customer_rate}")

    @classmethod
    def parse(cls, text: str | None) -> WorldShift:
        """``"covariate"``, ``"new_fraud_pattern"``, both comma-separated, or ``"none"``/empty."""
        from paydata.generator.config import GeneratorError

        names = {part.strip() for part in (text or "").split(",") if part.strip()} - {"none"}
        unknown = names - {"covariate", "new_fraud_pattern"}
        if unknown:
            raise GeneratorError(f"unknown shift {sorted(unknown)}: use covariate, new_fraud_pattern or none")
        return cls(covariate="covariate" in names, new_fraud_pattern="new_fraud_pattern" in names)


NO_SHIFT = WorldShift()


def card_testing_targets(merchants: list, shift: WorldShift) -> list:
    """The merchants card testing moves to under a covariate shift (all merchants if none match)."""
    return [m for m in merchants if m.mcc in shift.card_testing_mccs] or list(merchants)
