"""Find and scrub personal data in free text (customer feedback, log lines) before it is stored.

Detected kinds, each replaced by :func:`scrub` with a label:

- ``email`` -> ``[email]``
- ``pan`` -> ``[pan]``: 13-19 digits, single spaces or hyphens allowed between digits, passing the
  Luhn check, starting with 2-6 (the payment-card industry identifiers: Visa, Mastercard, Amex,
  Discover, JCB, UnionPay, Maestro), not all one digit, and not glued to an identifier such as
  ``ORD-...``. Without these conditions one in ten long order ids, timestamps or references would
  be flagged.
- ``phone`` -> ``[phone]``: ``+`` followed by 7-15 digits (E.164, separators allowed), and the North
  American forms ``(555) 123-4567`` / ``555-123-4567``.
- ``ipv4`` / ``ipv6`` -> ``[ip]``: addresses that :mod:`ipaddress` accepts.

This is a heuristic safety net, not a guarantee: national phone formats without ``+`` and
obfuscated values ("four one one one ...") are not found.
"""

from __future__ import annotations

import ipaddress
import re

from stdnum import luhn

from paydata.crypto.errors import InvalidInput

LABELS = {"email": "[email]", "pan": "[pan]", "phone": "[phone]", "ipv4": "[ip]", "ipv6": "[ip]"}

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])"
)
_DIGIT_RUN = re.compile(r"(?<!\d)\d+(?:[ -]\d+)*(?!\d)")
_PHONE_E164 = re.compile(r"(?<![\w+])\+\d(?:[ .()-]{0,2}\d){6,14}(?!\d)")
_PHONE_NANP = re.compile(r"(?<![\w(-])(?:\(\d{3}\)\s?|\d{3}[-.])\d{3}[-.]\d{4}(?![\w-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:])"
)

_PAN_MIN_DIGITS = 13
_PAN_MAX_DIGITS = 19
_PAN_FIRST_DIGITS = frozenset("23456")


def _is_pan(digits: str) -> bool:
    return (
        _PAN_MIN_DIGITS <= len(digits) <= _PAN_MAX_DIGITS
        and digits[0] in _PAN_FIRST_DIGITS
        and len(set(digits)) > 1
        and luhn.is_valid(digits)
    )


def _glued_to_identifier(text: str, start: int, end: int) -> bool:
    # "ORD-4111..." or "...1111-A7": the digits are part of a reference, not a card number.
    before = text[start - 2 : start] if start >= 2 else ""
    after = text[end : end + 2]
    if start >= 1 and (text[start - 1].isalpha() or text[start - 1] == "_"):
        return True
    if end < len(text) and (text[end].isalpha() or text[end] == "_"):
        return True
    return (len(before) == 2 and before[1] in "-/" and before[0].isalnum()) or (
        len(after) == 2 and after[0] in "-/" and after[1].isalnum()
    )


def _pan_spans(text: str) -> list[tuple[str, int, int]]:
    spans = []
    for run in _DIGIT_RUN.finditer(text):
        groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", run.group())]
        offset = run.start()
        i = 0
        while i < len(groups):
            found = None
            digits = ""
            for j in range(i, len(groups)):
                digits += run.group()[groups[j][0] : groups[j][1]]
                if len(digits) > _PAN_MAX_DIGITS:
                    break
                if _is_pan(digits):
                    found = j
            if found is None:
                i += 1
                continue
            start, end = offset + groups[i][0], offset + groups[found][1]
            if not _glued_to_identifier(text, start, end):
                spans.append(("pan", start, end))
            i = found + 1
    return spans


def _valid_ip(candidate: str, kind: str) -> bool:
    if kind == "ipv6" and not any(ch.isalnum() for ch in candidate):
        return False
    try:
        (ipaddress.IPv4Address if kind == "ipv4" else ipaddress.IPv6Address)(candidate)
    except ValueError:
        return False
    return True


def _spans(text: str) -> list[tuple[str, int, int]]:
    if not isinstance(text, str):
        raise InvalidInput(f"text to scan must be a string, got {type(text).__name__}")
    candidates = [("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    candidates += _pan_spans(text)
    candidates += [("phone", m.start(), m.end()) for m in _PHONE_E164.finditer(text)]
    candidates += [("phone", m.start(), m.end()) for m in _PHONE_NANP.finditer(text)]
    for kind, pattern in (("ipv4", _IPV4), ("ipv6", _IPV6)):
        candidates += [
            (kind, m.start(), m.end()) for m in pattern.finditer(text) if _valid_ip(m.group(), kind)
        ]
    # Earliest, then longest, wins: an email containing digits is one email, not a PAN too.
    candidates.sort(key=lambda span: (span[1], span[1] - span[2]))
    accepted: list[tuple[str, int, int]] = []
    last_end = -1
    for kind, start, end in candidates:
        if start >= last_end:
            accepted.append((kind, start, end))
            last_end = end
    return accepted


def find_pii(text: str) -> list[tuple[str, str]]:
    """``(kind, matched text)`` for each piece of personal data in ``text``, in order of appearance.

    Kinds are ``email``, ``pan``, ``phone``, ``ipv4`` and ``ipv6``; matches never overlap.
    Raises :class:`InvalidInput` if ``text`` is not a string.
    """
    return [(kind, text[start:end]) for kind, start, end in _spans(text)]


def scrub(text: str) -> str:
    """``text`` with every match of :func:`find_pii` replaced by its label (``[email]``, ``[pan]``, ...)."""
    parts = []
    position = 0
    for kind, start, end in _spans(text):
        parts.append(text[position:start])
        parts.append(LABELS[kind])
        position = end
    parts.append(text[position:])
    return "".join(parts)
