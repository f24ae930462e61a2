"""MongoDB users and roles: one user per consumer, each with the least privilege its job needs.

The same definitions serve the local stack (SecantusDB, applied by ``python -m paydata.stack up``)
and compose (MongoDB 7, applied by the ``mongo-init`` service with ``python -m paydata.mongo_access
apply``). Every user lives in the ``admin`` database; each consumer role lives there too and names
its collections in the ``paydata`` database:

| user (connection id) | role | may |
|---|---|---|
| ``paydata_admin`` (``paydata_mongo``) | ``dbAdmin`` + ``readWrite`` on ``paydata`` | apply collection definitions, validators, indexes; no user or role management |
| ``paydata_cdc`` (``paydata_mongo_cdc``) | ``paydata_cdc_writer`` | read/write the CDC collections |
| ``paydata_ingest`` (``paydata_mongo_ingest``) | ``paydata_ingest_writer`` | read/write the landing-ingestion collections |
| ``paydata_features`` (``paydata_mongo_features``) | ``paydata_features_rw`` | read sessions, telemetry, feedback, payments; read/write ``features`` and ``feature_offsets`` |
| ``paydata_analyst`` (``paydata_mongo_analyst``) | ``paydata_analyst_read`` | read the document collections (not quarantine or bookkeeping) |
| ``paydata_backup`` (``paydata_mongo_backup``) | ``read`` on ``paydata``; ``readWrite`` + ``dbAdmin`` on ``restore_drill_paydata`` | export ``paydata`` for backups; restore drills into the scratch database |
| ``paydata_scorer`` (``paydata_mongo_scorer``) | ``paydata_scorer_read`` | read ``features`` and ``sessions`` (the fraud scoring API's online lookup); nothing else |

``paydata_root`` (``root``) only provisions the others; no Airflow connection carries it.
docs/security.md says what SecantusDB enforces of this and what only MongoDB 7 does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from paydata import settings

ROOT_USER = "paydata_root"

CDC_COLLECTIONS = ("merchant_profiles", "customers", "payment_intents", "payments", "cdc_offsets",
                   "cdc_truncations")
INGEST_COLLECTIONS = ("sessions", "telemetry", "feedback", "app_logs", "quarantine", "ingest_files")
FEATURE_SOURCES = ("sessions", "telemetry", "feedback", "payments")
FEATURE_COLLECTIONS = ("features", "feature_offsets")
# The scoring API reads the online feature documents and the sessions they are scored with
# (ml/serving/feature_store.py): no write, no other collection, no listing.
SCORER_COLLECTIONS = ("features", "sessions")
# Quarantine may hold rejected input that was never scrubbed, and the bookkeeping collections are
# of no analytical use: analysts read the document collections only.
ANALYST_COLLECTIONS = ("merchant_profiles", "customers", "payment_intents", "payments", "sessions",
                       "telemetry", "feedback", "features")

READ_ACTIONS = ("find", "listIndexes", "killCursors")
WRITE_ACTIONS = (*READ_ACTIONS, "insert", "update", "remove")


def _collections(database: str, names: tuple[str, ...], actions: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"resource": {"db": database, "collection": name}, "actions": list(actions)} for name in names]


def _list_collections(database: str) -> dict[str, Any]:
    # Lets a consumer check that the collection definitions are applied (MongoSink.prepare does).
    return {"resource": {"db": database, "collection": ""}, "actions": ["listCollections"]}


def roles(database: str = settings.MONGO_DATABASE) -> dict[str, list[dict[str, Any]]]:
    """Custom role name -> privileges (MongoDB's ``createRole`` shape), all defined in ``admin``."""
    return {
        "paydata_cdc_writer": [_list_collections(database),
                               *_collections(database, CDC_COLLECTIONS, WRITE_ACTIONS)],
        "paydata_ingest_writer": [_list_collections(database),
                                  *_collections(database, INGEST_COLLECTIONS, WRITE_ACTIONS)],
        "paydata_features_rw": [_list_collections(database),
                                *_collections(database, FEATURE_SOURCES, READ_ACTIONS),
                                *_collections(database, FEATURE_COLLECTIONS, WRITE_ACTIONS)],
        "paydata_analyst_read": [_list_collections(database),
                                 *_collections(database, ANALYST_COLLECTIONS, READ_ACTIONS)],
        "paydata_scorer_read": _collections(database, SCORER_COLLECTIONS, READ_ACTIONS),
    }


def user_roles(database: str = settings.MONGO_DATABASE) -> dict[str, list[dict[str, str]]]:
    """User name -> role bindings (``{role, db}``) for every consumer user."""
    admin = settings.MONGO_AUTH_SOURCE
    return {
        settings.MONGO_USERS[settings.MONGO_CONN_ID]: [{"role": "dbAdmin", "db": database},
                                                       {"role": "readWrite", "db": database}],
        settings.MONGO_USERS[settings.MONGO_CDC_CONN_ID]: [{"role": "paydata_cdc_writer", "db": admin}],
        settings.MONGO_USERS[settings.MONGO_INGEST_CONN_ID]: [{"role": "paydata_ingest_writer", "db": admin}],
        settings.MONGO_USERS[settings.MONGO_FEATURES_CONN_ID]: [{"role": "paydata_features_rw", "db": admin}],
        settings.MONGO_USERS[settings.MONGO_ANALYST_CONN_ID]: [{"role": "paydata_analyst_read", "db": admin}],
        settings.MONGO_USERS[settings.MONGO_SCORER_CONN_ID]: [{"role": "paydata_scorer_read", "db": admin}],
        # Backups read everything of paydata; the restore drill may create and drop its own scratch
        # database, and nothing else (a real restore into paydata is the administrator's job).
        settings.MONGO_USERS[settings.MONGO_BACKUP_CONN_ID]: [
            {"role": "read", "db": database},
            {"role": "readWrite", "db": settings.restore_drill_database(database)},
            {"role": "dbAdmin", "db": settings.restore_drill_database(database)},
        ],
    }


def _normalised_privileges(privileges: list[Mapping[str, Any]]) -> list[tuple]:
    return sorted(
        (priv["resource"].get("db"), priv["resource"].get("collection"), tuple(sorted(priv["actions"])))
        for priv in privileges
    )


def _normalised_roles(bindings: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return sorted((binding["role"], binding["db"]) for binding in bindings)


def ensure_access(
    admin_db: Any,
    passwords: Mapping[str, str],
    can_log_in: Callable[[str, str], bool],
    database: str = settings.MONGO_DATABASE,
) -> list[str]:
    """Create or correct the roles and users; return what changed (empty when nothing did).

    ``admin_db`` is the ``admin`` database of a client logged in with user-administration rights
    (``paydata_root``). ``passwords`` maps each user name of :func:`user_roles` to its password;
    ``can_log_in(user, password)`` reports whether that password authenticates today, so a
    password is only rewritten when it changed. Roles and users the file does not name are left
    alone. Raises KeyError for a missing password and pymongo errors from the server unchanged.
    """
    actions: list[str] = []
    stored_roles = {
        role["role"]: role
        for role in admin_db.command("rolesInfo", 1, showPrivileges=True).get("roles", [])
    }
    for name, privileges in roles(database).items():
        current = stored_roles.get(name)
        if current is None:
            admin_db.command("createRole", name, privileges=privileges, roles=[])
            actions.append(f"created role {name}")
        elif (_normalised_privileges(current.get("privileges", [])) != _normalised_privileges(privileges)
              or current.get("roles")):
            admin_db.command("updateRole", name, privileges=privileges, roles=[])
            actions.append(f"updated role {name}")
    stored_users = {user["user"]: user for user in admin_db.command("usersInfo", 1).get("users", [])}
    for user, bindings in user_roles(database).items():
        password = passwords[user]
        current = stored_users.get(user)
        if current is None:
            admin_db.command("createUser", user, pwd=password, roles=bindings,
                             mechanisms=["SCRAM-SHA-256"])
            actions.append(f"created user {user}")
            continue
        update: dict[str, Any] = {}
        if _normalised_roles(current.get("roles", [])) != _normalised_roles(bindings):
            update["roles"] = bindings
        if not can_log_in(user, password):
            update["pwd"] = password
        if update:
            admin_db.command("updateUser", user, **update)
            actions.append(f"updated {' and '.join(sorted(update))} of user {user}")
    return actions


def _compose_passwords() -> dict[str, str]:
    """Passwords from ``PAYDATA_MONGO_<JOB>_PASSWORD`` (compose); SystemExit naming a missing one."""
    passwords = {}
    for conn_id, user in settings.MONGO_USERS.items():
        variable = f"PAYDATA_MONGO_{user.removeprefix('paydata_').upper()}_PASSWORD"
        value = os.environ.get(variable, "")
        if not value:
            raise SystemExit(f"mongo_access: {variable} (password of {user}, connection {conn_id}) is not set")
        passwords[user] = value
    return passwords


def main(argv: list[str] | None = None) -> int:
    """``python -m paydata.mongo_access apply``: roles and users on the server of ``PAYDATA_MONGO_ROOT_URI``
    (a URI without credentials), logged in as ``paydata_root`` with ``PAYDATA_MONGO_ROOT_PASSWORD``.

    Used by compose's ``mongo-init``; the local stack calls :func:`ensure_access` itself.
    """
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure

    args = sys.argv[1:] if argv is None else argv
    if args != ["apply"]:
        print("usage: python -m paydata.mongo_access apply   (needs PAYDATA_MONGO_ROOT_URI and the "
              "PAYDATA_MONGO_*_PASSWORD variables)", file=sys.stderr)
        return 2
    root_uri = os.environ.get("PAYDATA_MONGO_ROOT_URI")
    root_password = os.environ.get("PAYDATA_MONGO_ROOT_PASSWORD")
    if not root_uri or not root_password:
        print("mongo_access: PAYDATA_MONGO_ROOT_URI and PAYDATA_MONGO_ROOT_PASSWORD must be set", file=sys.stderr)
        return 2
    passwords = _compose_passwords()
    root = MongoClient(root_uri, username=ROOT_USER, password=root_password,
                       authSource=settings.MONGO_AUTH_SOURCE, serverSelectionTimeoutMS=30000)

    def can_log_in(user: str, password: str) -> bool:
        try:
            with MongoClient(root_uri, username=user, password=password, authSource=settings.MONGO_AUTH_SOURCE,
                             serverSelectionTimeoutMS=10000) as client:
                client.admin.command("ping")
                client.admin.command("connectionStatus")
            return True
        except OperationFailure:
            return False

    try:
        for action in ensure_access(root[settings.MONGO_AUTH_SOURCE], passwords, can_log_in) or ["nothing to change"]:
            print(f"mongo_access: {action}")
    finally:
        root.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
