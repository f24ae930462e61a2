"""The generator's shifted world (paydata.generator.shift): off by default, and when on, only what it says."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest

from paydata.generator import GeneratorError, TrafficConfig
from paydata.generator.reference import MerchantProfile, chargeable_currencies
from paydata.generator.shift import NO_SHIFT, WorldShift
from paydata.generator.traffic import CATEGORY_BY_MCC, TrafficGenerator
from tests.unit.test_generator import MERCHANTS as BASE_MERCHANTS
from tests.unit.test_generator import START, keys  # noqa: F401 (keys: the autouse key-ring fixture)

MERCHANTS = [*BASE_MERCHANTS, MerchantProfile(6, "5817", "BR", "BRL")]


def charges(shift: WorldShift = NO_SHIFT, seed: int = 3, payments: int = 6000):
    config = TrafficConfig(payments=payments, start=START, days=2, seed=seed, chunk_size=3000, shift=shift)
    generator = TrafficGenerator(config, MERCHANTS, chargeable_currencies())
    out = []
    for chunk in generator.chunks():
        disputed = {d.charge_local for d in chunk.disputes if d.reason == "fraudulent"}
        cards = {card.local_id: card for card in chunk.cards}
        for charge in chunk.charges:
            out.append({"pattern": charge.fraud_pattern, "merchant": charge.merchant_id, "amount": charge.amount,
                        "currency": charge.currency_code, "status": charge.status,
                        "fraud_dispute": charge.local_id in disputed, "device": charge.device_id,
                        "bin_country": cards[charge.card_local].bin_country_code,
                        "customer": (chunk.index, charge.customer_local)})
    return config, out


def test_the_default_world_is_the_unshifted_one():
    default, rows = charges()
    explicit, explicit_rows = charges(WorldShift(covariate=False, new_fraud_pattern=False))
    assert default.batch_key == explicit.batch_key and rows == explicit_rows
    shifted, _ = charges(WorldShift(covariate=True), payments=10)
    assert shifted.batch_key != default.batch_key  # a shifted batch is another batch


def test_covariate_shift_moves_card_testing_and_grows_amounts_only():
    _, before = charges()
    _, after = charges(WorldShift(covariate=True))
    testing_before = Counter(r["merchant"] for r in before if r["pattern"] == "card_testing")
    testing_after = Counter(r["merchant"] for r in after if r["pattern"] == "card_testing")
    targets = {m.merchant_id for m in MERCHANTS if m.mcc in WorldShift().card_testing_mccs}
    assert set(testing_after) <= targets and sum(testing_after.values()) > 50
    assert not set(testing_before) <= targets
    high_risk = {m.merchant_id for m in MERCHANTS if CATEGORY_BY_MCC[m.mcc].high_risk}
    assert not set(testing_after) & high_risk

    def median_usd(rows):   # the US grocery store's ordinary USD purchases
        return statistics.median(r["amount"] for r in rows
                                 if r["merchant"] == 1 and r["currency"] == "USD" and r["pattern"] == "none")

    assert 1.8 < median_usd(after) / median_usd(before) < 2.2
    # the fraud process itself is unchanged: same share of stolen-card charges, no new pattern
    assert {r["pattern"] for r in after} == {"none", "stolen_card", "card_testing"}
    share = [sum(r["pattern"] == "stolen_card" for r in rows) / len(rows) for rows in (before, after)]
    assert abs(share[0] - share[1]) < 0.01


def test_new_fraud_pattern_is_disputed_fraud_that_looks_like_the_customer():
    _, rows = charges(WorldShift(new_fraud_pattern=True))
    takeover = [r for r in rows if r["pattern"] == "account_takeover"]
    ordinary = [r for r in rows if r["pattern"] == "none"]
    assert len(takeover) > 40
    succeeded = [r for r in takeover if r["status"] == "succeeded"]
    assert 0.5 < sum(r["fraud_dispute"] for r in succeeded) / len(succeeded) < 0.9
    assert sum(r["fraud_dispute"] for r in ordinary) == 0
    # taken-over charges keep the customer's devices (no burst of new devices, unlike stolen cards)
    devices = Counter(r["device"] for r in rows)
    stolen = [r for r in rows if r["pattern"] == "stolen_card"]
    assert sum(devices[r["device"]] == 1 for r in takeover) / len(takeover) < \
        sum(devices[r["device"]] == 1 for r in stolen) / len(stolen)


def test_bad_shift_settings_are_refused():
    with pytest.raises(GeneratorError, match="amount_growth"):
        WorldShift(covariate=True, amount_growth=0)
    with pytest.raises(GeneratorError, match="unknown shift"):
        WorldShift.parse("gravity")
    assert WorldShift.parse("covariate, new_fraud_pattern") == WorldShift(covariate=True, new_fraud_pattern=True)
    assert WorldShift.parse("none") == NO_SHIFT
