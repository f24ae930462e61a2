"""Failpoints: a named step kills the process only when PAYDATA_FAILPOINT names it, at the n-th time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from paydata.cdc import failpoints

SCRIPT = """
import sys
from paydata.cdc import failpoints
for number in range(1, 4):
    failpoints.reach("cdc.confirmed")
    print(number, flush=True)
failpoints.reach("cdc.batch_read")
print("done", flush=True)
"""


def run(value: str | None) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": ":".join(sys.path)}
    if value is not None:
        env["PAYDATA_FAILPOINT"] = value
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("value", "printed", "killed"),
    [(None, "1 2 3 done", False), ("", "1 2 3 done", False), ("cdc.confirmed", "", True),
     ("cdc.confirmed@3", "1 2", True), ("cdc.batch_read", "1 2 3", True), ("cdc.snapshot_chunk", "1 2 3 done", False)],
)
def test_the_named_step_kills_the_process_with_sigkill_at_its_count(value, printed, killed):
    result = run(value)
    assert result.stdout.split() == printed.split()
    assert result.returncode == (-9 if killed else 0), result.stderr


@pytest.mark.parametrize("value", ["cdc.confirmd", "cdc.confirmed@x", "cdc.confirmed@0"])
def test_a_misspelt_or_malformed_failpoint_is_an_error_not_a_silent_pass(value, monkeypatch):
    monkeypatch.setenv(failpoints.ENV_VAR, value)
    failpoints.reset()
    try:
        with pytest.raises(ValueError, match="PAYDATA_FAILPOINT"):
            failpoints.reach("cdc.confirmed")
    finally:
        monkeypatch.delenv(failpoints.ENV_VAR)
        failpoints.reset()


def test_every_failpoint_reached_in_the_code_is_declared():
    import re
    from pathlib import Path

    package = Path(failpoints.__file__).resolve().parents[1]
    reached = set()
    for path in package.rglob("*.py"):
        reached |= set(re.findall(r'failpoints\.reach\(f?"([^"{]+)', path.read_text()))
    declared_prefixes = {name.rsplit(".", 1)[0] + "." for name in failpoints.FAILPOINTS if name.count(".") > 1}
    for name in reached:
        assert name in failpoints.FAILPOINTS or name in declared_prefixes, name
