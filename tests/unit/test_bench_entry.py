"""`make bench` lists the benchmarks and runs one by name (without running any here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_make_bench_lists_every_benchmark():
    result = subprocess.run([sys.executable, "-m", "bench"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for path in (REPO / "bench").glob("*.py"):
        if not path.stem.startswith("_"):
            assert path.stem in result.stdout


def test_a_benchmark_runs_by_name_and_an_unknown_one_is_refused():
    ok = subprocess.run([sys.executable, "-m", "bench", "seed_bench", "--help"], cwd=REPO, capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and "usage" in ok.stdout.lower(), ok.stderr
    bad = subprocess.run([sys.executable, "-m", "bench", "nope"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown benchmark" in bad.stderr
