"""Make a landing record safe for Mongo: tokens for identifiers, scrubbed free text, a PII check.

Free text (``x-store: scrub``) goes through two passes:

1. :func:`paydata.crypto.pii.scrub`: emails, Luhn-valid card numbers, ``+``/North-American phone
   numbers and IP addresses become ``[email]``, ``[pan]``, ``[phone]``, ``[ip]``.
2. Known customers (:class:`KnownValues`): every window of 2 to 4 consecutive words is normalised
   (case-folded, single spaces) and its blind index (HMAC-SHA256 under the token key, domain
   ``person_name``) looked up in the set of blind indexes of the names of customers not erased;
   a hit becomes ``[name]``. Every run of 6-15 digits (spaces, dots, dashes and brackets allowed
   between them) is looked up the same way among the customers' phone numbers (domain
   ``phone``), which catches national formats the pattern pass cannot tell from a reference
   number; a hit becomes ``[phone]``.

The set holds 16-byte keyed hashes only. It is built by decrypting each customer's name and
phone once (:meth:`KnownValues.from_oltp`); no plaintext is kept, and the only thing written is
one audit row per run (who, purpose, fields, how many customers).

Identifiers (``x-store: token:<domain>``) become the same tokens as in CDC (``session``,
``device``, ``ip``, ``customer``), so Mongo documents join with ``payments`` and the warehouse.
Every other string that is stored is checked with :func:`paydata.crypto.pii.find_pii`; a hit
rejects the record (``pii_in_field``) because a field that should never hold personal data
cannot be repaired by guessing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from typing import Any

from paydata.crypto import InvalidInput
from paydata.crypto.pii import find_pii, scrub
from paydata.crypto.tokens import Tokeniser
from paydata.nosql.records import RecordType, Reject

NAME_DOMAIN = "person_name"
NAME_LABEL = "[name]"
PHONE_LABEL = "[phone]"
_WORD = re.compile(r"[^\W\d_]+(?:['’.-][^\W\d_]+)*")
_WORD_GAP = re.compile(r"\s+")
_DIGIT_RUN = re.compile(r"\+?\(?\d[\d .()-]{4,22}\d")
_MIN_WORDS, _MAX_WORDS = 2, 4
_PHONE_EXTENSION = re.compile(r"(?i)\s*(?:x|ext\.?|extension)\s*\d{1,6}$")
# Strings that cannot hold an email, IP, card or phone number need no PII scan: no '@', '.', ':'
# and fewer than 7 digits.
_MAY_HOLD_PII = re.compile(r"[@.:]|(?:\d\D*){7}")


def normalise_name(text: str) -> str:
    """Case-folded words joined by single spaces (``"  Ana  DE Souza"`` -> ``"ana de souza"``)."""
    return " ".join(text.casefold().split())


# The audit row of the bulk decryption (KnownValues.from_oltp): what is read, why, by which job.
BULK_READ_PURPOSE = "pii_scrubbing"
BULK_READ_FIELDS = ("name", "phone")
BULK_READ_JOB = "nosql_ingest"


class KnownValues:
    """Blind indexes of known customers' names and phones, for lookup of candidate words in text."""

    def __init__(self, tokeniser: Tokeniser, names: set[bytes], phones: set[bytes]) -> None:
        self.tokeniser = tokeniser
        self.names = names
        self.phones = phones

    @classmethod
    def from_plaintext(cls, tokeniser: Tokeniser, names: Iterable[str], phones: Iterable[str] = ()) -> KnownValues:
        known = cls(tokeniser, set(), set())
        for name in names:
            known.add_name(name)
        for phone in phones:
            known.add_phone(phone)
        return known

    @classmethod
    def from_oltp(cls, conn, tokeniser: Tokeniser, keys=None, *, purpose: str = BULK_READ_PURPOSE) -> KnownValues:
        """From every customer not erased: decrypt name and phone, keep only their blind indexes.

        Data keys come from the key store (``keys``, default :func:`paydata.keystore.default_keystore`).
        Reads with a server-side cursor, so memory holds the hashes and one page of rows. A
        customer whose data key cannot be opened is skipped (it is being erased).

        The bulk decryption is audited like a read through the application: one
        ``personal_data_read`` row about the whole ``customer`` table (who: the login; ``reason``:
        ``purpose``; ``detail``: the fields, how many customers were decrypted and skipped, the
        job), written through ``audit_append`` in the reading transaction and committed before the
        set is returned. A role that cannot write the audit row gets an error, not the set.
        """
        from paydata.crypto import CryptoError
        from paydata.crypto.fields import key_id_of
        from paydata.keystore import default_keystore
        from paydata.oltp import audit
        from paydata.sql import load_sql

        keys = keys or default_keystore()
        known = cls(tokeniser, set(), set())
        decrypted = skipped = 0
        try:
            with conn.cursor(name="paydata_known_customers") as cursor:
                cursor.itersize = 5000
                cursor.execute(load_sql("oltp/queries/nosql/known_customers.sql"))
                for customer_id, name_enc, phone_enc in cursor:
                    try:
                        cipher = keys.cipher("customer", key_id_of(bytes(name_enc if name_enc is not None else phone_enc)))
                        name = cipher.decrypt(bytes(name_enc), table="customer", column="name", pk=customer_id) \
                            if name_enc is not None else None
                        phone = cipher.decrypt(bytes(phone_enc), table="customer", column="phone", pk=customer_id) \
                            if phone_enc is not None else None
                    except CryptoError:
                        skipped += 1
                        continue
                    decrypted += 1
                    if name:
                        known.add_name(name)
                    if phone:
                        known.add_phone(phone)
            with conn.cursor() as cursor:
                audit.record(cursor, "personal_data_read", "customer", None, reason=purpose,
                             detail={"fields": list(BULK_READ_FIELDS), "subjects": decrypted, "skipped": skipped,
                                     "job": BULK_READ_JOB})
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return known

    def add_name(self, name: str) -> None:
        words = normalise_name(name).split()
        if len(words) >= _MIN_WORDS:
            self.names.add(self._name_index(" ".join(words)))
            if len(words) > _MIN_WORDS:  # "Ana de Souza" is also written "Ana Souza"
                self.names.add(self._name_index(f"{words[0]} {words[-1]}"))

    def add_phone(self, phone: str) -> None:
        # "767.512.1904x102" is also written without its extension.
        for form in {phone, _PHONE_EXTENSION.sub("", phone)}:
            try:
                self.phones.add(self.tokeniser.blind_index(form, domain="phone"))
            except InvalidInput:
                pass

    def _name_index(self, normalised: str) -> bytes:
        return self.tokeniser.blind_index(normalised, domain=NAME_DOMAIN)

    def scrub(self, text: str) -> str:
        """``text`` with known customers' names and phone numbers replaced by labels."""
        if self.phones and any(ch.isdigit() for ch in text):
            text = self._scrub_phones(text)
        if self.names:
            text = self._scrub_names(text)
        return text

    def _scrub_phones(self, text: str) -> str:
        def replace(match: re.Match) -> str:
            digits = "".join(ch for ch in match.group() if ch.isdigit())
            if 6 <= len(digits) <= 15 and self.tokeniser.blind_index(digits, domain="phone") in self.phones:
                return PHONE_LABEL
            return match.group()

        return _DIGIT_RUN.sub(replace, text)

    def _scrub_names(self, text: str) -> str:
        words = list(_WORD.finditer(text))
        spans = []
        i = 0
        while i < len(words):
            hit = 0
            for size in range(min(_MAX_WORDS, len(words) - i), _MIN_WORDS - 1, -1):
                window = words[i : i + size]
                if any(_WORD_GAP.fullmatch(text[a.end() : b.start()]) is None for a, b in zip(window, window[1:], strict=False)):
                    continue
                candidate = normalise_name(" ".join(w.group() for w in window))
                if self._name_index(candidate) in self.names:
                    hit = size
                    break
            if hit:
                spans.append((words[i].start(), words[i + hit - 1].end()))
                i += hit
            else:
                i += 1
        if not spans:
            return text
        out, position = [], 0
        for start, end in spans:
            out += [text[position:start], NAME_LABEL]
            position = end
        out.append(text[position:])
        return "".join(out)


