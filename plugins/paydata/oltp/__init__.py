"""The OLTP application layer: what the payment API does to the OLTP database.

* :mod:`paydata.oltp.reference_sync` - keep ``currency_ref`` / ``merchant_ref`` in step with the
  reference DB (:func:`sync_reference`).
* :mod:`paydata.oltp.app` - single-row operations (customers, cards, payments, refunds,
  disputes), each one short transaction, with field encryption done here.
* :mod:`paydata.oltp.writers` - concurrent writers with a realistic mix (:func:`run_writers`).
* :mod:`paydata.oltp.erasure` - right to erasure by crypto-shredding (:func:`erase_customer`).
* :mod:`paydata.oltp.keys` - KEK rewrap and per-customer data-key rotation.
* :mod:`paydata.oltp.audit` - the insert-only audit log of erasures and key rotations.

See ``docs/operations.md``. Errors are :class:`paydata.oltp.errors.OltpError` subclasses.
"""

from paydata.oltp.errors import (
    ConcurrencyConflict,
    DatabaseError,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    OltpError,
    RuleViolation,
)

__all__ = [
    "ConcurrencyConflict",
    "DatabaseError",
    "IllegalTransition",
    "InvalidRequest",
    "NotFound",
    "OltpError",
    "RuleViolation",
]
