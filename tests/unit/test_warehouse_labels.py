"""Fraud label parameters, their SQL and the CLI: no services needed."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from paydata.sql import load_sql
from paydata.warehouse.__main__ import main
from paydata.warehouse.labels import FRAUD_DISPUTE_REASONS, LABEL_MATURITY, label_params

PARAMETER = re.compile(r"%\((\w+)\)s")
AS_OF = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def test_defaults_are_a_sixty_day_window_and_the_fraudulent_reason():
    assert LABEL_MATURITY == dt.timedelta(days=60)
    assert FRAUD_DISPUTE_REASONS == ("fraudulent",)
    assert label_params(AS_OF) == {"as_of": AS_OF, "maturity": LABEL_MATURITY, "fraud_reasons": ["fraudulent"]}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"as_of": dt.datetime(2026, 3, 2)}, "timezone-aware"),
    ({"as_of": AS_OF, "maturity": dt.timedelta(0)}, "maturity must be positive"),
    ({"as_of": AS_OF, "fraud_reasons": ()}, "at least one dispute reason"),
])
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        label_params(**kwargs)


def test_label_sql_binds_only_the_label_parameters():
    bound = set(label_params(AS_OF)) | {"label_table"}
    for name in ("charge_label_derive", "fct_charge_label_upsert", "fct_charge_label_delete", "label_state_upsert"):
        text = load_sql(f"warehouse/queries/labels/{name}.sql")
        assert set(PARAMETER.findall(text)) <= bound, name
    derive = load_sql("warehouse/queries/labels/charge_label_derive.sql")
    assert set(PARAMETER.findall(derive)) == {"as_of", "maturity", "fraud_reasons"}
    assert "now()" not in derive and "current_" not in derive  # as_of is bound, never the clock


def test_cli_refuses_an_as_of_without_time_zone_before_connecting(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["labels", "--as-of", "2026-03-02T00:00:00"])
    assert exit_info.value.code == 2
    assert "has no time zone" in capsys.readouterr().err
