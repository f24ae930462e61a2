"""The fraud scoring API's decision on a new charge, asked for by the payment API and stored.

Off unless ``PAYDATA_OLTP_FRAUD_DECISIONS=on``. When on, :func:`paydata.oltp.app.create_payment`
asks ``POST /v1/score`` (``ml/serving``) about the charge it just committed and stores the answer
in ``charge_fraud_decision`` (migration V012): score, band and model version, or ``unavailable``
with the reason (``timeout``, ``unreachable``, ``http_<status>``, ``bad_answer``) when the scorer
did not answer well within the timeout. The payment is created whatever happens here: the call
comes after the charge's transaction, is bounded by the timeout, and no error of it escapes.

The request carries what the warehouse gives the scorer for the same charge
(``ml.scoring.warehouse.charge_request``): the CDC tokens of the customer, card fingerprint,
device, IP address and session (the domains are read from the CDC manifest, ``include/cdc/oltp.yaml``,
so both sides tokenise alike), and the amount in USD by the charge fact's rule (the reference
database's latest rate on or before the charge's UTC date, :class:`UsdRates`).

| variable | default | what |
|---|---|---|
| ``PAYDATA_OLTP_FRAUD_DECISIONS`` | ``off`` | ``on``: ask for and store a decision per new charge |
| ``PAYDATA_OLTP_FRAUD_TIMEOUT_MS`` | ``150`` | bound on the whole call (connect, send, answer) |

The scorer's address and API key are the ``paydata_fraud_scorer`` connection (as the scoring DAG's).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from paydata.oltp._db import oltp_sql, reference_sql

log = logging.getLogger(__name__)

ENABLED_VARIABLE = "PAYDATA_OLTP_FRAUD_DECISIONS"
TIMEOUT_VARIABLE = "PAYDATA_OLTP_FRAUD_TIMEOUT_MS"
DEFAULT_TIMEOUT_MS = 150
CENT = Decimal("0.01")
BANDS = ("approve", "review", "decline")


def decisions_enabled(environ: dict[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(ENABLED_VARIABLE, "off").strip().lower()
    if value not in {"on", "off", "true", "false", "1", "0", ""}:
        raise ValueError(f"{ENABLED_VARIABLE} must be 'on' or 'off', got {value!r}")
    return value in {"on", "true", "1"}


@dataclass(frozen=True)
class Decision:
    """What was stored for a charge."""

    charge_id: int
    outcome: str  # "scored" | "unavailable"
    score: float | None = None
    band: str | None = None
    model_version: str | None = None
    unavailable_reason: str | None = None
    latency_ms: float = 0.0


class UsdRates:
    """Units of USD per unit of a currency on a day, from the reference database (the charge
    fact's rule, ``reference/queries/app/usd_rate.sql``), remembered per (currency, day): a day's rate is
    read once per process. ``connect`` returns a reference connection with no transaction open."""

    def __init__(self, connect: Callable[[], Any]):
        self._connect, self._conn = connect, None
        self._known: dict[tuple[str, dt.date], Decimal | None] = {}

    def _connection(self):
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def rate(self, currency_code: str, day: dt.date) -> Decimal | None:
        if currency_code == "USD":
            return Decimal(1)
        key = (currency_code, day)
        if key not in self._known:
            conn = self._connection()
            try:
                with conn.cursor() as cursor:
                    cursor.execute(reference_sql("usd_rate"), {"currency_code": currency_code, "day": day})
                    found = cursor.fetchone()
            finally:
                conn.rollback()
            self._known[key] = None if found is None else Decimal(found[0])
        return self._known[key]


def amount_usd(amount: int, minor_units: int, rate: Decimal | None) -> float | None:
    """``round(amount * rate / 10^minor_units, 2)`` as the charge fact computes it (half away from zero)."""
    if rate is None:
        return None
    return float((Decimal(amount) * rate / Decimal(10) ** minor_units).quantize(CENT, rounding=ROUND_HALF_UP))


def token_domains() -> dict[str, str]:
    """Request field -> CDC token domain, from the OLTP capture manifest."""
    from paydata.cdc.manifest import load_manifest

    tables = load_manifest("oltp").tables
    return {"customer_token": tables["payment_intent"].columns["customer_id"].domain,
            "card_token": tables["payment_method"].columns["fingerprint"].domain,
            "device_token": tables["charge"].columns["device_id"].domain,
            "ip_token": tables["charge"].columns["ip_address"].domain,
            "session_token": tables["charge"].columns["session_id"].domain}


class FraudDecisions:
    """Asks the scorer about a charge and stores its decision (see the module doc).

    ``http`` is an ``httpx.Client`` already pointed at the scorer (base URL, API key); ``usd_rates``
    converts amounts; ``tokenise`` defaults to :func:`paydata.crypto.tokenise` (CDC's).
    """

    def __init__(self, http, usd_rates: UsdRates, *, timeout_seconds: float = DEFAULT_TIMEOUT_MS / 1000,
                 tokenise: Callable[..., str] | None = None, domains: dict[str, str] | None = None):
        if tokenise is None:
            from paydata.crypto import tokenise
        self.http, self.usd_rates, self.timeout_seconds = http, usd_rates, timeout_seconds
        self.tokenise = tokenise
        self.domains = domains or token_domains()

    @classmethod
    def from_settings(cls, environ: dict[str, str] | None = None) -> FraudDecisions | None:
        """The configured client, or None when decisions are off (the default)."""
        env = os.environ if environ is None else environ
        if not decisions_enabled(env):
            return None
        import httpx

        from paydata import settings

        connection = settings.connection(settings.FRAUD_SCORER_CONN_ID)
        base_url = f"{connection.schema or 'http'}://{connection.host}:{connection.port}"
        timeout = int(env.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT_MS))) / 1000
        http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {connection.password or ''}"})
        return cls(http, UsdRates(lambda: settings.pg_connect(settings.REFERENCE_CONN_ID)), timeout_seconds=timeout)

    def request(self, context: dict[str, Any]) -> dict[str, Any]:
        """The ``/v1/score`` body of a charge (``oltp/queries/app/charge_scoring_context.sql`` row)."""

        def token(field: str, value: Any) -> str | None:
            return None if value is None else self.tokenise(str(value), domain=self.domains[field])

        created_at = context["created_at"]
        currency = context["currency_code"].strip()
        rate = self.usd_rates.rate(currency, created_at.astimezone(dt.UTC).date())
        return {"charge_id": int(context["charge_id"]),
                "customer_token": token("customer_token", context["customer_id"]),
                "card_token": token("card_token", context["fingerprint"]),
                "device_token": token("device_token", context["device_id"]),
                "ip_token": token("ip_token", context["ip_address"]),
                "session_token": token("session_token", context["session_id"]),
                "merchant_id": int(context["merchant_id"]), "amount": int(context["amount"]), "currency": currency,
                "amount_usd": amount_usd(int(context["amount"]), int(context["minor_units"]), rate),
                "card_country": context["bin_country_code"], "created_at": created_at.isoformat()}

    def ask(self, body: dict[str, Any]) -> Decision:
        """The scorer's answer about one charge, or ``unavailable`` with the reason (never raises
        for anything the scorer or the network does)."""
        import httpx

        charge_id = body["charge_id"]
        started = time.perf_counter()

        def unavailable(reason: str) -> Decision:
            return Decision(charge_id, "unavailable", unavailable_reason=reason,
                            latency_ms=1000 * (time.perf_counter() - started))

        try:
            response = self.http.post("/v1/score", json=body, timeout=self.timeout_seconds)
        except httpx.TimeoutException:
            return unavailable("timeout")
        except httpx.HTTPError:
            return unavailable("unreachable")
        if response.status_code != 200:
            return unavailable(f"http_{response.status_code}")
        try:
            answer = response.json()
            score, band, version = float(answer["score"]), answer["band"], str(answer["model_version"])
        except (ValueError, KeyError, TypeError):
            return unavailable("bad_answer")
        if not 0.0 <= score <= 1.0 or band not in BANDS or not version.strip() or answer.get("charge_id") != charge_id:
            return unavailable("bad_answer")
        return Decision(charge_id, "scored", score=score, band=band, model_version=version,
                        latency_ms=1000 * (time.perf_counter() - started))

    def decide(self, conn, charge_id: int) -> Decision:
        """Ask about a committed charge and store the decision, in its own short transaction.
        Anything failing before the call (the context, the FX rate) is stored as ``unavailable``
        (``no_context``, ``error``) and logged by type only; a failure to store is logged and the
        decision returned unstored."""
        from paydata.oltp._db import transaction

        try:
            with conn.cursor() as cursor:
                cursor.execute(oltp_sql("charge_scoring_context"), {"charge_id": charge_id})
                row = cursor.fetchone()
                names = [column.name for column in cursor.description]
            conn.rollback()
            if row is None:
                decision = Decision(charge_id, "unavailable", unavailable_reason="no_context")
            else:
                decision = self.ask(self.request(dict(zip(names, row, strict=True))))
        except Exception as exc:  # noqa: BLE001 - a decision must never fail the payment
            conn.rollback()
            log.warning("fraud decision for charge %s not asked: %s", charge_id, type(exc).__name__)
            decision = Decision(charge_id, "unavailable", unavailable_reason="error")
        try:
            with transaction(conn, f"store fraud decision of charge {charge_id}") as cursor:
                cursor.execute(oltp_sql("charge_fraud_decision_insert"), {
                    "charge_id": decision.charge_id, "outcome": decision.outcome, "score": decision.score,
                    "band": decision.band, "model_version": decision.model_version,
                    "unavailable_reason": decision.unavailable_reason, "latency_ms": decision.latency_ms})
        except Exception as exc:  # noqa: BLE001 - the payment is committed already
            log.warning("fraud decision for charge %s not stored: %s", charge_id, type(exc).__name__)
        return decision

    def close(self) -> None:
        self.http.close()
