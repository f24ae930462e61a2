"""The online horizon of ``fraud_score``: which charges are young enough for the online store."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from ml.features.definitions import load_definitions
from ml.scoring.warehouse import online_horizon, score_new_charges

DEFINITIONS = load_definitions()


def test_the_horizon_is_the_shortest_ttl_of_the_definitions():
    ttls = {aggregate.ttl for aggregate in DEFINITIONS.aggregates}
    assert online_horizon(DEFINITIONS) == min(ttls) == dt.timedelta(hours=1)
    assert len(ttls) > 1   # the shortest, not any one of them


def test_the_horizon_follows_the_definitions_data():
    longer = tuple(dataclasses.replace(a, ttl=max(a.ttl, dt.timedelta(hours=6))) for a in DEFINITIONS.aggregates)
    assert online_horizon(dataclasses.replace(DEFINITIONS, aggregates=longer)) == dt.timedelta(hours=6)


def test_definitions_without_aggregates_have_no_horizon():
    with pytest.raises(ValueError, match="no aggregates"):
        online_horizon(dataclasses.replace(DEFINITIONS, aggregates=()))


@pytest.mark.parametrize(("arguments", "message"), [
    ({"now": dt.datetime(2026, 1, 1)}, "timezone-aware"),
    ({"max_age": dt.timedelta(0)}, "must be positive"),
    ({"max_age": dt.timedelta(hours=-1)}, "must be positive"),
])
def test_bad_arguments_are_refused_before_any_work(arguments, message):
    # conn and client are never touched: the arguments are checked first
    with pytest.raises(ValueError, match=message):
        score_new_charges(None, None, **arguments)
