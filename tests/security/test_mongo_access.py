"""Attacks on the local MongoDB server (SecantusDB with --auth and TLS), replayed against the real thing.

Each consumer logs in through its own Airflow connection (``settings.MONGO_USERS``). What the
server refuses is asserted with the code it returns: 13 (Unauthorized) for an operation without
login or without the privilege, 18 (AuthenticationFailed) for bad credentials. Where SecantusDB
does not enforce what the role asks for (docs/security.md, *What SecantusDB does not enforce*) the
test states the intended behaviour and is a strict xfail on SecantusDB: if the server starts
enforcing it, the test passes, the xfail fails the suite, and the docs must be updated.

Writes go to documents with unique ids in the ``paydata`` database and are removed afterwards.
"""

from __future__ import annotations

import socket
import ssl
import uuid
from datetime import UTC, datetime

import pytest
from pymongo import InsertOne, MongoClient
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from paydata import nosql, settings
from paydata.stack import mongo as stack_mongo

pytestmark = [pytest.mark.integration, pytest.mark.security]

UNAUTHORIZED = 13
AUTHENTICATION_FAILED = 18
TIMEOUT_MS = 3000


@pytest.fixture(scope="module")
def root(stack):
    from paydata.stack import mongo_root_client

    client = mongo_root_client(stack, serverSelectionTimeoutMS=TIMEOUT_MS)
    yield client
    client.close()


@pytest.fixture(scope="module")
def clients(stack):
    """Connection id -> a client logged in as that connection's user."""
    opened = {conn_id: settings.mongo_client(conn_id, serverSelectionTimeoutMS=TIMEOUT_MS)
              for conn_id in settings.MONGO_USERS}
    yield opened
    for client in opened.values():
        client.close()


@pytest.fixture(scope="module")
def is_secantus(root) -> bool:
    return "secantusVersion" in root.admin.command("buildInfo")


@pytest.fixture
def secantus_gap(request, is_secantus):
    """Mark the calling test as a known SecantusDB gap (strict xfail on SecantusDB only)."""

    def mark(reason: str) -> None:
        if is_secantus:
            request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError,
                                                  reason=f"SecantusDB does not enforce this: {reason}"))

    return mark


def db(clients, conn_id: str):
    return clients[conn_id][settings.MONGO_DATABASE]


def unique_id(prefix: str) -> str:
    return f"security_{prefix}_{uuid.uuid4().hex[:12]}"


def refused(operation) -> int:
    """Run ``operation``; return the server's error code (AssertionError if it was allowed)."""
    try:
        operation()
    except OperationFailure as exc:
        return exc.code
    raise AssertionError("the server allowed the operation")


def anonymous(config, **options) -> MongoClient:
    return MongoClient(stack_mongo.uri(config), serverSelectionTimeoutMS=TIMEOUT_MS, **options)


# -- no login, bad login ---------------------------------------------------------------------------


def test_unauthenticated_client_cannot_list_databases(stack):
    with anonymous(stack) as client:
        assert refused(client.list_database_names) == UNAUTHORIZED


def test_unauthenticated_client_cannot_insert(stack):
    with anonymous(stack) as client:
        assert refused(lambda: client.paydata.payments.insert_one({"_id": unique_id("anon")})) == UNAUTHORIZED
        assert refused(lambda: client.paydata.payments.find_one()) == UNAUTHORIZED


def test_unauthenticated_client_only_reaches_the_handshake(stack):
    with anonymous(stack) as client:
        assert client.admin.command("ping")["ok"] == 1  # pre-auth, like mongod
        assert refused(lambda: client.admin.command("usersInfo")) == UNAUTHORIZED


@pytest.mark.parametrize("user, password", [("paydata_analyst", "wrong-password"), ("nobody", "x"),
                                            ("paydata_root", "guessed-password")])
def test_wrong_credentials_are_refused(stack, user, password):
    uri = stack_mongo.user_uri(stack, user, password)
    with MongoClient(uri, serverSelectionTimeoutMS=TIMEOUT_MS) as client:
        assert refused(lambda: client.paydata.payments.find_one()) == AUTHENTICATION_FAILED


