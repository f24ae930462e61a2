"""Warehouse build plan, errors and CLI: no services needed."""

from __future__ import annotations

import re

import pytest

from paydata.sql import load_sql
from paydata.warehouse import BuildInputError, QualityCheckError, ReconciliationError
from paydata.warehouse.__main__ import main
from paydata.warehouse.build import (
    FACT_LOAD_STEP,
    FULL_REBUILD_FACT_LOAD,
    LOAD_STEPS,
    STEPS,
    _window_params,
)

PARAMETER = re.compile(r"%\((\w+)\)s")


def test_every_build_step_loads_and_binds_only_window_parameters():
    params = _window_params({"reference": (10, 1), "oltp": (20, -1)}, {"reference": (30, 0), "oltp": (40, 2)})
    assert params["reference_from_lsn"] == 10 and params["oltp_from_idx"] == -1
    assert params["oltp_to_lsn"] == 40 and params["reference_to_idx"] == 0
    for _, statement in STEPS + LOAD_STEPS:
        text = load_sql(statement)
        assert set(PARAMETER.findall(text)) <= set(params), statement
        assert "{" not in text, f"{statement} must not be a format template"


def _insert_head(text: str) -> str:
    body = text[text.index("WITH"):]
    return body.partition("ON CONFLICT")[0].strip()


def test_full_rebuild_fact_insert_is_the_upsert_without_conflict_handling():
    upsert = load_sql(dict(LOAD_STEPS)[FACT_LOAD_STEP])
    insert = load_sql(FULL_REBUILD_FACT_LOAD)
    assert "ON CONFLICT" in upsert and "ON CONFLICT" not in insert
    assert _insert_head(insert) == _insert_head(upsert)
    assert not PARAMETER.findall(insert)


def test_index_drop_binds_only_the_index_identifier_and_keeps_constraint_indexes():
    drop = load_sql("warehouse/queries/build/fct_secondary_index_drop.sql")
    assert re.findall(r"\{(\w*)\}", drop) == ["index"]
    assert "conindid" in load_sql("warehouse/queries/build/fct_secondary_indexes_select.sql")


def test_staging_window_reads_are_bounded_on_both_sides():
    for _, statement in STEPS:
        text = load_sql(statement)
        lower_bounds = text.count("s._index_in_txn) > (")
        assert text.count("s._index_in_txn) <= (") == lower_bounds, statement


def test_build_input_error_names_rows_and_problems():
    error = BuildInputError([(402, "fee -5 is negative"), (403, "unknown currency XTS (not in dim_currency)")])
    message = str(error)
    assert "nothing loaded" in message and "2 bad staged rows" in message
    assert "balance_transaction 402: fee -5 is negative" in message
    assert "balance_transaction 403: unknown currency XTS" in message


def test_quality_error_lists_checks():
    error = QualityCheckError([("fct_balance_transaction.customer_id", "7", "customer tok not in dim_customer")])
    assert "fct_balance_transaction.customer_id [7]: customer tok" in str(error)


def test_reconciliation_error_lists_each_differing_day_once():
    differences = [
        {"day": "2026-01-04", "currency_code": "EUR", "oltp_rows": 2, "oltp_amount": 10,
         "warehouse_rows": 1, "warehouse_amount": 5},
        {"day": "2026-01-04", "currency_code": "USD", "oltp_rows": 1, "oltp_amount": 3,
         "warehouse_rows": 0, "warehouse_amount": 0},
        {"day": "2026-01-06", "currency_code": "EUR", "oltp_rows": 1, "oltp_amount": 1,
         "warehouse_rows": 1, "warehouse_amount": 2},
    ]
    message = str(ReconciliationError(differences))
    assert "2 day(s) 2026-01-04, 2026-01-06" in message
    assert "2026-01-06 EUR: oltp 1 rows / 1, warehouse 1 rows / 2" in message


def test_cli_rejects_unknown_command_without_connecting(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["drop"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'drop'" in capsys.readouterr().err
