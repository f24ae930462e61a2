"""Load SQL from ``include/sql`` by name: SQL lives in .sql files, never in Python strings."""

from __future__ import annotations

from functools import cache

from paydata.settings import REPO_ROOT

SQL_ROOT = REPO_ROOT / "include" / "sql"


@cache
def load_sql(relative_path: str) -> str:
    """Return the text of ``include/sql/<relative_path>``; raise FileNotFoundError naming the path."""
    path = (SQL_ROOT / relative_path).resolve()
    if SQL_ROOT.resolve() not in path.parents:
        raise ValueError(f"{relative_path!r} points outside {SQL_ROOT}")
    if not path.is_file():
        raise FileNotFoundError(f"SQL file not found: {path}")
    return path.read_text()