def test_users_exist_only_in_the_admin_auth_database(stack):
    conn = settings.connection(settings.MONGO_ANALYST_CONN_ID)
    uri = settings.Connection("x", "mongo", conn.host, conn.port, login=conn.login, password=conn.password,
                              extra={**conn.extra, "authSource": settings.MONGO_DATABASE}).mongo_uri()
    with MongoClient(uri, serverSelectionTimeoutMS=TIMEOUT_MS) as client:
        assert refused(lambda: client.paydata.payments.find_one()) == AUTHENTICATION_FAILED


# -- transport ---------------------------------------------------------------------------------------


def test_plaintext_client_cannot_connect(stack):
    conn = settings.connection(settings.MONGO_ANALYST_CONN_ID)
    plain = settings.Connection("x", "mongo", conn.host, conn.port, login=conn.login, password=conn.password,
                                extra={"authSource": "admin"})
    with MongoClient(plain.mongo_uri(), serverSelectionTimeoutMS=TIMEOUT_MS) as client:
        with pytest.raises(ServerSelectionTimeoutError):
            client.admin.command("ping")


def test_tls_client_that_does_not_trust_the_stack_ca_cannot_connect(stack, tmp_path):
    from paydata.stack.tls import generate_ca

    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(generate_ca("someone else's CA").cert_pem())
    conn = settings.connection(settings.MONGO_ANALYST_CONN_ID)
    for extra in ({**conn.extra, "tlsCAFile": str(other_ca)},
                  {key: value for key, value in conn.extra.items() if key != "tlsCAFile"}):  # system CAs
        untrusting = settings.Connection("x", "mongo", conn.host, conn.port, login=conn.login,
                                         password=conn.password, extra=extra)
        with MongoClient(untrusting.mongo_uri(), serverSelectionTimeoutMS=TIMEOUT_MS) as client:
            with pytest.raises(ServerSelectionTimeoutError, match="CERTIFICATE_VERIFY_FAILED"):
                client.admin.command("ping")


