"""Request and response models of the scoring API: everything is validated at the edge.

Tokens are the platform's opaque identifiers (``tok_<key>_<base32>``, or ``pm:<id>`` for a card
without a fingerprint): letters, digits and ``_ . : -`` only, at most 128 characters, so no
operator, quote or path ever reaches the store; anything else is a 422 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from ml.serving.config import MAX_BATCH

Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")]
Band = Literal["approve", "review", "decline"]


class ChargeAttributes(BaseModel):
    """One payment as the API sees it: tokens and amounts only, no personal data."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=False)

    charge_id: int = Field(gt=0, lt=2**63)
    customer_token: Token | None = None
    card_token: Token | None = Field(None, description="card fingerprint token (or pm:<payment method id>)")
    device_token: Token | None = None
    ip_token: Token | None = None
    session_token: Token | None = None
    merchant_id: int = Field(gt=0, lt=2**63)
    amount: int = Field(ge=0, le=10**13, description="in the currency's minor units")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    amount_usd: float | None = Field(None, ge=0, le=1e11,
                                     description="the amount in USD at the charge's FX rate (the warehouse's amount_usd)")
    card_country: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="BIN country")
    created_at: AwareDatetime


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    charges: list[ChargeAttributes] = Field(min_length=1, max_length=MAX_BATCH)


class ScoreResponse(BaseModel):
    charge_id: int
    score: float
    band: Band
    model_version: str
    reasons: list[str]
    feature_misses: list[str] = Field(description="entities scored without an online document")
    features_degraded: bool = Field(description="the online store did not answer in time: stored features unknown")


class BatchResponse(BaseModel):
    model_version: str
    results: list[ScoreResponse]
