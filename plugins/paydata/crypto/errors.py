"""Exceptions raised by :mod:`paydata.crypto`.

Every failure is a :class:`CryptoError`, so callers that only want "this value could not be
protected or recovered" catch one class. Messages name what to fix and never contain key material
or plaintext.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every error raised by :mod:`paydata.crypto`."""

    def __str__(self) -> str:
        # KeyError would otherwise print the message wrapped in quotes.
        return str(self.args[0]) if self.args else self.__class__.__name__


class KeyConfigError(CryptoError, KeyError):
    """A key ring could not be loaded: variable unset, file missing, or a malformed line."""


class UnknownKeyError(CryptoError, KeyError):
    """A ciphertext, wrapped key or token names a key id that is not available."""


class KeyDestroyed(UnknownKeyError):
    """The owner's data key was deleted (crypto-shredded); their ciphertexts are unrecoverable."""


class IntegrityError(CryptoError):
    """A ciphertext failed authentication: tampered, truncated, or bound to another row/column."""


class MalformedCiphertext(IntegrityError, ValueError):
    """The bytes are not a ciphertext of a format this module writes."""


class WrongKeyError(CryptoError):
    """A ciphertext was written under another data key than the one offered to decrypt it."""


class InvalidInput(CryptoError, ValueError):
    """An argument is of the wrong type or shape (empty value, bad domain, bad key id...)."""


class InvalidPAN(InvalidInput):
    """A card number is not 12-19 digits or fails the Luhn check."""
