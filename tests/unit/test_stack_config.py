"""StackConfig, service parsing and the Postgres config renderers (no services needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paydata import settings
from paydata.stack import StackConfig, StackError
from paydata.stack.config import SERVICES, parse_services
from paydata.stack.postgres import render_pg_hba, render_postgresql_conf, resolve_binaries


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("PAYDATA_STACK_DIR", "PAYDATA_PG_PORT", "PAYDATA_MONGO_PORT", "PAYDATA_PG_BINARIES"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_default_config_uses_repo_defaults(clean_env):
    config = StackConfig.default()
    assert config.state_dir == (settings.REPO_ROOT / ".stack").resolve()
    assert (config.pg_port, config.mongo_port, config.pg_binaries) == (55432, 57017, "auto")
    assert config.env_file == settings.env_file()


def test_environment_overrides_config(clean_env, tmp_path):
    clean_env.setenv("PAYDATA_STACK_DIR", str(tmp_path))
    clean_env.setenv("PAYDATA_PG_PORT", "61000")
    clean_env.setenv("PAYDATA_MONGO_PORT", "61001")
    clean_env.setenv("PAYDATA_PG_BINARIES", "embedded")
    config = StackConfig.default()
    assert config.state_dir == tmp_path.resolve()
    assert (config.pg_port, config.mongo_port, config.pg_binaries) == (61000, 61001, "embedded")
    assert config.pg_data == tmp_path.resolve() / "pg" / "data"
    assert config.kek_file == tmp_path.resolve() / "secrets" / "kek"


@pytest.mark.parametrize("raw, message", [("abc", "not a port number"), ("80", "outside"), ("70000", "outside")])
def test_bad_port_env_is_rejected(clean_env, raw, message):
    clean_env.setenv("PAYDATA_PG_PORT", raw)
    with pytest.raises(StackError, match=message):
        StackConfig.default()


def test_parse_services():
    assert parse_services(None) == SERVICES
    assert parse_services("mongo, postgres,mongo") == ("mongo", "postgres")
    with pytest.raises(StackError, match="unknown service.*redis"):
        parse_services("postgres,redis")
    with pytest.raises(StackError, match="unknown service"):
        parse_services(" , ")


def test_postgresql_conf_with_tls():
    config = StackConfig(state_dir=Path("/srv/st'ack"), pg_port=61234)
    text = render_postgresql_conf(config, tls=True)
    lines = set(text.splitlines())
    for expected in (
        "port = 61234",
        "listen_addresses = '127.0.0.1'",
        "wal_level = logical",
        "max_replication_slots = 16",
        "max_wal_senders = 16",
        "max_slot_wal_keep_size = '4GB'",
        "shared_buffers = '512MB'",
        "max_wal_size = '4GB'",
        "password_encryption = 'scram-sha-256'",
        "log_connections = on",
        "log_disconnections = on",
        "ssl = on",
        "ssl_min_protocol_version = 'TLSv1.3'",
        "unix_socket_directories = '/srv/st''ack/pg/run'",
        "ssl_key_file = '/srv/st''ack/secrets/server.key'",
    ):
        assert expected in lines, expected
    prefix = next(line for line in lines if line.startswith("log_line_prefix"))
    assert all(escape in prefix for escape in ("%u", "%d", "%a"))


def test_postgresql_conf_without_tls_serves_socket_only():
    text = render_postgresql_conf(StackConfig(state_dir=Path("/tmp/s")), tls=False)
    assert "listen_addresses = ''" in text.splitlines()
    assert "ssl = off" in text.splitlines()
    assert "ssl_cert_file" not in text


def test_pg_hba_rejects_plaintext_tcp_and_requires_scram():
    rules = [line.split() for line in render_pg_hba(tls=True).splitlines() if not line.startswith("#")]
    assert ["local", "all", "all", "scram-sha-256"] in rules
    for address in ("127.0.0.1/32", "::1/128"):
        assert ["hostssl", "all", "all", address, "scram-sha-256"] in rules
    for database in ("all", "replication"):
        for address in ("0.0.0.0/0", "::/0"):
            assert ["hostnossl", database, "all", address, "reject"] in rules
    assert all(rule[-1] in ("scram-sha-256", "reject") for rule in rules)
    assert not any(rule[0] == "host" for rule in rules)


def _first_match(rules, kind, database, user):
    for rule in rules:
        databases, users = rule[1].split(","), rule[2].split(",")
        db_match = database in databases or ("all" in databases and database != "replication")
        if rule[0] == kind and db_match and (user in users or "all" in users):
            return rule[-1]
    return None


@pytest.mark.parametrize("tls", [True, False])
def test_pg_hba_keeps_the_capture_role_away_from_key_material(tls):
    rules = [line.split() for line in render_pg_hba(tls=tls).splitlines() if not line.startswith("#")]
    kinds = ("local", "hostssl") if tls else ("local",)
    for kind in kinds:
        # Physical replication streams the WAL of every database, the key store's included.
        assert _first_match(rules, kind, "replication", "paydata_cdc") == "reject"
        assert _first_match(rules, kind, "replication", "paydata_admin") == "scram-sha-256"
        for database in ("keystore", "restore_drill_keystore"):
            assert _first_match(rules, kind, database, "paydata_cdc") == "reject"
            assert _first_match(rules, kind, database, "warehouse_owner") == "reject"
            assert _first_match(rules, kind, database, "paydata_keystore") == "scram-sha-256"
        assert _first_match(rules, kind, "oltp", "paydata_cdc") == "scram-sha-256"


def test_postgresql_conf_bounds_the_life_of_wal_copies():
    lines = set(render_postgresql_conf(StackConfig(state_dir=Path("/tmp/s")), tls=False).splitlines())
    assert {"wal_recycle = off", "wal_init_zero = on", "archive_mode = off"} <= lines


def test_pg_hba_without_tls_has_no_tcp_rules():
    rules = [line.split() for line in render_pg_hba(tls=False).splitlines() if not line.startswith("#")]
    assert {rule[0] for rule in rules} == {"local"}


def test_missing_binaries_are_explained(tmp_path):
    with pytest.raises(StackError, match=r"lacks initdb, postgres, pg_ctl, pg_config.*PAYDATA_PG_BINARIES=embedded"):
        resolve_binaries(str(tmp_path))


def test_embedded_binaries_resolve_without_openssl():
    binaries = resolve_binaries("embedded")
    assert binaries.kind == "embedded" and binaries.major >= 15 and binaries.tls is False
    assert os.access(binaries.bin_dir / "initdb", os.X_OK)