def scrub_text(text: str, known: KnownValues | None) -> str:
    """Free text with PII patterns and known customers' names and phones replaced by labels."""
    text = scrub(text)
    return known.scrub(text) if known is not None else text


def parse_datetime(value: str) -> dt.datetime:
    """An aware ISO 8601 timestamp as a UTC datetime; raises ValueError for naive or malformed input."""
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("naive timestamp")
    return parsed.astimezone(dt.UTC)


class Safeguard:
    """Turns a validated record into its stored form (tokens, dates, scrubbed text) or a Reject."""

    def __init__(self, tokeniser: Tokeniser, known: KnownValues | None = None) -> None:
        self.tokeniser = tokeniser
        self.known = known
        self._token_functions: dict[str, Callable[[str], str]] = {}

    def _token(self, domain: str) -> Callable[[str], str]:
        function = self._token_functions.get(domain)
        if function is None:
            function = self._token_functions[domain] = self.tokeniser.token_function(domain)
        return function

    def make_safe(self, record_type: RecordType, record: dict[str, Any]) -> dict[str, Any] | Reject:
        """The stored form of ``record`` (a new dict), or a Reject (``invalid_value``, ``pii_in_field``)."""
        out = _copy(record)
        for path, store in record_type.stores.items():
            parent = out
            for part in path[:-1]:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if not isinstance(parent, dict) or path[-1] not in parent:
                continue
            value = parent[path[-1]]
            if store == "drop":
                del parent[path[-1]]
                continue
            if value is None:
                continue
            try:
                if store == "datetime":
                    parent[path[-1]] = parse_datetime(value)
                elif store == "scrub":
                    parent[path[-1]] = scrub_text(value, self.known)
                else:
                    parent[path[-1]] = self._token(store[6:])(value)
            except (ValueError, InvalidInput):
                return Reject("invalid_value", f"{'/'.join(path)}:{store}")
        leak = _first_pii(out, record_type.stores, ())
        if leak is not None:
            return Reject("pii_in_field", leak)
        return out


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _first_pii(value: Any, stores: dict[tuple[str, ...], str], path: tuple[str, ...]) -> str | None:
    """Path of the first string (other than tokens) in which the PII finder finds something."""
    if isinstance(value, dict):
        for key, item in value.items():
            found = _first_pii(item, stores, (*path, key))
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_pii(item, stores, (*path, str(index)))
            if found is not None:
                return found
        return None
    if isinstance(value, str) and not stores.get(path, "").startswith("token:") and _MAY_HOLD_PII.search(value):
        kinds = [kind for kind, _match in find_pii(value)]
        if kinds:
            return f"{'/'.join(path)}:{kinds[0]}"
    return None
