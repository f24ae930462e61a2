"""A PII scan of a whole Mongo database, for tests and for operators who want to check a copy.

:func:`pii_findings` walks every string of every document of every collection and reports where
:func:`paydata.crypto.pii.find_pii` finds an email, card number, phone number or IP address, or
where one of the given known values (customers' names, emails, raw identifiers, phone digits)
occurs, case-insensitively. A finding names the collection, the ``_id`` and what matched, never
the value. A full scan reads everything: run it on small or sampled data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from paydata.crypto.pii import find_pii

_MIN_PHONE_DIGITS = 7


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def pii_findings(database, names: Iterable[str] = (), emails: Iterable[str] = (), phones: Iterable[str] = (),
                 raw_values: Iterable[str] = ()) -> list[tuple[str, Any, str]]:
    """``(collection, _id, kind)`` for every string holding PII or a known value; empty when clean."""
    known = sorted({value.casefold() for value in (*names, *emails, *raw_values) if value})
    phone_digits = set()
    for phone in phones:
        digits = "".join(ch for ch in phone.split("x")[0] if ch.isdigit())
        if len(digits) >= _MIN_PHONE_DIGITS:
            phone_digits.add(digits)
    findings = []
    for collection in sorted(database.list_collection_names()):
        for doc in database[collection].find():
            for text in _strings(doc):
                findings += [(collection, doc["_id"], kind) for kind, _match in find_pii(text)]
                folded = text.casefold()
                findings += [(collection, doc["_id"], "known value") for value in known if value in folded]
                if not text.startswith("tok_"):
                    digits = "".join(ch for ch in text if ch.isdigit())
                    findings += [(collection, doc["_id"], "known phone") for phone in phone_digits if phone in digits]
    return findings
