"""Key custody: data keys in a key store outside the data path, and the erasure window.

* :mod:`paydata.keystore.store` - :class:`KeyStore`, the wrapped data keys of customers and
  merchants in the ``keystore`` database (no capture or analyst role can connect to it).
* :mod:`paydata.keystore.kms` - what wraps them: the local KEK ring (:class:`LocalKek`) or a
  KMS (:class:`VaultTransit`), chosen by ``PAYDATA_KMS``.
* :mod:`paydata.keystore.legacy` - moves keys out of the source databases where they used to live.
* :mod:`paydata.keystore.window` - bounds the life of destroyed keys' bytes (table rewrite, WAL)
  and proves an erasure's window closed.

See ``docs/security.md``, *Key custody* and *Erasure window*.
"""

from paydata.keystore.kms import KeyWrapper, LocalKek, VaultTransit, wrapper_from_env
from paydata.keystore.store import (
    OWNERS,
    KeyStore,
    KeyStoreError,
    RewrapResult,
    default_keystore,
    set_default_keystore,
)

__all__ = [
    "OWNERS",
    "KeyStore",
    "KeyStoreError",
    "KeyWrapper",
    "LocalKek",
    "RewrapResult",
    "VaultTransit",
    "default_keystore",
    "set_default_keystore",
    "wrapper_from_env",
]
