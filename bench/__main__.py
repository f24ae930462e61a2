"""``python -m bench`` (``make bench``): list the benchmarks; ``python -m bench <name> [args]`` runs one.

Each benchmark needs the local stack (``python -m paydata.stack up``) and works in throwaway
databases it drops afterwards. Results and how they were measured: ``docs/benchmarks.md``.

    make bench                                         # the list
    make bench BENCH=cdc_sink_bench ARGS="--changes 200000"
    .venv/bin/python -m bench cdc_sink_bench --help
"""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> dict[str, str]:
    """Benchmark module name -> first line of its docstring."""
    found = {}
    for path in sorted(HERE.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        found[path.stem] = doc.strip().splitlines()[0] if doc.strip() else ""
    return found


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    available = benchmarks()
    if not argv or argv[0] in ("-h", "--help", "list"):
        print(__doc__)
        print("Benchmarks:")
        width = max(map(len, available))
        for name, summary in available.items():
            print(f"  {name:<{width}}  {summary}")
        return 0
    name, args = argv[0], argv[1:]
    if name not in available:
        print(f"unknown benchmark {name!r}; choose from {', '.join(available)}", file=sys.stderr)
        return 2
    sys.argv = [str(HERE / f"{name}.py"), *args]
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))
    try:
        runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
