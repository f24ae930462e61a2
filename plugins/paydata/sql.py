"""Load SQL by name: SQL lives in .sql files, never in Python strings.

Product SQL is under ``include/sql`` (:func:`load_sql`); the benchmarks' own SQL under
``bench/sql`` and the tests' reference queries under ``tests/sql`` are read with a
:class:`SqlLibrary` of their folder, so nothing but product SQL ships in ``include/sql``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from paydata.settings import REPO_ROOT

SQL_ROOT = REPO_ROOT / "include" / "sql"


class SqlLibrary:
    """The ``.sql`` files under one folder, by relative path (read once, cached)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.load = cache(self._load)

    def _load(self, relative_path: str) -> str:
        """Return the text of ``<root>/<relative_path>``; raise FileNotFoundError naming the path."""
        path = (self.root / relative_path).resolve()
        if self.root not in path.parents:
            raise ValueError(f"{relative_path!r} points outside {self.root}")
        if not path.is_file():
            raise FileNotFoundError(f"SQL file not found: {path}")
        return path.read_text()


_PRODUCT = SqlLibrary(SQL_ROOT)


def load_sql(relative_path: str) -> str:
    """Return the text of ``include/sql/<relative_path>``; raise FileNotFoundError naming the path."""
    return _PRODUCT.load(relative_path)
