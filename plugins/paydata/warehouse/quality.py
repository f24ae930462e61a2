"""Quality checks of the marts: keys, foreign keys (to real or inferred members), amount signs,
charge status rules."""

from __future__ import annotations

from paydata.sql import load_sql

MAX_REPORTED_ROWS = 50


class QualityCheckError(RuntimeError):
    """Loaded rows break a mart rule; ``violations`` lists ``(check_name, row_key, detail)``."""

    def __init__(self, violations: list[tuple[str, str, str]]):
        self.violations = violations
        shown = "; ".join(f"{check} [{key}]: {detail}" for check, key, detail in violations)
        super().__init__(f"warehouse quality checks failed ({len(violations)} shown): {shown}")


CHECKS = (
    "warehouse/queries/quality/fact_violations.sql",
    "warehouse/queries/quality/charge_violations.sql",
    "warehouse/queries/quality/dimension_violations.sql",
)


def collect_violations(cursor, limit: int = MAX_REPORTED_ROWS) -> list[tuple[str, str, str]]:
    """Violations among the facts in the temp tables ``affected_balance_transaction`` and
    ``affected_charge``, and all dimensions."""
    found: list[tuple[str, str, str]] = []
    for statement in CHECKS:
        cursor.execute(load_sql(statement), {"limit": limit})
        found.extend((str(a), str(b), str(c)) for a, b, c in cursor.fetchall())
    return found


def check_quality(conn, limit: int = MAX_REPORTED_ROWS) -> dict[str, int]:
    """Run every check over the whole marts (read-only); return ``{"facts_checked": n, "charges_checked": m}``.

    Raises :class:`QualityCheckError` listing up to ``limit`` violations per check family.
    """
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/quality/scope_all_facts.sql"))
            cursor.execute(load_sql("warehouse/queries/quality/scope_count.sql"))
            facts, charges = cursor.fetchone()
            found = collect_violations(cursor, limit)
    finally:
        conn.rollback()
    if found:
        raise QualityCheckError(found)
    return {"facts_checked": int(facts), "charges_checked": int(charges)}
