"""Field-level encryption, envelope keys, crypto-shredding, keyed tokens and PII scrubbing.

Keys reach the process only through files named by ``PAYDATA_KEK_FILE`` and
``PAYDATA_TOKEN_KEY_FILE`` (or the inline ``PAYDATA_KEK`` / ``PAYDATA_TOKEN_KEY``); see
:mod:`paydata.crypto.keys` and ``docs/security.md``.

Typical use::

    owner_key = new_owner_key()                          # per customer; store data_key_row(...)
    cipher = owner_key.cipher()
    blob = cipher.encrypt(email, table="customer", column="email", pk=customer_id)
    email_index = blind_index(email, domain="email")    # for WHERE email_bidx = %s
    resolver = DataKeyResolver(lookup_wrapped_key)       # key_id -> wrapped bytes or None
    resolver.decrypt(blob, table="customer", column="email", pk=customer_id)
"""

from paydata.crypto.datakeys import DataKey, DataKeyResolver, data_key_row, new_data_key_id, new_owner_key
from paydata.crypto.envelope import (
    Envelope,
    default_envelope,
    new_data_key,
    rewrap_data_key,
    unwrap_data_key,
    wrapped_kek_id,
)
from paydata.crypto.errors import (
    CryptoError,
    IntegrityError,
    InvalidInput,
    InvalidPAN,
    KeyConfigError,
    KeyDestroyed,
    MalformedCiphertext,
    UnknownKeyError,
    WrongKeyError,
)
from paydata.crypto.fields import FieldCipher, key_id_of, reencrypt
from paydata.crypto.keys import (
    KEK_FILE_ENV,
    KEK_INLINE_ENV,
    TOKEN_KEY_FILE_ENV,
    TOKEN_KEY_INLINE_ENV,
    KeyRing,
    append_key,
    kek_ring,
    new_keyfile,
    reload_keys,
    token_ring,
)
from paydata.crypto.tokens import (
    Tokeniser,
    blind_index,
    card_fingerprint,
    default_tokeniser,
    normalise,
    token_key_id,
    tokenise,
    validate_pan,
)

__all__ = [
    "KEK_FILE_ENV",
    "KEK_INLINE_ENV",
    "TOKEN_KEY_FILE_ENV",
    "TOKEN_KEY_INLINE_ENV",
    "CryptoError",
    "DataKey",
    "DataKeyResolver",
    "Envelope",
    "FieldCipher",
    "IntegrityError",
    "InvalidInput",
    "InvalidPAN",
    "KeyConfigError",
    "KeyDestroyed",
    "KeyRing",
    "MalformedCiphertext",
    "Tokeniser",
    "UnknownKeyError",
    "WrongKeyError",
    "append_key",
    "blind_index",
    "card_fingerprint",
    "data_key_row",
    "default_envelope",
    "default_tokeniser",
    "kek_ring",
    "key_id_of",
    "new_data_key",
    "new_data_key_id",
    "new_keyfile",
    "new_owner_key",
    "normalise",
    "reencrypt",
    "reload_keys",
    "rewrap_data_key",
    "token_key_id",
    "token_ring",
    "tokenise",
    "unwrap_data_key",
    "validate_pan",
    "wrapped_kek_id",
]
