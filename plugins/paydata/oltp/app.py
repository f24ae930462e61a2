"""The payment API's write path: one short transaction per operation, encryption done here.

Every function takes a psycopg2 connection to the OLTP database with no transaction open, runs
one transaction and commits it (or rolls it back and raises). Personal data is encrypted before
it is sent: each customer gets their own data key, kept in the key store (``paydata.keystore``,
a database of its own that no capture role can reach), and every ciphertext is bound to its
(table, column, customer_id); email lookups go through a keyed blind index. Functions that need
a data key take ``keys`` (a :class:`paydata.keystore.KeyStore`; default: the process-wide one). Card numbers are validated (Luhn), tokenised and fingerprinted here and never sent to
the database.

Errors: :class:`InvalidRequest` for input checked before writing, :class:`NotFound` for unknown
ids, :class:`RuleViolation` (:class:`IllegalTransition` for the charge state machine) carrying
the database's own message, :class:`ConcurrencyConflict` for a retryable conflict. Nothing is
written when any of them is raised. Key problems surface as :class:`paydata.crypto.CryptoError`.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from paydata.crypto import (
    FieldCipher,
    InvalidInput,
    blind_index,
    card_fingerprint,
    default_tokeniser,
    key_id_of,
    normalise,
    tokenise,
    validate_pan,
)
from paydata.keystore import KeyStore, default_keystore
from paydata.oltp import audit
from paydata.oltp._db import oltp_sql, transaction
from paydata.oltp.cards import (
    BRANDS,
    FUNDING_TYPES,
    check_expiry,
    detect_brand,
    processing_fee,
    require_positive_amount,
)
from paydata.oltp.errors import InvalidRequest, NotFound
from paydata.oltp.fraud_decision import Decision, FraudDecisions

log = logging.getLogger(__name__)

CUSTOMER_TABLE = "customer"
CUSTOMER_FIELDS = ("email", "name", "phone")
CHARGE_AVAILABLE_AFTER_DAYS = 2
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
DISPUTE_REASONS = (
    "fraudulent", "product_not_received", "duplicate", "subscription_canceled",
    "credit_not_processed", "general",
)
# Processor outcomes; refunds and disputes move a charge through refund() / open_dispute().
SETTLEMENT_STATUSES = ("succeeded", "failed")
_MAX_TEXT = 200


@dataclass(frozen=True)
class Payment:
    """What :func:`create_payment` created (``fraud_decision``: None unless decisions are on)."""

    payment_intent_id: int
    charge_id: int
    status: str
    fraud_decision: Decision | None = None


_UNSET = object()


# -- validation --------------------------------------------------------------------------------


def _require_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequest(f"{what} must be a positive integer id, got {value!r}")
    return value


def _optional_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a string or None, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise InvalidRequest(f"{what} must not be blank (pass None to leave it out)")
    if len(text) > _MAX_TEXT:
        raise InvalidRequest(f"{what} is longer than {_MAX_TEXT} characters")
    return text


def _checked(value: str | None, domain: str, what: str) -> str | None:
    """``value`` stripped, after checking it normalises in ``domain`` (email/phone syntax)."""
    text = _optional_text(value, what)
    if text is not None:
        try:
            normalise(text, domain)
        except InvalidInput as exc:
            raise InvalidRequest(f"{what}: {exc}") from None
    return text


def _country(value: str | None, what: str = "country") -> str | None:
    if value is None:
        return None
    import pycountry

    code = value.strip().upper() if isinstance(value, str) else None
    if code is None or len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise InvalidRequest(f"{what} must be an ISO 3166-1 alpha-2 code such as 'DE', got {value!r}")
    return code


def _currency(value: str) -> str:
    if not isinstance(value, str) or len(value.strip()) != 3 or not value.strip().isalpha():
        raise InvalidRequest(f"currency must be an ISO 4217 code such as 'EUR', got {value!r}")
    return value.strip().upper()


def _ip(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return ipaddress.ip_address(value.strip() if isinstance(value, str) else value).compressed
    except ValueError:
        raise InvalidRequest(f"ip_address must be an IPv4 or IPv6 address, got {value!r}") from None


def _choice(value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    if value is not None and value not in allowed:
        raise InvalidRequest(f"{what} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def encrypt_customer_fields(cipher: FieldCipher, customer_id: int, values: dict[str, str | None]) -> dict:
    """``{"<field>_enc": ciphertext}`` for the customer's personal fields, bound to the row."""
    return {
        f"{field}_enc": cipher.encrypt(values.get(field), table=CUSTOMER_TABLE, column=field, pk=customer_id)
        for field in CUSTOMER_FIELDS
    }


