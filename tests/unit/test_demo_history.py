"""The demo's fraud history: one generator batch per day, like the demo's own day of traffic."""

from __future__ import annotations

import datetime as dt


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_history_is_one_batch_per_day_ending_70_days_before_the_month():
    from paydata.demo import HISTORY_DAYS, HISTORY_PAYMENTS, history_commands

    commands = history_commands(dt.datetime(2026, 12, 7, 14, 50, tzinfo=dt.UTC))
    fx, *days = commands
    assert fx[fx.index("-m") + 2] == "seed-reference" and _option(fx, "--merchants") == "0"
    assert _option(fx, "--fx-start") == "2026-09-12" and int(_option(fx, "--fx-days")) >= HISTORY_DAYS
    assert len(days) == HISTORY_DAYS
    starts = [dt.date.fromisoformat(_option(c, "--start")) for c in days]
    assert starts == [dt.date(2026, 9, 12) + dt.timedelta(days=i) for i in range(HISTORY_DAYS)]
    assert starts[-1] + dt.timedelta(days=1) == dt.date(2026, 12, 1) - dt.timedelta(days=70)
    assert {_option(c, "--days") for c in days} == {"1"}
    assert {_option(c, "--seed") for c in days} == {"11"}   # one process, the same merchant mix every day
    assert sum(int(_option(c, "--payments")) for c in days) == HISTORY_PAYMENTS
    # the same month gives the same commands: loaded batches are recognised and skipped
    assert history_commands(dt.datetime(2026, 12, 28, tzinfo=dt.UTC)) == commands
