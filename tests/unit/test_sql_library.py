"""One way to read SQL: product SQL from include/sql, bench and test SQL from their own folders."""

from __future__ import annotations

import re

import pytest

from paydata.settings import REPO_ROOT
from paydata.sql import SQL_ROOT, SqlLibrary, load_sql

PYTHON_FOLDERS = ("plugins", "ml", "dags", "bench", "tests")


def test_a_name_outside_the_library_or_missing_is_refused(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "one.sql").write_text("SELECT 1;\n")
    (tmp_path / "secret.sql").write_text("SELECT 'outside';\n")
    library = SqlLibrary(tmp_path / "lib")
    assert library.load("one.sql") == "SELECT 1;\n"
    with pytest.raises(ValueError, match="points outside"):
        library.load("../secret.sql")
    with pytest.raises(FileNotFoundError, match="two.sql"):
        library.load("two.sql")
    with pytest.raises(ValueError, match="points outside"):
        load_sql("../../README.md")


def test_include_sql_holds_product_sql_only():
    """Benchmark and test SQL lives beside its code (bench/sql, tests/sql), not among product SQL."""
    folders = {path.relative_to(SQL_ROOT).parts[0] for path in SQL_ROOT.rglob("*.sql")}
    assert not {folder for folder in folders if "bench" in folder or "test" in folder}
    assert not [path for path in SQL_ROOT.rglob("*.sql") if "testing" in path.parts]


def test_no_module_reads_sql_files_itself():
    """Every .sql file is read through paydata.sql (one loader, one root per library)."""
    reading = re.compile(r"\.sql\"\)?\s*\)?\.read_text\(|\.sql['\"]\)\.read_text\(")
    offenders = [str(path.relative_to(REPO_ROOT)) for folder in PYTHON_FOLDERS
                 for path in (REPO_ROOT / folder).rglob("*.py")
                 if reading.search(path.read_text()) and path.name != "test_sql_library.py"]
    assert offenders == []


SQL_TREES = frozenset({"reference", "oltp", "keystore", "warehouse", "sources", "cluster"})


def test_sql_is_a_tree_per_database_of_migrations_and_queries():
    """<tree>/migrations/V<NNN>__<name>.sql for the managed databases, <tree>/queries/<area>/... for the rest."""
    from paydata.migrations import MANAGED_DATABASES, MIGRATION_FILENAME

    misplaced = []
    for path in SQL_ROOT.rglob("*.sql"):
        parts = path.relative_to(SQL_ROOT).parts
        migration = (len(parts) == 3 and parts[0] in MANAGED_DATABASES and parts[1] == "migrations"
                     and MIGRATION_FILENAME.match(parts[2]))
        query = len(parts) >= 4 and parts[0] in SQL_TREES and parts[1] == "queries"
        if not (migration or query):
            misplaced.append("/".join(parts))
    assert misplaced == []