def decrypt_customer_fields(cipher: FieldCipher, customer_id: int, row: dict[str, Any]) -> dict:
    """The plaintext personal fields of a customer row (``None`` stays ``None``)."""
    return {
        field: cipher.decrypt(row[f"{field}_enc"], table=CUSTOMER_TABLE, column=field, pk=customer_id)
        for field in CUSTOMER_FIELDS
    }


# -- customers ---------------------------------------------------------------------------------


def create_customer(
    conn,
    merchant_id: int,
    email: str,
    name: str | None = None,
    phone: str | None = None,
    country: str | None = None,
    *,
    keys: KeyStore | None = None,
) -> int:
    """Create a customer of ``merchant_id`` and return its ``customer_id``.

    A new data key is created for the customer and stored in the key store (committed there before
    the OLTP transaction, so a failure leaves at most an unused key); email, name and phone are
    stored only as ciphertext bound to (customer, column, customer_id), plus the email's blind
    index. Raises :class:`InvalidRequest` for a malformed email/phone/country,
    :class:`NotFound` if the merchant has not been synced to ``merchant_ref`` and
    :class:`InvalidRequest` if it is closed.
    """
    _require_id(merchant_id, "merchant_id")
    if email is None:
        raise InvalidRequest("email is required")
    values = {
        "email": _checked(email, "email", "email"),
        "name": _optional_text(name, "name"),
        "phone": _checked(phone, "phone", "phone"),
    }
    country_code = _country(country)
    email_bidx = blind_index(values["email"], domain="email")
    keys = keys or default_keystore()
    with transaction(conn, "create customer") as cursor:
        cursor.execute(oltp_sql("merchant_ref_get"), {"merchant_id": merchant_id})
        merchant = cursor.fetchone()
        if merchant is None:
            raise NotFound(f"merchant {merchant_id} is not in merchant_ref: run the reference sync first")
        if merchant[1] == "closed":
            raise InvalidRequest(f"merchant {merchant_id} is closed and cannot take new customers")
        cursor.execute(oltp_sql("customer_insert"), {"merchant_id": merchant_id, "country_code": country_code})
        customer_id = cursor.fetchone()[0]
        owner_key = keys.create("customer", customer_id)
        encrypted = encrypt_customer_fields(owner_key.cipher(), customer_id, values)
        cursor.execute(
            oltp_sql("customer_set_personal_data"),
            {"customer_id": customer_id, "email_bidx": email_bidx, **encrypted},
        )
    return customer_id


def find_customer_by_email(conn, merchant_id: int, email: str) -> list[int]:
    """Ids of ``merchant_id``'s non-erased customers with this email (normalised), oldest first.

    Uses the blind index under every token key in the ring, so lookups keep working during a
    token-key rotation. Emails are not unique per merchant, hence a list (empty if none).
    """
    _require_id(merchant_id, "merchant_id")
    email = _checked(email, "email", "email")
    if email is None:
        raise InvalidRequest("email is required")
    candidates = default_tokeniser().blind_index_candidates(email, domain="email")
    with transaction(conn, "find customer by email") as cursor:
        cursor.execute(
            oltp_sql("customer_find_by_email_bidx"),
            {"merchant_id": merchant_id, "candidates": candidates},
        )
        return [customer_id for (customer_id,) in cursor.fetchall()]


