"""Reconciliation of the fact table against the OLTP ledger, day by day."""

from __future__ import annotations

from datetime import date
from typing import Any

from paydata.sql import load_sql


class ReconciliationError(RuntimeError):
    """Counts or amount sums differ between OLTP and the fact table; ``differences`` lists them per day."""

    def __init__(self, differences: list[dict[str, Any]]):
        self.differences = differences
        days = sorted({d["day"] for d in differences})
        shown = "; ".join(
            f"{d['day']} {d['currency_code']}: oltp {d['oltp_rows']} rows / {d['oltp_amount']}, "
            f"warehouse {d['warehouse_rows']} rows / {d['warehouse_amount']}"
            for d in differences[:50]
        )
        super().__init__(f"reconciliation failed on {len(days)} day(s) {', '.join(days)}: {shown}")


def _daily(conn, statement: str, params: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int]]:
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql(statement), params)
            return {
                (day.isoformat(), currency.strip()): (int(rows), int(amount))
                for day, currency, rows, amount in cursor.fetchall()
            }
    finally:
        conn.rollback()


def reconcile(
    warehouse_conn,
    oltp_conn,
    first_day: date | str,
    last_day: date | str,
    max_balance_transaction_id: int,
) -> dict[str, Any]:
    """Compare row counts and amount sums per UTC day and currency between OLTP ``balance_transaction``
    and ``marts.fct_balance_transaction`` over ``[first_day, last_day]``, ledger ids up to
    ``max_balance_transaction_id`` (the highest id the build loaded: later rows may not be captured yet).

    Read-only on both connections. Returns ``{"days": n, "groups": n}``; raises
    :class:`ReconciliationError` listing every differing day.
    """
    params = {
        "first_day": str(first_day),
        "last_day": str(last_day),
        "max_balance_transaction_id": int(max_balance_transaction_id),
    }
    oltp = _daily(oltp_conn, "oltp/queries/reconcile/ledger_daily.sql", params)
    warehouse = _daily(warehouse_conn, "warehouse/queries/reconcile/fact_daily.sql", params)
    differences = []
    for key in sorted(set(oltp) | set(warehouse)):
        source_rows, source_amount = oltp.get(key, (0, 0))
        loaded_rows, loaded_amount = warehouse.get(key, (0, 0))
        if (source_rows, source_amount) != (loaded_rows, loaded_amount):
            differences.append({
                "day": key[0], "currency_code": key[1],
                "oltp_rows": source_rows, "oltp_amount": source_amount,
                "warehouse_rows": loaded_rows, "warehouse_amount": loaded_amount,
            })
    if differences:
        raise ReconciliationError(differences)
    return {"days": len({day for day, _ in oltp}), "groups": len(oltp)}
