"""Migration discovery, ordering and validation of history, without a database."""

from __future__ import annotations

import re

import pytest

from paydata import migrations
from paydata.migrations import MigrationError, discover_migrations, file_checksum


def write(root, database, filename, text="SELECT 1;\n"):
    folder = migrations.migrations_dir(database, root)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(text)
    return folder / filename


def test_discovery_orders_by_numeric_version_and_ignores_non_sql_files(tmp_path):
    write(tmp_path, "db", "V010__tenth.sql")
    write(tmp_path, "db", "V002__second.sql")
    write(tmp_path, "db", "V1000__thousandth.sql")
    write(tmp_path, "db", "V001__first_one.sql")
    write(tmp_path, "db", "README.md", "notes")
    write(tmp_path, "db", ".V003__editor_swap.sql")

    found = discover_migrations("db", sql_root=tmp_path)

    assert [(m.version, m.name, m.label) for m in found] == [
        (1, "first_one", "001"),
        (2, "second", "002"),
        (10, "tenth", "010"),
        (1000, "thousandth", "1000"),
    ]


@pytest.mark.parametrize(
    "bad_name",
    [
        "V1__too_short.sql",
        "v001__lower_v.sql",
        "V001_single_underscore.sql",
        "V001__Upper.sql",
        "V001__has-dash.sql",
        "V001__.sql",
        "001__no_prefix.sql",
        "V001__trailing_.sql",
    ],
)
def test_bad_file_name_is_an_error_naming_the_file(tmp_path, bad_name):
    write(tmp_path, "db", "V001__fine.sql")
    write(tmp_path, "db", bad_name)

    with pytest.raises(MigrationError, match=re.escape(bad_name)):
        discover_migrations("db", sql_root=tmp_path)


def test_duplicate_version_is_an_error_naming_both_files(tmp_path):
    write(tmp_path, "db", "V001__first.sql")
    write(tmp_path, "db", "V0001__again.sql")

    with pytest.raises(MigrationError, match=r"V0001__again\.sql.*V001__first\.sql|V001__first\.sql.*V0001__again\.sql"):
        discover_migrations("db", sql_root=tmp_path)


def test_version_zero_is_rejected(tmp_path):
    write(tmp_path, "db", "V000__nothing.sql")
    with pytest.raises(MigrationError, match="start at 1"):
        discover_migrations("db", sql_root=tmp_path)


def test_missing_database_folder_is_an_error(tmp_path):
    with pytest.raises(MigrationError, match="no migrations folder for database 'nope'"):
        discover_migrations("nope", sql_root=tmp_path)


def test_checksum_ignores_line_endings_but_not_content(tmp_path):
    unix = write(tmp_path, "a", "V001__x.sql", "SELECT 1;\nSELECT 2;\n")
    windows = tmp_path / "b.sql"
    windows.write_bytes(b"SELECT 1;\r\nSELECT 2;\r\n")
    edited = tmp_path / "c.sql"
    edited.write_text("SELECT 1;\nSELECT 3;\n")

    assert file_checksum(unix) == file_checksum(windows)
    assert file_checksum(unix) != file_checksum(edited)


def plan(tmp_path, applied):
    found = discover_migrations("db", sql_root=tmp_path)
    return migrations._plan(found, applied, "db", migrations.migrations_dir("db", tmp_path))


def test_plan_skips_applied_and_returns_the_rest_in_order(tmp_path):
    first = write(tmp_path, "db", "V001__a.sql")
    write(tmp_path, "db", "V002__b.sql")
    write(tmp_path, "db", "V003__c.sql")

    pending = plan(tmp_path, {1: ("V001__a.sql", file_checksum(first))})

    assert [m.path.name for m in pending] == ["V002__b.sql", "V003__c.sql"]


def test_plan_rejects_an_edited_applied_file(tmp_path):
    write(tmp_path, "db", "V001__a.sql", "SELECT 'edited';\n")

    with pytest.raises(MigrationError, match=r"checksum mismatch for .*V001__a\.sql"):
        plan(tmp_path, {1: ("V001__a.sql", "0" * 64)})


def test_plan_rejects_a_renamed_or_missing_applied_file(tmp_path):
    renamed = write(tmp_path, "db", "V001__new_name.sql")
    with pytest.raises(MigrationError, match="was applied as V001__old_name.sql"):
        plan(tmp_path, {1: ("V001__old_name.sql", file_checksum(renamed))})

    with pytest.raises(MigrationError, match=r"V002__gone\.sql \(version 2\) is missing"):
        plan(tmp_path, {1: ("V001__new_name.sql", file_checksum(renamed)), 2: ("V002__gone.sql", "0" * 64)})


def test_plan_rejects_a_new_file_numbered_below_applied_history(tmp_path):
    write(tmp_path, "db", "V001__a.sql")
    write(tmp_path, "db", "V002__late_arrival.sql")
    third = write(tmp_path, "db", "V003__c.sql")
    first = migrations.migrations_dir("db", tmp_path) / "V001__a.sql"

    with pytest.raises(MigrationError, match=r"V002__late_arrival\.sql: version 2 is older"):
        plan(tmp_path, {1: ("V001__a.sql", file_checksum(first)), 3: ("V003__c.sql", file_checksum(third))})


def test_shipped_migrations_are_discoverable_and_contiguous():
    for database in migrations.MANAGED_DATABASES:
        found = discover_migrations(database)
        assert [m.version for m in found] == list(range(1, len(found) + 1)), database


def test_no_card_number_or_security_code_column_in_any_shipped_migration():
    # Belt and braces next to the integration check: PCI scope must never creep into these schemas.
    forbidden = re.compile(r"^\s*(pan|cvv|cvc|card_number|security_code)\b", re.IGNORECASE | re.MULTILINE)
    for database in migrations.MANAGED_DATABASES:
        for migration in discover_migrations(database):
            assert not forbidden.search(migration.path.read_text()), migration.path


def test_cli_rejects_unknown_database(capsys):
    with pytest.raises(SystemExit):
        migrations.main(["apply", "--db", "warehouse_typo"])
    assert "invalid choice" in capsys.readouterr().err


def test_cli_reports_missing_connection(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PAYDATA_STACK_DIR", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_PAYDATA_REFERENCE", raising=False)

    assert migrations.main(["apply", "--db", "reference"]) == 2
    assert "paydata_reference" in capsys.readouterr().err