def read_customer(conn, customer_id: int, *, purpose: str, keys: KeyStore | None = None) -> dict[str, Any]:
    """The customer with personal fields decrypted, and an audit row saying so.

    Keys: customer_id, merchant_id, email, name, phone, country_code, created_at, updated_at,
    erased_at. ``purpose`` is why the personal data is read, as a code (``support_request``,
    ``fraud_review``, ...): it is written with the caller's login role and the fields decrypted
    to the audit log (action ``personal_data_read``) in the same transaction as the read, so no
    plaintext is returned unless that row committed. An erased customer comes back with ``None``
    personal fields and no audit row (nothing was decrypted). Raises :class:`InvalidRequest` for a
    malformed purpose, :class:`NotFound`, or :class:`paydata.crypto.KeyDestroyed` if ciphertext
    exists but its data key is not in the key store (which the erasure path never leaves behind).
    """
    _require_id(customer_id, "customer_id")
    if not isinstance(purpose, str) or not audit.REASON_CODE.fullmatch(purpose):
        raise InvalidRequest(f"purpose must be a code like 'support_request', got {purpose!r}")
    with transaction(conn, "read customer") as cursor:
        cursor.execute(oltp_sql("customer_select"), {"customer_id": customer_id})
        found = cursor.fetchone()
        columns = [column.name for column in cursor.description]
        if found is None:
            raise NotFound(f"customer {customer_id} does not exist")
        row = dict(zip(columns, found, strict=True))
        result = {key: row[key] for key in (
            "customer_id", "merchant_id", "country_code", "created_at", "updated_at", "erased_at")}
        if row["country_code"] is not None:
            result["country_code"] = row["country_code"].strip()
        present = [field for field in CUSTOMER_FIELDS if row[f"{field}_enc"] is not None]
        if not present:
            return {**result, **dict.fromkeys(CUSTOMER_FIELDS)}
        cipher = (keys or default_keystore()).cipher(CUSTOMER_TABLE, key_id_of(row[f"{present[0]}_enc"]))
        personal = decrypt_customer_fields(cipher, customer_id, row)
        audit.record(cursor, "personal_data_read", CUSTOMER_TABLE, customer_id, reason=purpose,
                     detail={"fields": present})
    return {**result, **personal}


# -- cards -------------------------------------------------------------------------------------


def add_card(
    conn,
    customer_id: int,
    pan: str,
    exp_month: int,
    exp_year: int,
    brand: str | None = None,
    funding: str | None = None,
    bin_country: str | None = None,
) -> int:
    """Attach a card to a customer and return its ``payment_method_id``.

    The PAN is Luhn-checked (:class:`paydata.crypto.InvalidPAN`, a :class:`ValueError`, otherwise)
    and only its vault token, last four digits, keyed fingerprint, brand (detected from the IIN
    when not given), funding (default credit) and BIN country are stored. Without a BIN table the
    issuing country defaults to the customer's country. Raises :class:`InvalidRequest` for an
    expired card or a bad brand/funding/country, :class:`NotFound` for an unknown customer and
    :class:`InvalidRequest` for an erased one.
    """
    _require_id(customer_id, "customer_id")
    digits = validate_pan(pan)
    check_expiry(exp_month, exp_year)
    brand = _choice(brand, BRANDS, "brand") or detect_brand(digits)
    funding = _choice(funding, FUNDING_TYPES, "funding") or "credit"
    bin_country_code = _country(bin_country, "bin_country")
    # The vault issues one token per stored card: the random salt keeps tokens unique (the column
    # is UNIQUE) and unlinkable across customers; linking the same card is the fingerprint's job.
    token = tokenise(f"{digits}:{secrets.token_hex(16)}", domain="card_vault")
    fingerprint = card_fingerprint(digits)
    with transaction(conn, "add card") as cursor:
        cursor.execute(oltp_sql("customer_share_lock"), {"customer_id": customer_id})
        customer = cursor.fetchone()
        if customer is None:
            raise NotFound(f"customer {customer_id} does not exist")
        if customer[3] is not None:
            raise InvalidRequest(f"customer {customer_id} was erased and cannot add cards")
        if bin_country_code is None and customer[2] is not None:
            bin_country_code = customer[2].strip()
        cursor.execute(
            oltp_sql("payment_method_insert"),
            {
                "customer_id": customer_id,
                "token": token,
                "brand": brand,
                "funding": funding,
                "last4": digits[-4:],
                "exp_month": exp_month,
                "exp_year": exp_year,
                "bin_country_code": bin_country_code,
                "fingerprint": fingerprint,
            },
        )
        return cursor.fetchone()[0]