def test_server_certificate_is_from_the_stack_ca_and_tls13_is_negotiated(stack):
    context = ssl.create_default_context(cafile=str(stack.ca_cert))
    with socket.create_connection(("127.0.0.1", stack.mongo_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.3"


def test_every_connection_asks_for_verified_tls_and_names_its_user(stack):
    for conn_id, user in settings.MONGO_USERS.items():
        conn = settings.connection(conn_id)
        assert conn.login == user and conn.password, conn_id
        assert conn.mongo_tls and conn.extra["tlsCAFile"] == str(stack.ca_cert), conn_id
        assert conn.extra["authSource"] == "admin", conn_id
        assert not {"allow_insecure", "tlsInsecure", "tlsAllowInvalidCertificates"} & set(conn.extra), conn_id


# -- least privilege: what each user may not do ------------------------------------------------------


def test_analyst_cannot_write(clients):
    analyst = db(clients, settings.MONGO_ANALYST_CONN_ID)
    assert refused(lambda: analyst.payments.insert_one({"_id": unique_id("analyst")})) == UNAUTHORIZED
    assert refused(lambda: analyst.payments.update_one({"_id": -1}, {"$set": {"x": 1}})) == UNAUTHORIZED
    assert refused(lambda: analyst.payments.delete_many({"_id": -1})) == UNAUTHORIZED
    assert refused(lambda: analyst.payments.find_one_and_update({"_id": -1}, {"$set": {"x": 1}})) == UNAUTHORIZED
    assert refused(lambda: list(analyst.payments.aggregate([{"$match": {"_id": -1}},
                                                            {"$out": unique_id("out")}]))) == UNAUTHORIZED


@pytest.mark.parametrize("conn_id", list(settings.MONGO_USERS))
def test_no_user_can_create_users_or_grant_roles(clients, conn_id):
    admin = clients[conn_id].admin
    assert refused(lambda: admin.command("createUser", unique_id("evil"), pwd="x" * 12,
                                         roles=["root"])) == UNAUTHORIZED
    assert refused(lambda: admin.command("grantRolesToUser", settings.MONGO_USERS[conn_id],
                                         roles=["root"])) == UNAUTHORIZED
    assert refused(lambda: admin.command("createRole", unique_id("evil"), privileges=[], roles=["root"])) \
        == UNAUTHORIZED
    assert refused(lambda: admin.command("updateRole", "paydata_analyst_read", privileges=[],
                                         roles=[{"role": "root", "db": "admin"}])) == UNAUTHORIZED
    assert refused(lambda: admin.command("usersInfo")) == UNAUTHORIZED


CONSUMERS = [settings.MONGO_CDC_CONN_ID, settings.MONGO_INGEST_CONN_ID, settings.MONGO_FEATURES_CONN_ID,
             settings.MONGO_ANALYST_CONN_ID, settings.MONGO_BACKUP_CONN_ID, settings.MONGO_SCORER_CONN_ID]


@pytest.mark.parametrize("conn_id", CONSUMERS)
def test_consumers_cannot_change_definitions_or_drop_data(clients, conn_id):
    database = db(clients, conn_id)
    assert refused(lambda: database.drop_collection("payments")) == UNAUTHORIZED
    assert refused(lambda: database.payments.create_index("evil")) == UNAUTHORIZED
    assert refused(lambda: database.payments.drop_index("payments_device")) == UNAUTHORIZED
    assert refused(lambda: database.command("collMod", "payments", validator={})) == UNAUTHORIZED
    assert refused(lambda: database.create_collection(unique_id("coll"))) == UNAUTHORIZED
    assert refused(lambda: clients[conn_id].drop_database(settings.MONGO_DATABASE)) == UNAUTHORIZED


@pytest.mark.parametrize("conn_id", list(settings.MONGO_USERS))
def test_no_user_reaches_another_database(clients, conn_id):
    other = clients[conn_id][unique_id("otherdb")]
    assert refused(lambda: other.items.insert_one({"x": 1})) == UNAUTHORIZED
    assert refused(lambda: other.items.find_one()) == UNAUTHORIZED
    assert refused(lambda: clients[conn_id].list_database_names()) == UNAUTHORIZED


def test_backup_user_reads_paydata_and_writes_only_the_drill_database(clients, root):
    backup = clients[settings.MONGO_BACKUP_CONN_ID]
    paydata = backup[settings.MONGO_DATABASE]
    paydata.payments.find_one()
    assert refused(lambda: paydata.payments.insert_one({"_id": unique_id("backup")})) == UNAUTHORIZED
    assert refused(lambda: paydata.payments.delete_many({"_id": -1})) == UNAUTHORIZED
    drill_name = settings.restore_drill_database(settings.MONGO_DATABASE)
    try:
        drill = backup[drill_name]
        drill.create_collection(unique_id("drill"))
        drill.items.insert_one({"x": 1})
        backup.drop_database(drill_name)
        assert drill_name not in root.list_database_names()
    finally:
        root.drop_database(drill_name)


def test_administrator_manages_definitions_but_not_users(clients):
    admin_db = db(clients, settings.MONGO_CONN_ID)
    assert nosql.apply_definitions(admin_db) == []  # the stack applied them; re-checking only reads
    assert refused(lambda: clients[settings.MONGO_CONN_ID].admin.command(
        "createUser", unique_id("evil"), pwd="x" * 12, roles=["root"])) == UNAUTHORIZED


# -- least privilege per collection (MongoDB 7 enforces it; SecantusDB only per database) ------------


def test_ingest_user_cannot_write_cdc_collections(clients, root, secantus_gap):
    secantus_gap("privileges name a collection, SecantusDB grants them for the whole database")
    doc_id = unique_id("ingest")
    try:
        code = refused(lambda: db(clients, settings.MONGO_INGEST_CONN_ID).cdc_offsets.insert_one(
            {"_id": doc_id, "lsn": 0, "idx": 0}))
        assert code == UNAUTHORIZED
    finally:
        root.paydata.cdc_offsets.delete_one({"_id": doc_id})


def test_cdc_user_cannot_write_ingest_collections(clients, root, secantus_gap):
    secantus_gap("privileges name a collection, SecantusDB grants them for the whole database")
    doc_id = unique_id("cdc")
    try:
        assert refused(lambda: db(clients, settings.MONGO_CDC_CONN_ID).sessions.insert_one({"_id": doc_id})) \
            == UNAUTHORIZED
    finally:
        root.paydata.sessions.delete_one({"_id": doc_id})


def test_analyst_cannot_read_quarantine(clients, secantus_gap):
    secantus_gap("privileges name a collection, SecantusDB grants them for the whole database")
    assert refused(lambda: db(clients, settings.MONGO_ANALYST_CONN_ID).quarantine.find_one()) == UNAUTHORIZED


def test_read_only_user_cannot_write_through_the_bulk_write_command(clients, root, secantus_gap):
    secantus_gap("the bulkWrite command (MongoClient.bulk_write) is not privilege-checked")
    collection = unique_id("bulk")
    try:
        analyst = clients[settings.MONGO_ANALYST_CONN_ID]
        assert refused(lambda: analyst.bulk_write(
            [InsertOne({"x": 1}, namespace=f"{settings.MONGO_DATABASE}.{collection}")])) == UNAUTHORIZED
    finally:
        root.paydata.drop_collection(collection)


# -- what each user's job needs ------------------------------------------------------------------------


def test_cdc_user_reads_and_writes_cdc_collections_in_a_transaction(clients):
    client = clients[settings.MONGO_CDC_CONN_ID]
    offsets = client[settings.MONGO_DATABASE].cdc_offsets
    doc_id = unique_id("cdc")
    try:
        with client.start_session() as session:
            session.with_transaction(lambda s: offsets.insert_one({"_id": doc_id, "lsn": 1, "idx": 0}, session=s))
        offsets.update_one({"_id": doc_id}, {"$set": {"lsn": 2}})
        assert offsets.find_one({"_id": doc_id})["lsn"] == 2
    finally:
        offsets.delete_one({"_id": doc_id})
    assert offsets.find_one({"_id": doc_id}) is None


def test_cdc_sink_prepares_with_the_cdc_user(clients):
    from paydata.cdc.sinks.mongo import MongoSink

    sink = MongoSink(lambda: db(clients, settings.MONGO_CDC_CONN_ID))
    sink.prepare([])  # definitions already applied: only reads, which the CDC writer may do
    assert sink.uses_transactions


def test_cdc_sink_explains_missing_definitions_it_may_not_apply(clients, root, monkeypatch):
    from paydata.cdc.sinks.mongo import DefinitionsNotApplied, MongoSink

    database = db(clients, settings.MONGO_CDC_CONN_ID)
    definitions = {unique_id("missing"): {"indexes": []}}
    monkeypatch.setattr(nosql.definitions, "load_definitions", lambda path=None: definitions)
    try:
        with pytest.raises(DefinitionsNotApplied, match="python -m paydata.nosql apply"):
            MongoSink(lambda: database).prepare([])
    finally:
        for name in definitions:
            root.paydata.drop_collection(name)


def test_ingest_user_writes_its_collections(clients):
    quarantine = db(clients, settings.MONGO_INGEST_CONN_ID).quarantine
    doc_id = unique_id("ingest")
    record = {"file": "security.jsonl", "file_sha256": "0" * 64, "line": 1, "reason": "bad_json",
              "raw_sha256": "1" * 64, "raw_bytes": 3, "quarantined_at": datetime.now(UTC)}
    try:
        quarantine.update_one({"_id": doc_id}, {"$set": record}, upsert=True)
        assert quarantine.find_one({"_id": doc_id})["reason"] == "bad_json"
    finally:
        quarantine.delete_one({"_id": doc_id})


def test_features_user_reads_sources_and_writes_features(clients, root):
    database = db(clients, settings.MONGO_FEATURES_CONN_ID)
    for source in ("sessions", "payments"):
        database[source].find_one()
    doc_id = unique_id("features")
    now = datetime.now(UTC)
    document = {"entity": "card", "key": {"card": "tok_test"}, "values": {"card_count_1h": 0.5},
                "expires_at": {"card_count_1h": now}, "as_of": now, "known_lsn": 1, "computed_at": now,
                "definitions": {"name": "security", "hash": "0" * 64}}
    try:
        database.features.update_one({"_id": doc_id}, {"$set": document}, upsert=True)
        assert database.features.find_one({"_id": doc_id})["values"] == {"card_count_1h": 0.5}
        database.features.delete_one({"_id": doc_id})
    finally:
        root.paydata.features.delete_one({"_id": doc_id})


def test_scorer_user_reads_features_and_sessions_but_cannot_write_or_delete_features(clients, root):
    """The scoring API's login (a stolen scorer credential): it reads what a lookup reads, and can
    neither plant nor change nor remove an online feature document."""
    scorer = db(clients, settings.MONGO_SCORER_CONN_ID)
    doc_id = unique_id("scorer")
    now = datetime.now(UTC)
    root.paydata.features.insert_one({
        "_id": doc_id, "entity": "card", "key": {"card": "tok_test"}, "values": {"card_charges_1h": 1.0},
        "expires_at": {"card_charges_1h": now}, "as_of": now, "known_lsn": 1, "computed_at": now,
        "definitions": {"name": "security", "hash": "0" * 64}})
    try:
        assert scorer.features.find_one({"_id": doc_id}, {"values": 1})["values"] == {"card_charges_1h": 1.0}
        scorer.sessions.find_one({"session_id": "tok_none"})
        planted = unique_id("planted")
        assert refused(lambda: scorer.features.insert_one({"_id": planted, "values": {}})) == UNAUTHORIZED
        assert refused(lambda: scorer.features.update_one(
            {"_id": doc_id}, {"$set": {"values.card_charges_1h": 0.0}})) == UNAUTHORIZED
        assert refused(lambda: scorer.features.replace_one({"_id": doc_id}, {"values": {}})) == UNAUTHORIZED
        assert refused(lambda: scorer.features.delete_one({"_id": doc_id})) == UNAUTHORIZED
        assert refused(lambda: scorer.features.delete_many({})) == UNAUTHORIZED
        assert refused(lambda: scorer.features.find_one_and_delete({"_id": doc_id})) == UNAUTHORIZED
        assert refused(lambda: scorer.features.bulk_write([InsertOne({"_id": planted})])) == UNAUTHORIZED
        assert refused(lambda: list(scorer.features.aggregate([{"$match": {"_id": doc_id}},
                                                               {"$out": "features"}]))) == UNAUTHORIZED
        assert refused(lambda: scorer.feature_offsets.update_one(
            {"_id": "fraud_charge"}, {"$set": {"lsn": -1}}, upsert=True)) == UNAUTHORIZED
        assert refused(lambda: scorer.sessions.insert_one({"_id": planted})) == UNAUTHORIZED
        # nothing changed: the document is as written, nothing was planted
        assert root.paydata.features.find_one({"_id": doc_id})["values"] == {"card_charges_1h": 1.0}
        assert root.paydata.features.find_one({"_id": planted}) is None
    finally:
        root.paydata.features.delete_one({"_id": doc_id})


def test_scorer_user_cannot_read_payments_or_customers(clients, secantus_gap):
    secantus_gap("privileges name a collection, SecantusDB grants them for the whole database")
    scorer = db(clients, settings.MONGO_SCORER_CONN_ID)
    assert refused(lambda: scorer.payments.find_one()) == UNAUTHORIZED
    assert refused(lambda: scorer.customers.find_one()) == UNAUTHORIZED


def test_analyst_runs_every_example_query(clients):
    analyst = db(clients, settings.MONGO_ANALYST_CONN_ID)
    samples = {"string": "tok_none", "int": 1, "number": 1.0, "date": datetime(2026, 1, 1, tzinfo=UTC)}
    for name in nosql.query_names():
        params = {param: samples[kind] for param, kind in nosql.load_query(name)["params"].items()}
        assert isinstance(nosql.run_query(analyst, name, **params), list), name


def test_the_compose_init_command_applies_the_same_access_idempotently(stack, monkeypatch, capsys):
    """``python -m paydata.mongo_access apply`` (compose's mongo-init) against the local server: it
    logs in as paydata_root from the environment and finds every role and user as the stack made them."""
    from paydata import mongo_access

    def secret(user: str) -> str:
        return stack.mongo_password_file(user).read_text().strip()

    monkeypatch.setenv("PAYDATA_MONGO_ROOT_URI", stack_mongo.uri(stack))
    monkeypatch.setenv("PAYDATA_MONGO_ROOT_PASSWORD", secret(mongo_access.ROOT_USER))
    for user in settings.MONGO_USERS.values():
        monkeypatch.setenv(f"PAYDATA_MONGO_{user.removeprefix('paydata_').upper()}_PASSWORD", secret(user))
    assert mongo_access.main(["apply"]) == 0
    assert capsys.readouterr().out.strip() == "mongo_access: nothing to change"

    monkeypatch.setenv("PAYDATA_MONGO_ROOT_PASSWORD", "not-the-root-password")
    with pytest.raises(OperationFailure) as failed:
        mongo_access.main(["apply"])
    assert failed.value.code == AUTHENTICATION_FAILED
