"""Manifest loading, validation against a catalog, and policy application (no services)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from paydata.cdc.manifest import ManifestError, SchemaDriftError, SourceColumn, load_manifest
from paydata.cdc.model import Position
from paydata.cdc.pgoutput import UNCHANGED_TOAST
from tests.oracles.parsed_changes import Change, capture_parsed

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BASE = {
    "source": "oltp",
    "slot": "s",
    "publication": "p",
    "tables": {
        "charge": {
            "key": ["charge_id"],
            "sinks": ["warehouse", "mongo"],
            "columns": {
                "charge_id": "keep",
                "customer_id": "tokenise:customer",
                "ip_address": "tokenise:ip",
                "email_enc": "drop",
                "memo": "keep",
            },
            "mongo": {"collection": "payments", "fields": {"ip_address": "device.ip_token"},
                      "token_fields": ["device.ip_token"]},
        },
        "customer": {
            "key": ["customer_id"],
            "sinks": ["warehouse"],
            "columns": {"customer_id": "tokenise:customer", "country_code": "keep"},
        },
    },
}
CATALOG = {
    "charge": {
        "charge_id": SourceColumn("charge_id", 20, "bigint"),
        "customer_id": SourceColumn("customer_id", 20, "bigint"),
        "ip_address": SourceColumn("ip_address", 869, "inet"),
        "email_enc": SourceColumn("email_enc", 17, "bytea"),
        "memo": SourceColumn("memo", 25, "text"),
    },
    "customer": {
        "customer_id": SourceColumn("customer_id", 20, "bigint"),
        "country_code": SourceColumn("country_code", 1042, "character(2)"),
    },
}


def fake_tokenise(value: str, *, domain: str) -> str:
    return f"tok[{domain}:{value}]"


def manifest(data=None):
    loaded = load_manifest(copy.deepcopy(data or BASE))
    loaded.tokenise = fake_tokenise
    return loaded


def change(kind, table="charge", new=None, old=None, index=0):
    return Change(kind, "public", table, 1000, 7, NOW, index, new, old, {}, 0)


def with_table(**overrides):
    data = copy.deepcopy(BASE)
    data["tables"]["charge"].update(overrides)
    return data


@pytest.mark.parametrize("source", ["reference", "oltp"])
def test_shipped_manifests_load_and_never_capture_key_material(source):
    loaded = load_manifest(source)
    assert loaded.source == source
    assert not {"merchant_data_key", "customer_data_key", "merchant_ref", "currency_ref", "audit_log"} & set(loaded.tables)
    for table in loaded.tables.values():
        for column, policy in table.columns.items():
            if column.endswith(("_enc", "_bidx")) or column == "ip_address":
                assert policy.action in ("drop", "tokenise"), (table.name, column)
            if column == "customer_id":
                assert (policy.action, policy.domain) == ("tokenise", "customer")


def test_shipped_sink_routing():
    assert load_manifest("reference").tables["merchant"].history is True
    assert load_manifest("reference").tables_for_sink("mongo") == ["merchant"]
    assert set(load_manifest("oltp").tables_for_sink("mongo")) >= {"customer", "charge", "refund", "dispute"}
    assert set(load_manifest("oltp").tables_for_sink("warehouse")) == set(load_manifest("oltp").tables)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**BASE, "extra": 1}, "unknown"),
        ({k: v for k, v in BASE.items() if k != "slot"}, "missing"),
        ({**BASE, "slot": "Bad-Name"}, "identifier"),
        (with_table(columns={"charge_id": "keep", "x": "hash"}), "policy 'hash'"),
        (with_table(columns={"charge_id": "keep", "x": "tokenise:"}), "tokenise"),
        (with_table(key=["missing"]), "not listed"),
        (with_table(columns={"charge_id": "drop"}), "cannot be dropped"),
        (with_table(sinks=["s3"]), "unknown sink"),
        (with_table(history="yes"), "history"),
        (with_table(sinks=[]), "non-empty"),
        ({**BASE, "tables": {}}, "non-empty"),
    ],
)
def test_malformed_manifests_are_rejected_with_the_place(data, message):
    with pytest.raises(ManifestError, match=message):
        load_manifest(data)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_manifest(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(bad)


def test_catalog_check_errors_name_missing_columns_and_warn_about_extra_ones():
    catalog = copy.deepcopy(CATALOG)
    catalog["charge"]["new_col"] = SourceColumn("new_col", 25, "text")
    assert manifest().check_catalog(catalog) == [
        "column charge.new_col exists in source 'oltp' but not in the manifest: ignored (add it with a "
        "policy to capture it)"
    ]
    del catalog["charge"]["memo"]
    with pytest.raises(ManifestError, match=r"charge\.memo"):
        manifest().check_catalog(catalog)
    with pytest.raises(ManifestError, match="public.customer does not exist"):
        manifest().check_catalog({"charge": CATALOG["charge"]})


def test_table_specs_type_tokens_as_text_and_omit_dropped_columns():
    specs = {spec.table: spec for spec in manifest().table_specs(CATALOG)}
    assert specs["charge"].columns == {
        "charge_id": "bigint", "customer_id": "text", "ip_address": "text", "memo": "text"
    }
    assert specs["charge"].sinks == ("warehouse", "mongo") and specs["customer"].key == ("customer_id",)
    assert specs["customer"].columns == {"customer_id": "text", "country_code": "character(2)"}


def test_insert_is_tokenised_and_dropped_and_keys_use_the_policy():
    row = {"charge_id": 5, "customer_id": 42, "ip_address": "10.0.0.1", "email_enc": b"secret", "memo": None}
    [captured] = capture_parsed(manifest(), change("insert", new=row))
    assert captured.row == {"charge_id": 5, "customer_id": "tok[customer:42]", "ip_address": "tok[ip:10.0.0.1]",
                            "memo": None}
    assert captured.position == Position(1000, 0) and captured.key == {"charge_id": 5}
    [customer] = capture_parsed(manifest(), change("insert", "customer", {"customer_id": 42, "country_code": "FR"}))
    assert customer.key == {"customer_id": "tok[customer:42]"}


def test_unchanged_toast_goes_to_unchanged_not_row():
    row = {"charge_id": 5, "customer_id": 42, "ip_address": None, "email_enc": None, "memo": UNCHANGED_TOAST}
    [captured] = capture_parsed(manifest(), change("update", new=row))
    assert "memo" not in captured.row and captured.unchanged == frozenset({"memo"})


def test_delete_truncate_and_uncaptured_tables():
    [deleted] = capture_parsed(manifest(), change("delete", old={"charge_id": 9}))
    assert (deleted.kind, deleted.key, deleted.row) == ("delete", {"charge_id": 9}, None)
    [truncated] = capture_parsed(manifest(), change("truncate"))
    assert truncated.kind == "truncate" and truncated.key == {}
    assert capture_parsed(manifest(), change("insert", table="customer_data_key", new={"customer_id": 1})) == []


def test_key_change_becomes_delete_of_the_old_key_then_update():
    row = {"charge_id": 6, "customer_id": 1, "ip_address": None, "email_enc": None, "memo": "m"}
    deleted, updated = capture_parsed(manifest(), change("update", new=row, old={"charge_id": 5}))
    assert (deleted.kind, deleted.key) == ("delete", {"charge_id": 5})
    assert (updated.kind, updated.key) == ("update", {"charge_id": 6})


def test_dropped_column_in_a_change_is_schema_drift_naming_it():
    row = {"charge_id": 5, "customer_id": 42, "ip_address": None, "email_enc": None}
    with pytest.raises(SchemaDriftError, match="memo"):
        capture_parsed(manifest(), change("insert", new=row))
    with pytest.raises(SchemaDriftError, match="charge_id"):
        capture_parsed(manifest(), change("delete", old={"other": 1}))


def test_added_column_is_ignored_with_one_warning(caplog):
    row = {"charge_id": 5, "customer_id": 42, "ip_address": None, "email_enc": None, "memo": "m", "ssn": "x"}
    loaded = manifest()
    [captured] = capture_parsed(loaded, change("insert", new=row))
    capture_parsed(loaded, change("insert", new=row, index=1))
    assert "ssn" not in captured.row
    assert sum("ssn" in message for message in caplog.messages) == 1


def test_pinned_tokeniser_gives_the_same_tokens_as_the_unpinned_path(tmp_path, monkeypatch):
    from paydata.crypto import KeyRing, reload_keys

    key_file = tmp_path / "token_key"
    key_file.write_text(KeyRing.generate_line("k1") + "\n")
    monkeypatch.delenv("PAYDATA_TOKEN_KEY", raising=False)
    monkeypatch.setenv("PAYDATA_TOKEN_KEY_FILE", str(key_file))
    reload_keys()
    try:
        real = load_manifest(copy.deepcopy(BASE))  # no injected tokeniser: the environment's key ring
        row = {"charge_id": 5, "customer_id": 42, "ip_address": "10.0.0.1", "email_enc": b"x", "memo": None}
        [unpinned] = capture_parsed(real, change("insert", new=row))
        with real.pinned_tokeniser():
            [pinned] = capture_parsed(real, change("insert", new=row))
        assert pinned.row == unpinned.row
        assert pinned.row["customer_id"].startswith("tok_k1_")
    finally:
        monkeypatch.undo()
        reload_keys()  # later tests must see the process's own key files again


@pytest.mark.parametrize(
    ("mongo", "match"),
    [
        (None, "routed to the mongo sink but has no mongo: block"),
        ({"collection": "payments", "fields": {"email_enc": "email"}}, "only captured columns"),
        ({"collection": "payments", "fields": {"nope": "x"}}, "only captured columns"),
        ({"collection": "payments", "fields": {"memo": "_id"}}, "not a usable field path"),
        ({"collection": "payments", "fields": {"memo": "memo"}, "token_fields": ["memo"]}, "is not tokenised"),
        ({"collection": "payments", "fields": {"memo": "memo"}, "token_fields": ["other"]}, "not one of the fields"),
        ({"collection": "Bad Name", "fields": {"memo": "memo"}}, "expected a collection name"),
        ({"collection": "payments", "fields": {"memo": "memo"}, "embed": {"array": "x"}}, "embed"),
        ({"collection": "payments", "fields": {"memo": "memo"}, "embed": {"array": "x", "parent": "ip_address"}},
         "must be a kept column"),
        ({"collection": "payments", "fields": {"memo": "memo"}, "colour": "red"}, "unknown keys"),
    ],
)
def test_a_bad_document_map_is_refused_naming_the_place(mongo, match):
    data = copy.deepcopy(BASE)
    if mongo is None:
        del data["tables"]["charge"]["mongo"]
    else:
        data["tables"]["charge"]["mongo"] = mongo
    with pytest.raises(ManifestError, match=match) as raised:
        load_manifest(data)
    assert "tables.charge" in str(raised.value)


def test_a_document_map_without_the_mongo_sink_is_refused():
    data = copy.deepcopy(BASE)
    data["tables"]["charge"]["sinks"] = ["warehouse"]
    with pytest.raises(ManifestError, match="not routed to the mongo sink"):
        load_manifest(data)


def test_the_shipped_manifests_declare_the_document_model():
    from paydata.cdc.sinks.mongo import document_models

    models = document_models()
    assert {table for _, table in models.top_level} == {"merchant", "customer", "payment_intent", "charge"}
    assert {(table, model.embed_array) for (_, table), model in models.embedded.items()} == {
        ("refund", "refunds"), ("dispute", "disputes")}
    charge = models.top_level[("oltp", "charge")]
    assert "failure_message" not in charge.fields, "processor free text must never reach Mongo"
    assert charge.token_fields == {"device.ip_token"}
    assert models.top_level[("oltp", "customer")].key_is_token