def detach_card(conn, payment_method_id: int) -> bool:
    """Detach a card from its customer (it can no longer be charged; history keeps it).

    Returns True if it was detached now, False if it already was (idempotent). Raises
    :class:`NotFound` for an unknown card.
    """
    _require_id(payment_method_id, "payment_method_id")
    with transaction(conn, "detach card") as cursor:
        cursor.execute(oltp_sql("payment_method_lock"), {"payment_method_id": payment_method_id})
        card = cursor.fetchone()
        if card is None:
            raise NotFound(f"payment method {payment_method_id} does not exist")
        cursor.execute(oltp_sql("payment_method_detach"), {"payment_method_id": payment_method_id})
        return cursor.rowcount == 1


def remove_card(conn, payment_method_id: int) -> str:
    """A customer deleting a card: delete it if it was never charged, otherwise detach it.

    Charges reference their card, so a used card must stay (detached). Returns ``"deleted"``,
    ``"detached"`` or ``"already_detached"``. Raises :class:`NotFound` for an unknown card.
    """
    _require_id(payment_method_id, "payment_method_id")
    params = {"payment_method_id": payment_method_id}
    with transaction(conn, "remove card") as cursor:
        cursor.execute(oltp_sql("payment_method_lock"), params)
        card = cursor.fetchone()
        if card is None:
            raise NotFound(f"payment method {payment_method_id} does not exist")
        # The FOR UPDATE lock above makes a concurrent payment on this card wait until we are done.
        cursor.execute(oltp_sql("payment_method_has_charges"), params)
        if not cursor.fetchone()[0]:
            cursor.execute(oltp_sql("payment_method_delete"), params)
            return "deleted"
        cursor.execute(oltp_sql("payment_method_detach"), params)
        return "detached" if cursor.rowcount == 1 else "already_detached"


# -- payments ----------------------------------------------------------------------------------


def _post_ledger(cursor, *, merchant_id, type_, source_id, amount, fee, currency_code, days) -> None:
    cursor.execute(
        oltp_sql("ledger_post"),
        {
            "merchant_id": merchant_id,
            "type": type_,
            "source_id": source_id,
            "amount": amount,
            "fee": fee,
            "currency_code": currency_code,
            "available_after_days": days,
        },
    )


def _settle(cursor, charge: dict[str, Any], new_status: str, failure_code, failure_message) -> None:
    """Move a locked pending charge to succeeded/failed, with intent status and ledger posting."""
    succeeded = new_status == "succeeded"
    cursor.execute(
        oltp_sql("charge_set_status"),
        {
            "charge_id": charge["charge_id"],
            "status": new_status,
            "failure_code": failure_code,
            "failure_message": failure_message,
            "captured": succeeded,
        },
    )
    cursor.execute(
        oltp_sql("payment_intent_set_status"),
        {
            "payment_intent_id": charge["payment_intent_id"],
            "status": "succeeded" if succeeded else "requires_payment_method",
        },
    )
    if succeeded:
        _post_ledger(
            cursor,
            merchant_id=charge["merchant_id"],
            type_="charge",
            source_id=charge["charge_id"],
            amount=charge["amount"],
            fee=processing_fee(charge["amount"]),
            currency_code=charge["currency_code"],
            days=CHARGE_AVAILABLE_AFTER_DAYS,
        )


