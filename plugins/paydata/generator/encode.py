"""A chunk straight to COPY text, one pre-built format string per table (the loader's hot path).

:meth:`TrafficChunk.rows` is the readable reference: tuples per table that
:func:`paydata.generator.copy.copy_buffer` formats value by value. :func:`encode_chunk` writes the
same text (byte for byte when ``encrypt=False``; the unit tests compare the two) without building
the tuples or dispatching on every value's type, which is several times cheaper.

Escaping: free text can only come from the catalogue (failure messages, reasons, statuses), so those
values are escaped once through a memo. Everything else is an int, a timestamp, a bytea, or a string
the generator formats itself from letters, digits, ``_``, ``.``, ``-`` and ``@`` (tokens, session and
device ids, IP addresses, country and currency codes, key ids), which COPY text carries as is.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

from paydata.generator.copy import copy_value
from paydata.generator.traffic import TrafficChunk

NULL = "\\N"
_INTENT_STATUS = {"succeeded": "succeeded", "failed": "requires_payment_method"}


@lru_cache(maxsize=4096)
def _escaped(value: str | None) -> str:
    return NULL if value is None else copy_value(value)


def _timestamp(moment: dt.datetime | None) -> str:
    return NULL if moment is None else moment.isoformat()


def _hex(value: bytes) -> str:
    return "\\\\x" + value.hex()


def encode_chunk(chunk: TrafficChunk, first_ids: dict[str, int], *, encrypt: bool = True) -> dict[str, str]:
    """COPY text per table (keys as :meth:`TrafficChunk.rows`; empty tables map to ``""``).

    Ids are shifted exactly as :meth:`TrafficChunk.rows` shifts them. With ``encrypt`` every
    customer gets a fresh data key (KEK and token key from the environment: raises
    :class:`paydata.crypto.KeyConfigError` if they are missing) and a ``customer_data_key`` row;
    without it the personal columns are NULL and no key rows are written.
    """
    base = {table: first_ids.get(table, 1) for table in (
        "customer", "payment_method", "payment_intent", "charge", "refund", "dispute", "balance_transaction")}
    customer_base, card_base = base["customer"], base["payment_method"]
    intent_base, charge_base = base["payment_intent"], base["charge"]
    return {
        **_customers(chunk, customer_base, encrypt),
        "payment_method": _cards(chunk, card_base, customer_base),
        **_charges(chunk, intent_base, charge_base, card_base, customer_base),
        "refund": "".join(
            f"{base['refund'] + r.local_id}\t{charge_base + r.charge_local}\t{r.amount}\t{_escaped(r.status)}\t"
            f"{_escaped(r.reason)}\t{(stamp := r.created_at.isoformat())}\t{stamp}\n"
            for r in chunk.refunds),
        "dispute": "".join(
            f"{base['dispute'] + d.local_id}\t{charge_base + d.charge_local}\t{d.amount}\t{_escaped(d.reason)}\t"
            f"{_escaped(d.status)}\t{d.opened_at.isoformat()}\t{_timestamp(d.closed_at)}\t"
            f"{(d.closed_at or d.opened_at).isoformat()}\n"
            for d in chunk.disputes),
        "balance_transaction": _ledger(chunk, base),
        "charge_status_step": "".join(
            f"{charge_base + local}\t{step}\t{_escaped(status)}\n" for local, step, status in chunk.status_steps),
    }


def _customers(chunk: TrafficChunk, customer_base: int, encrypt: bool) -> dict[str, str]:
    customers, data_keys = [], []
    if not encrypt:
        for c in chunk.customers:
            stamp = c.created_at.isoformat()
            customers.append(f"{customer_base + c.local_id}\t{c.merchant_id}\t\\N\t\\N\t\\N\t\\N\t"
                             f"{c.country_code}\t{stamp}\t{stamp}\n")
        return {"customer": "".join(customers), "customer_data_key": ""}
    from paydata.crypto import default_envelope, default_tokeniser, new_owner_key

    envelope = default_envelope()
    blind_index = default_tokeniser().blind_index
    for c in chunk.customers:
        customer_id = customer_base + c.local_id
        key = new_owner_key(envelope)
        encrypt_field = key.cipher().encrypt
        identity = c.identity
        stamp = c.created_at.isoformat()
        customers.append(
            f"{customer_id}\t{c.merchant_id}\t"
            f"\\\\x{encrypt_field(identity.email, table='customer', column='email', pk=customer_id).hex()}\t"
            f"\\\\x{encrypt_field(identity.name, table='customer', column='name', pk=customer_id).hex()}\t"
            f"\\\\x{encrypt_field(identity.phone, table='customer', column='phone', pk=customer_id).hex()}\t"
            f"\\\\x{blind_index(identity.email, domain='email').hex()}\t{c.country_code}\t{stamp}\t{stamp}\n")
        data_keys.append(f"{customer_id}\t{key.key_id}\t{_hex(key.wrapped)}\t{stamp}\n")
    return {"customer": "".join(customers), "customer_data_key": "".join(data_keys)}


def _cards(chunk: TrafficChunk, card_base: int, customer_base: int) -> str:
    return "".join(
        f"{card_base + c.local_id}\t{customer_base + c.customer_local}\t{c.token}\t{_escaped(c.brand)}\t"
        f"{_escaped(c.funding)}\t{c.last4}\t{c.exp_month}\t{c.exp_year}\t{c.bin_country_code}\t{c.fingerprint}\t"
        f"{c.created_at.isoformat()}\n"
        for c in chunk.cards)


def _charges(chunk: TrafficChunk, intent_base: int, charge_base: int, card_base: int,
             customer_base: int) -> dict[str, str]:
    intents, charges = [], []
    add_intent, add_charge = intents.append, charges.append
    for c in chunk.charges:
        intent_id = intent_base + c.local_id
        stamp = c.created_at.isoformat()
        status = c.status
        add_intent(f"{intent_id}\t{c.merchant_id}\t{customer_base + c.customer_local}\t{c.amount}\t"
                   f"{_escaped(c.currency_code)}\t{_INTENT_STATUS.get(status, 'processing')}\t{stamp}\t{stamp}\n")
        add_charge(f"{charge_base + c.local_id}\t{intent_id}\t{card_base + c.card_local}\t{c.amount}\t"
                   f"{_escaped(c.currency_code)}\t{_escaped(status)}\t{_escaped(c.failure_code)}\t"
                   f"{_escaped(c.failure_message)}\t{'t' if status == 'succeeded' else 'f'}\t{c.ip_address}\t"
                   f"{c.device_id}\t{c.session_id}\t{stamp}\t{stamp}\n")
    return {"payment_intent": "".join(intents), "charge": "".join(charges)}


def _ledger(chunk: TrafficChunk, base: dict[str, int]) -> str:
    lines = []
    add = lines.append
    first = base["balance_transaction"]
    for offset, e in enumerate(chunk.ledger):
        source = NULL if e.source_table is None else base[e.source_table] + e.source_local
        add(f"{first + offset}\t{e.merchant_id}\t{_escaped(e.type)}\t{source}\t{e.amount}\t{e.fee}\t"
            f"{e.amount - e.fee}\t{_escaped(e.currency_code)}\t{e.created_at.isoformat()}\t{e.available_on.isoformat()}\n")
    return "".join(lines)
