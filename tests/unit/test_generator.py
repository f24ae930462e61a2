"""The workload generator without a database: determinism, distributions, fraud signals, PAN hygiene."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import random
import signal
import statistics
from collections import Counter, defaultdict

import pytest
from stdnum import luhn

from paydata.crypto import (
    KEK_FILE_ENV,
    KEK_INLINE_ENV,
    TOKEN_KEY_FILE_ENV,
    TOKEN_KEY_INLINE_ENV,
    DataKeyResolver,
    IntegrityError,
    new_keyfile,
    reload_keys,
)
from paydata.generator import GeneratorError, TrafficConfig, interval_seed
from paydata.generator.__main__ import main as cli_main
from paydata.generator.copy import copy_buffer
from paydata.generator.encode import encode_chunk
from paydata.generator.landing import LANDING_KINDS, landing_records, write_landing
from paydata.generator.parallel import encoded_chunks
from paydata.generator.reference import (
    MerchantProfile,
    chargeable_currencies,
    country_rows,
    currency_rows,
    fx_rate_rows,
    generate_merchants,
)
from paydata.generator.traffic import (
    TABLE_ORDER,
    PayoutAccumulator,
    TrafficGenerator,
    WeightedChoice,
    luhn_check_digit,
)

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MERCHANTS = [
    MerchantProfile(1, "5411", "US", "USD"),
    MerchantProfile(2, "4511", "GB", "GBP", payout_schedule="weekly"),
    MerchantProfile(3, "5814", "JP", "JPY"),
    MerchantProfile(4, "7995", "DE", "EUR", risk_tier_code="high"),
    MerchantProfile(5, "4829", "KW", "KWD", risk_tier_code="high", payout_schedule="monthly"),
]


@pytest.fixture(autouse=True)
def keys(tmp_path, monkeypatch):
    new_keyfile(tmp_path / "kek", "kek1")
    new_keyfile(tmp_path / "token", "tok1")
    monkeypatch.setenv(KEK_FILE_ENV, str(tmp_path / "kek"))
    monkeypatch.setenv(TOKEN_KEY_FILE_ENV, str(tmp_path / "token"))
    monkeypatch.delenv(KEK_INLINE_ENV, raising=False)
    monkeypatch.delenv(TOKEN_KEY_INLINE_ENV, raising=False)
    reload_keys()
    yield
    reload_keys()


@pytest.fixture(scope="module")
def currencies():
    return chargeable_currencies()


def generator(currencies, payments=3000, seed=7, pan_sink=None, **overrides):
    config = TrafficConfig(payments=payments, start=START, days=3, seed=seed, chunk_size=1000, **overrides)
    return TrafficGenerator(config, MERCHANTS, currencies, pan_sink=pan_sink)


def plain_rows(gen):
    return [(chunk.rows({}, encrypt=False), [c.identity for c in chunk.customers]) for chunk in gen.chunks()]


def test_reference_data_comes_from_the_standards():
    currencies = {row["currency_code"]: row for row in currency_rows()}
    assert currencies["JPY"]["minor_units"] == 0
    assert currencies["USD"]["minor_units"] == 2
    assert currencies["KWD"]["minor_units"] == 3
    assert currencies["XAU"]["minor_units"] is None
    assert currencies["XDR"]["minor_units"] is None
    assert currencies["XOF"]["minor_units"] == 0  # an X-code that is legal tender keeps its units
    countries = {row["country_code"]: row for row in country_rows()}
    assert len(countries) == 249
    assert countries["JP"]["default_currency_code"] == "JPY"
    assert countries["DE"]["default_currency_code"] == "EUR"
    assert countries["AQ"]["default_currency_code"] is None


def test_fx_rates_are_deterministic_positive_and_validated():
    first = fx_rate_rows(START.date(), 5, 1, ["EUR", "JPY", "USD"])
    assert first == fx_rate_rows(START.date(), 5, 1, ["EUR", "JPY", "USD"])
    assert first != fx_rate_rows(START.date(), 5, 2, ["EUR", "JPY", "USD"])
    assert len(first) == 10 and all(row["rate"] > 0 for row in first)  # USD->USD is not a rate
    jpy = [float(row["rate"]) for row in first if row["quote"] == "JPY"]
    assert 120 < min(jpy) and max(jpy) < 180
    with pytest.raises(GeneratorError, match="ZZZ"):
        fx_rate_rows(START.date(), 5, 1, ["ZZZ"])
    with pytest.raises(GeneratorError, match="XAU"):
        fx_rate_rows(START.date(), 5, 1, ["XAU"])
    with pytest.raises(GeneratorError, match="at least 1"):
        fx_rate_rows(START.date(), 0, 1, ["EUR"])


def test_merchants_are_deterministic(currencies):
    first = generate_merchants(30, 5, currencies)
    assert first == generate_merchants(30, 5, currencies)
    assert first != generate_merchants(30, 6, currencies)
    assert all(m.default_currency_code in currencies for m in first)
    assert len({m.kyc_email for m in first}) == 30
    with pytest.raises(GeneratorError, match=">= 0"):
        generate_merchants(-1, 5, currencies)


def test_same_seed_same_rows_and_landing_files(currencies, tmp_path):
    first, second = generator(currencies), generator(currencies)
    assert plain_rows(first) == plain_rows(second)
    write_landing(tmp_path / "a", first)
    write_landing(tmp_path / "b", second)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jsonl"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.jsonl"))
    assert files_a == files_b and len(files_a) == 3 * len(LANDING_KINDS)
    for relative in files_a:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()


def test_different_seed_different_rows(currencies):
    assert plain_rows(generator(currencies, seed=7)) != plain_rows(generator(currencies, seed=8))
    assert interval_seed(START, START + dt.timedelta(days=1)) != interval_seed(
        START + dt.timedelta(days=1), START + dt.timedelta(days=2))


def test_amounts_follow_the_merchant_category(currencies):
    charges = [c for chunk in generator(currencies, payments=6000, fraud_customer_rate=0).chunks()
               for c in chunk.charges if c.fraud_pattern == "none" and c.currency_code in ("USD", "GBP", "JPY")]
    medians = {}
    for merchant_id in (1, 2, 3):
        amounts = [c.amount for c in charges if c.merchant_id == merchant_id
                   and c.currency_code == {1: "USD", 2: "GBP", 3: "JPY"}[merchant_id]]
        assert len(amounts) > 50
        medians[merchant_id] = statistics.median(amounts)
    assert 2500 < medians[1] < 8000  # grocery, USD cents: median ~ 45 USD
    assert medians[2] > 5 * medians[1] * 0.79  # airline tickets dwarf groceries (GBP pence)
    assert 500 < medians[3] < 2500  # fast food in Japan, yen (no minor units)
    assert all(isinstance(c.amount, int) and c.amount > 0 for c in charges)


def test_ledger_is_consistent_in_memory(currencies):
    for chunk in generator(currencies).chunks():
        rows = chunk.rows({}, encrypt=False)
        for row in rows["balance_transaction"]:
            assert row[6] == row[4] - row[5] and row[5] >= 0 and row[4] != 0
        charged = {c.local_id: c.amount for c in chunk.charges}
        refunded = defaultdict(int)
        for refund in chunk.refunds:
            if refund.status == "succeeded":
                refunded[refund.charge_local] += refund.amount
        assert all(refunded[local] <= charged[local] for local in refunded)
        posted = Counter(row[2] for row in rows["balance_transaction"])
        assert posted["charge"] == sum(c.status == "succeeded" for c in chunk.charges)


def test_generated_pans_are_luhn_valid_and_never_output(currencies, tmp_path):
    pans = []
    gen = generator(currencies, pan_sink=pans.append)
    buffers = []
    for chunk in gen.chunks():
        rows = chunk.rows({}, encrypt=True)
        buffers += [copy_buffer(rows[table]).getvalue() for table in TABLE_ORDER if rows.get(table)]
        assert all(pans and card.last4 for card in chunk.cards)
    assert len(pans) > 500 and all(luhn.is_valid(pan) for pan in pans)
    write_landing(tmp_path, gen)
    text = "\n".join(buffers) + "".join(p.read_text() for p in tmp_path.rglob("*.jsonl"))
    leaked = [pan for pan in pans if pan in text]
    assert not leaked, f"{len(leaked)} generated card numbers reached the output"


def test_fraud_signals_are_learnable(currencies):
    gen = generator(currencies, payments=8000, fraud_customer_rate=0.05, card_testing_rate=0.03)
    by_pattern = defaultdict(list)
    cards = {}
    disputes = defaultdict(list)
    for chunk in gen.chunks():
        cards.update({(chunk.index, c.local_id): c for c in chunk.cards})
        for dispute in chunk.disputes:
            disputes[chunk.charges[dispute.charge_local].fraud_pattern].append(dispute.reason)
        for charge in chunk.charges:
            by_pattern[charge.fraud_pattern].append((chunk.index, charge))

    def failure_rate(pattern):
        items = by_pattern[pattern]
        return sum(c.status == "failed" for _i, c in items) / len(items)

    def mismatch_rate(pattern):
        items = by_pattern[pattern]
        return sum(gen.landing_ip_country(c.ip_address) != cards[(i, c.card_local)].bin_country_code
                   for i, c in items) / len(items)

    assert failure_rate("card_testing") > 0.7 > 0.15 > failure_rate("none")
    assert mismatch_rate("stolen_card") > 0.5 > 0.1 > mismatch_rate("none")
    burst_sizes = Counter((i, c.card_local) for i, c in by_pattern["card_testing"])
    assert min(burst_sizes.values()) >= 8
    assert set(disputes["stolen_card"]) == {"fraudulent"}
    assert "fraudulent" not in disputes["none"]
    night = [c.created_at.hour < 6 for _i, c in by_pattern["stolen_card"]]
    legit_night = [c.created_at.hour < 6 for _i, c in by_pattern["none"]]
    assert sum(night) / len(night) > 2 * sum(legit_night) / len(legit_night)


def test_landing_sessions_cover_every_charge(currencies):
    gen = generator(currencies, payments=1000)
    chunk = next(gen.chunks())
    records = landing_records(gen, chunk)
    assert {s["session_id"] for s in records["sessions"]} == {c.session_id for c in chunk.charges}
    assert len(records["fraud_labels"]) == len(chunk.charges)
    assert all(s["geo"]["country_code"] for s in records["sessions"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"payments": -1}, "non-negative"),
        ({"payments": 10, "days": 0}, "days must be positive"),
        ({"payments": 10, "start": dt.datetime(2026, 1, 1)}, "timezone-aware"),
        ({"payments": 10, "fraud_customer_rate": 0.9}, "fraud_customer_rate"),
        ({"payments": 10, "chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_config_is_rejected(kwargs, match):
    kwargs.setdefault("start", START)
    with pytest.raises(GeneratorError, match=match):
        TrafficConfig(**kwargs)


def test_unknown_merchant_currency_or_no_merchants_is_rejected(currencies):
    config = TrafficConfig(payments=10, start=START)
    with pytest.raises(GeneratorError, match="'ZZZ'"):
        TrafficGenerator(config, [MerchantProfile(1, "5411", "US", "ZZZ")], currencies)
    with pytest.raises(GeneratorError, match="no merchants"):
        TrafficGenerator(config, [], currencies)
    with pytest.raises(GeneratorError, match="MCC"):
        TrafficGenerator(config, [MerchantProfile(1, "0000", "US", "USD")], currencies)


def test_cli_rejects_a_negative_payment_count(capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(["traffic", "--payments", "-5"])
    assert info.value.code == 2
    assert "must be >= 0" in capsys.readouterr().err


FIRST_IDS = {"customer": 101, "payment_method": 202, "payment_intent": 303, "charge": 404, "refund": 505,
             "dispute": 606, "balance_transaction": 707}


def test_fast_encoding_matches_the_reference_rows(currencies):
    gen = generator(currencies, payments=2000, fraud_customer_rate=0.05)
    for chunk in gen.chunks():
        reference = {table: copy_buffer(rows).getvalue()
                     for table, rows in chunk.rows(FIRST_IDS, encrypt=False).items()}
        assert encode_chunk(chunk, FIRST_IDS, encrypt=False) == reference
        assert reference["refund"] and reference["dispute"] and reference["charge_status_step"]


def test_fast_encoding_encrypts_under_a_stored_key_per_customer(currencies):
    chunk = generator(currencies, payments=500).chunk(0)
    texts = encode_chunk(chunk, FIRST_IDS)
    customers = [line.split("\t") for line in texts["customer"].splitlines()]
    keys = {line.split("\t")[1]: bytes.fromhex(line.split("\t")[2][3:])
            for line in texts["customer_data_key"].splitlines()}
    assert len(customers) == len(keys) == len(chunk.customers)
    resolver = DataKeyResolver(keys.get)
    for fields, customer in zip(customers, chunk.customers, strict=True):
        customer_id = int(fields[0])
        assert customer_id == FIRST_IDS["customer"] + customer.local_id
        email = resolver.decrypt(bytes.fromhex(fields[2][3:]), table="customer", column="email", pk=customer_id)
        assert email == customer.identity.email
        assert customer.identity.email not in texts["customer"]
    # The ciphertext is bound to its cell: read as another column it fails instead of decrypting.
    with pytest.raises(IntegrityError):
        resolver.decrypt(bytes.fromhex(customers[0][2][3:]), table="customer", column="name",
                         pk=int(customers[0][0]))


def test_luhn_check_digit_and_weighted_choice_match_the_library_versions():
    rng = random.Random(3)
    for _ in range(2000):
        body = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 18)))
        assert luhn_check_digit(body) == luhn.calc_check_digit(body)
    weights = {"a": 5, "b": 0.5, "c": 3}
    first, second = random.Random(9), random.Random(9)
    picks = [WeightedChoice(weights).pick(first) for _ in range(500)]
    assert picks == [second.choices(list(weights), list(weights.values()))[0] for _ in range(500)]
    assert set(picks) == {"a", "b", "c"}


def test_payout_nets_merge_like_adding_the_chunks(currencies):
    schedules = {m.merchant_id: m.payout_schedule for m in MERCHANTS}
    whole, merged = PayoutAccumulator(schedules), PayoutAccumulator(schedules)
    chunks = list(generator(currencies).chunks())
    for chunk in chunks:
        whole.add(chunk)
    for chunk in reversed(chunks):
        merged.merge(merged.chunk_nets(chunk))
    until = START + dt.timedelta(days=60)
    assert whole.payouts(until) == merged.payouts(until) and whole.payouts(until)


def _sequential_ids():
    reserved = []
    next_id = dict.fromkeys(FIRST_IDS, 1)

    def reserve(counts):
        first = {table: next_id.get(table, 1) for table in counts}
        for table, count in counts.items():
            next_id[table] = next_id.get(table, 1) + count
        reserved.append(dict(counts))
        return first

    return reserve, reserved


def _without_ciphertexts(encoded):
    buffers = dict(encoded.buffers)
    buffers["customer"] = b"\n".join(b"\t".join(line.split(b"\t")[:2] + line.split(b"\t")[6:])
                                     for line in buffers["customer"].splitlines())
    buffers["customer_data_key"] = b"\n".join(line.split(b"\t")[0]
                                              for line in buffers["customer_data_key"].splitlines())
    return buffers, encoded.rows, encoded.max_step, encoded.payout_nets, encoded.payments


def test_worker_processes_produce_the_same_chunks_in_order(currencies, tmp_path):
    schedules = {m.merchant_id: m.payout_schedule for m in MERCHANTS}
    results = {}
    for workers in (0, 1, 2):
        reserve, reserved = _sequential_ids()
        chunks = list(encoded_chunks(generator(currencies, payments=4500), reserve, PayoutAccumulator(schedules),
                                     workers=workers, landing_dir=tmp_path / str(workers)))
        assert [chunk.index for chunk in chunks] == list(range(5))
        results[workers] = ([_without_ciphertexts(chunk) for chunk in chunks], reserved,
                            sorted(path.rsplit("/", 1)[1] for chunk in chunks for path in chunk.landing_files))
    assert results[0] == results[1] == results[2]
    assert len(results[2][2]) == 5 * len(LANDING_KINDS)
    for relative in (tmp_path / "0").rglob("*.jsonl"):
        assert relative.read_bytes() == (tmp_path / "2" / relative.relative_to(tmp_path / "0")).read_bytes()
    assert not multiprocessing.active_children()


def test_worker_errors_reach_the_loader_and_stop_the_workers(currencies):
    schedules = {m.merchant_id: m.payout_schedule for m in MERCHANTS}
    gen = generator(currencies)
    with pytest.raises(TypeError):
        list(encoded_chunks(gen, lambda counts: dict.fromkeys(counts, "not an id"), PayoutAccumulator(schedules),
                            workers=2))
    assert not multiprocessing.active_children()

    def kill_the_workers(counts):
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)
        return dict.fromkeys(counts, 1)

    with pytest.raises(GeneratorError, match="exited"):
        list(encoded_chunks(gen, kill_the_workers, PayoutAccumulator(schedules), workers=2))
    assert not multiprocessing.active_children()
    with pytest.raises(GeneratorError, match="workers"):
        list(encoded_chunks(gen, kill_the_workers, PayoutAccumulator(schedules), workers=-1))