def create_payment(
    conn,
    merchant_id: int,
    customer_id: int,
    payment_method_id: int,
    amount: int,
    currency: str | None = None,
    *,
    ip_address: str | None = None,
    device_id: str | None = None,
    session_id: str | None = None,
    outcome: str | None = None,
    failure_code: str | None = None,
    fraud_decisions: FraudDecisions | None | object = _UNSET,
) -> Payment:
    """Create a payment intent and a pending charge on the customer's card.

    With fraud decisions on (``fraud_decisions``, by default the process-wide client of
    :func:`default_fraud_decisions`, None when ``PAYDATA_OLTP_FRAUD_DECISIONS`` is off), the scoring
    API is asked about the committed charge and its answer, or ``unavailable``, stored in
    ``charge_fraud_decision`` (:mod:`paydata.oltp.fraud_decision`); that never fails the payment.

    ``currency`` defaults to the merchant's default currency. With ``outcome`` ``"succeeded"`` or
    ``"failed"`` the charge is settled in the same transaction (see :func:`update_charge_status`);
    otherwise it stays pending. Raises :class:`InvalidRequest` when the card is not the customer's,
    the customer not the merchant's, the card detached or expired, the customer erased or the
    merchant not active; :class:`NotFound` for an unknown card; :class:`RuleViolation` when the
    currency has not been synced to ``currency_ref``.
    """
    for value, what in ((merchant_id, "merchant_id"), (customer_id, "customer_id"),
                        (payment_method_id, "payment_method_id")):
        _require_id(value, what)
    require_positive_amount(amount)
    _choice(outcome, SETTLEMENT_STATUSES, "outcome")
    if outcome == "failed" and not _optional_text(failure_code, "failure_code"):
        raise InvalidRequest("a failed outcome needs a failure_code (e.g. 'card_declined')")
    ip = _ip(ip_address)
    device_id = _optional_text(device_id, "device_id")
    session_id = _optional_text(session_id, "session_id")
    with transaction(conn, "create payment") as cursor:
        cursor.execute(oltp_sql("payment_context"), {"payment_method_id": payment_method_id})
        found = cursor.fetchone()
        if found is None:
            raise NotFound(f"payment method {payment_method_id} does not exist")
        card_customer, detached_at, exp_month, exp_year, customer_merchant, erased_at, merchant_status = found
        if card_customer != customer_id:
            raise InvalidRequest(f"payment method {payment_method_id} does not belong to customer {customer_id}")
        if customer_merchant != merchant_id:
            raise InvalidRequest(f"customer {customer_id} is not a customer of merchant {merchant_id}")
        if erased_at is not None:
            raise InvalidRequest(f"customer {customer_id} was erased and cannot be charged")
        if detached_at is not None:
            raise InvalidRequest(f"payment method {payment_method_id} was detached and cannot be charged")
        if merchant_status != "active":
            raise InvalidRequest(f"merchant {merchant_id} is {merchant_status}, not active: it cannot take payments")
        check_expiry(exp_month, exp_year)
        if currency is None:
            cursor.execute(oltp_sql("merchant_ref_get"), {"merchant_id": merchant_id})
            currency_code = cursor.fetchone()[2].strip()
        else:
            currency_code = _currency(currency)
        cursor.execute(
            oltp_sql("payment_intent_insert"),
            {"merchant_id": merchant_id, "customer_id": customer_id, "amount": amount,
             "currency_code": currency_code},
        )
        intent_id = cursor.fetchone()[0]
        cursor.execute(
            oltp_sql("charge_insert"),
            {"payment_intent_id": intent_id, "payment_method_id": payment_method_id, "amount": amount,
             "currency_code": currency_code, "ip_address": ip, "device_id": device_id,
             "session_id": session_id},
        )
        charge_id = cursor.fetchone()[0]
        status = "pending"
        if outcome is not None:
            charge = {"charge_id": charge_id, "payment_intent_id": intent_id, "merchant_id": merchant_id,
                      "amount": amount, "currency_code": currency_code}
            _settle(cursor, charge, outcome, failure_code if outcome == "failed" else None, None)
            status = outcome
    decisions = default_fraud_decisions() if fraud_decisions is _UNSET else fraud_decisions
    decision = decisions.decide(conn, charge_id) if decisions is not None else None
    return Payment(intent_id, charge_id, status, decision)


_fraud_decisions: dict[str, FraudDecisions | None] = {}


