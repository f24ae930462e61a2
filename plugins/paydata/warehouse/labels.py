"""Fraud labels of charges with a maturity window, as known at a given time.

A charge is fraud when a dispute with a fraud reason is opened on it within ``maturity`` of its
creation. Disputes come weeks after the payment (the generator's fraud disputes 5-45 days later),
so a charge younger than the window at ``as_of`` is unlabelled (``is_fraud`` NULL), not "not
fraud": training and evaluation leave it out instead of learning that recent fraud is legitimate.
The rule itself is SQL (``include/sql/warehouse/queries/labels/charge_label_derive.sql``); this module
only binds its parameters. ``LABEL_MATURITY`` and ``FRAUD_DISPUTE_REASONS`` are the one place
they are set.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from paydata.sql import load_sql

# Long enough for nearly every fraud dispute to arrive (card schemes allow more, but most fraud
# disputes come within weeks); shorter windows label sooner and miss the late ones.
LABEL_MATURITY = dt.timedelta(days=60)
# The OLTP dispute reasons that mean the cardholder did not make the payment; the others
# (product_not_received, duplicate, subscription_canceled, credit_not_processed, general) are
# commercial disputes of a genuine payment.
FRAUD_DISPUTE_REASONS = ("fraudulent",)
LABEL_TABLE = "fct_charge_label"


def label_params(as_of: dt.datetime, maturity: dt.timedelta = LABEL_MATURITY,
                 fraud_reasons: tuple[str, ...] = FRAUD_DISPUTE_REASONS) -> dict[str, Any]:
    """The bound parameters of the label SQL; ``as_of`` must be timezone-aware."""
    if as_of.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware, got {as_of!r}")
    if maturity <= dt.timedelta(0):
        raise ValueError(f"maturity must be positive, got {maturity!r}")
    if not fraud_reasons:
        raise ValueError("fraud_reasons must name at least one dispute reason")
    return {"as_of": as_of, "maturity": maturity, "fraud_reasons": list(fraud_reasons)}


def derive_charge_labels(cursor, as_of: dt.datetime, maturity: dt.timedelta = LABEL_MATURITY,
                         fraud_reasons: tuple[str, ...] = FRAUD_DISPUTE_REASONS) -> int:
    """Create the temp table ``charge_label`` (dropped at commit) with the labels as known at
    ``as_of``; return its row count. Writes nothing else: a training or evaluation job can derive
    labels at its own cut-off inside its own transaction without touching the published ones.
    """
    cursor.execute(load_sql("warehouse/queries/labels/charge_label_derive.sql"),
                   label_params(as_of, maturity, fraud_reasons))
    cursor.execute(load_sql("warehouse/queries/labels/charge_label_count.sql"))
    return int(cursor.fetchone()[0])


def default_as_of(conn) -> dt.datetime | None:
    """What the marts know: the latest OLTP commit time they were built from (None before any build)."""
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/labels/label_as_of_default.sql"))
            found = cursor.fetchone()
    finally:
        conn.rollback()
    return found[0] if found else None


def label_charges(conn, as_of: dt.datetime | None = None, maturity: dt.timedelta = LABEL_MATURITY,
                  fraud_reasons: tuple[str, ...] = FRAUD_DISPUTE_REASONS) -> dict[str, Any]:
    """Publish the labels as known at ``as_of`` into ``marts.fct_charge_label`` (one transaction).

    ``as_of`` defaults to :func:`default_as_of`, a time taken from the data, never the clock, so a
    rerun on the same marts writes the same labels. Only labels that changed are written, labels
    of charges that no longer qualify are removed, and ``marts.label_state`` records the
    parameters. Returns counts; raises ValueError for a naive ``as_of`` or a non-positive maturity,
    LookupError when the marts were never built and no ``as_of`` is given.
    """
    if as_of is None:
        as_of = default_as_of(conn)
        if as_of is None:
            raise LookupError("marts.fct_charge was never built: run the warehouse build or pass as_of")
    params = label_params(as_of, maturity, fraud_reasons)
    try:
        with conn.cursor() as cursor:
            derived = derive_charge_labels(cursor, as_of, maturity, fraud_reasons)
            cursor.execute(load_sql("warehouse/queries/labels/fct_charge_label_upsert.sql"))
            written = max(cursor.rowcount, 0)
            cursor.execute(load_sql("warehouse/queries/labels/fct_charge_label_delete.sql"))
            removed = max(cursor.rowcount, 0)
            cursor.execute(load_sql("warehouse/queries/labels/label_state_upsert.sql"),
                           dict(params, label_table=LABEL_TABLE))
            cursor.execute(load_sql("warehouse/queries/labels/charge_label_summary.sql"))
            matured, fraud = cursor.fetchone()
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return {"as_of": as_of.isoformat(), "maturity_days": maturity / dt.timedelta(days=1),
            "charges": derived, "matured": int(matured), "fraud": int(fraud),
            "written": written, "removed": removed}
