"""The full rebuild empties the same marts whether it runs as the owner or through the owner's function."""

from __future__ import annotations

import re

from paydata.sql import load_sql

TRUNCATE = re.compile(r"TRUNCATE\s+([a-z_.,\s]+)")


def truncated(text: str) -> set[str]:
    lines = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    found = TRUNCATE.search(lines)
    assert found, "no TRUNCATE statement"
    return {name.strip() for name in found.group(1).split(",") if name.strip()}


def test_the_rebuild_function_truncates_exactly_the_marts_the_owner_path_truncates():
    owner_path = truncated(load_sql("warehouse/queries/build/truncate_marts.sql"))
    function = truncated(load_sql("warehouse/migrations/V002__loader_runtime.sql").split("CREATE FUNCTION security.begin_full_rebuild")[1]
                         .split("DELETE FROM")[0])
    assert owner_path == function
    assert {"marts.fct_balance_transaction", "marts.fct_charge", "marts.build_state"} <= owner_path