def default_fraud_decisions() -> FraudDecisions | None:
    """The process-wide decision client from the environment (built once), None when off. A
    configuration that cannot be used (a bad setting, no scorer connection) is logged once and
    treated as off: payments go on without decisions."""
    if "default" not in _fraud_decisions:
        try:
            _fraud_decisions["default"] = FraudDecisions.from_settings()
        except Exception as exc:  # noqa: BLE001 - a decision setting must never stop payments
            log.error("fraud decisions are off: their configuration failed (%s: %s)", type(exc).__name__, exc)
            _fraud_decisions["default"] = None
    return _fraud_decisions["default"]


def _lock_charge(cursor, charge_id: int) -> dict[str, Any]:
    cursor.execute(oltp_sql("charge_lock"), {"charge_id": charge_id})
    found = cursor.fetchone()
    if found is None:
        raise NotFound(f"charge {charge_id} does not exist")
    charge = dict(zip([column.name for column in cursor.description], found, strict=True))
    charge["currency_code"] = charge["currency_code"].strip()
    return charge


def update_charge_status(
    conn, charge_id: int, new_status: str, failure_code: str | None = None,
    failure_message: str | None = None,
) -> str:
    """Record the processor's outcome of a charge: ``"succeeded"`` or ``"failed"``.

    Success captures the charge, marks the intent succeeded and posts the ledger row (charge
    amount, processing fee); failure needs a ``failure_code`` and sends the intent back to
    ``requires_payment_method``. Setting the status the charge already has is a no-op (safe to
    retry). Returns the new status. Transitions the state machine forbids (e.g. failed ->
    succeeded) raise :class:`IllegalTransition` with the database's message; other statuses are
    reached through :func:`refund`, :func:`open_dispute` and :func:`close_dispute`
    (:class:`InvalidRequest` here).
    """
    _require_id(charge_id, "charge_id")
    if new_status not in SETTLEMENT_STATUSES:
        raise InvalidRequest(
            f"update_charge_status sets {' or '.join(SETTLEMENT_STATUSES)}, not {new_status!r}; "
            "use refund(), open_dispute() or close_dispute() for the other statuses"
        )
    failure_code = _optional_text(failure_code, "failure_code")
    failure_message = _optional_text(failure_message, "failure_message")
    if new_status == "failed" and failure_code is None:
        raise InvalidRequest("a failed charge needs a failure_code (e.g. 'card_declined')")
    if new_status != "failed" and failure_code is not None:
        raise InvalidRequest("failure_code is only allowed with status 'failed'")
    with transaction(conn, f"set charge {charge_id} to {new_status}") as cursor:
        charge = _lock_charge(cursor, charge_id)
        if charge["status"] != new_status:
            _settle(cursor, charge, new_status, failure_code, failure_message)
    return new_status


def refund(conn, charge_id: int, amount: int, reason: str | None = None) -> int:
    """Refund ``amount`` of a succeeded or partially refunded charge; return the ``refund_id``.

    The refund is recorded as succeeded, posts a negative ledger row and moves the charge to
    ``partially_refunded`` or (when fully refunded) ``refunded``. The database refuses refunds of
    charges in other statuses and refunds beyond the charge amount (:class:`RuleViolation` naming
    the amounts); concurrent refunds of one charge are checked one after the other.
    """
    _require_id(charge_id, "charge_id")
    require_positive_amount(amount)
    _choice(reason, REFUND_REASONS, "reason")
    with transaction(conn, f"refund charge {charge_id}") as cursor:
        charge = _lock_charge(cursor, charge_id)
        cursor.execute(oltp_sql("refund_insert"), {"charge_id": charge_id, "amount": amount, "reason": reason})
        refund_id = cursor.fetchone()[0]
        cursor.execute(oltp_sql("refund_total"), {"charge_id": charge_id})
        refunded = cursor.fetchone()[0]
        _post_ledger(cursor, merchant_id=charge["merchant_id"], type_="refund", source_id=refund_id,
                     amount=-amount, fee=0, currency_code=charge["currency_code"], days=0)
        new_status = "refunded" if refunded >= charge["amount"] else "partially_refunded"
        if new_status != charge["status"]:
            cursor.execute(
                oltp_sql("charge_set_status"),
                {"charge_id": charge_id, "status": new_status, "failure_code": None,
                 "failure_message": None, "captured": None},
            )
    return refund_id


def open_dispute(conn, charge_id: int, reason: str = "general", amount: int | None = None) -> int:
    """Open a dispute (chargeback) on a charge; return the ``dispute_id``.

    ``amount`` defaults to what is left after refunds. The charge moves to ``disputed`` (the state
    machine only allows this from succeeded / partially_refunded: :class:`IllegalTransition`
    otherwise) and the disputed amount is withdrawn from the merchant's balance (ledger row).
    """
    _require_id(charge_id, "charge_id")
    _choice(reason, DISPUTE_REASONS, "reason")
    if amount is not None:
        require_positive_amount(amount)
    with transaction(conn, f"open dispute on charge {charge_id}") as cursor:
        charge = _lock_charge(cursor, charge_id)
        cursor.execute(oltp_sql("refund_total"), {"charge_id": charge_id})
        remaining = charge["amount"] - cursor.fetchone()[0]
        cursor.execute(
            oltp_sql("charge_set_status"),
            {"charge_id": charge_id, "status": "disputed", "failure_code": None,
             "failure_message": None, "captured": None},
        )
        amount = remaining if amount is None else amount
        if amount > remaining:
            raise InvalidRequest(
                f"dispute of {amount} exceeds what charge {charge_id} still holds ({remaining} after refunds)"
            )
        cursor.execute(oltp_sql("dispute_insert"), {"charge_id": charge_id, "amount": amount, "reason": reason})
        dispute_id = cursor.fetchone()[0]
        _post_ledger(cursor, merchant_id=charge["merchant_id"], type_="dispute", source_id=dispute_id,
                     amount=-amount, fee=0, currency_code=charge["currency_code"], days=0)
    return dispute_id


def close_dispute(conn, dispute_id: int, won: bool) -> str:
    """Decide a dispute; return the charge's new status.

    Won: the withdrawn amount is reinstated (ledger row) and the charge returns to ``succeeded``
    or ``partially_refunded``. Lost: the charge becomes ``dispute_lost`` (final). Raises
    :class:`InvalidRequest` if the dispute is already closed, :class:`NotFound` if unknown.
    """
    _require_id(dispute_id, "dispute_id")
    if not isinstance(won, bool):
        raise InvalidRequest("won must be True or False")
    with transaction(conn, f"close dispute {dispute_id}") as cursor:
        cursor.execute(oltp_sql("dispute_lock"), {"dispute_id": dispute_id})
        found = cursor.fetchone()
        if found is None:
            raise NotFound(f"dispute {dispute_id} does not exist")
        _, charge_id, amount, status = found
        if status in ("won", "lost"):
            raise InvalidRequest(f"dispute {dispute_id} is already closed ({status})")
        charge = _lock_charge(cursor, charge_id)
        cursor.execute(oltp_sql("dispute_close"), {"dispute_id": dispute_id, "status": "won" if won else "lost"})
        if won:
            cursor.execute(oltp_sql("refund_total"), {"charge_id": charge_id})
            new_status = "partially_refunded" if cursor.fetchone()[0] > 0 else "succeeded"
            _post_ledger(cursor, merchant_id=charge["merchant_id"], type_="dispute", source_id=dispute_id,
                         amount=amount, fee=0, currency_code=charge["currency_code"], days=0)
        else:
            new_status = "dispute_lost"
        cursor.execute(
            oltp_sql("charge_set_status"),
            {"charge_id": charge_id, "status": new_status, "failure_code": None,
             "failure_message": None, "captured": None},
        )
    return new_status


def ledger_discrepancies(conn) -> list[tuple[int, int, int]]:
    """``(charge_id, expected, posted)`` for every charge whose ledger rows do not add up.

    Expected per charge: captured amount minus succeeded refunds minus disputes not won; posted:
    the sum of its charge, refund and dispute ledger rows. Empty when the ledger is consistent.
    """
    with transaction(conn, "ledger reconciliation") as cursor:
        cursor.execute(oltp_sql("ledger_discrepancies"))
        return [tuple(row) for row in cursor.fetchall()]
