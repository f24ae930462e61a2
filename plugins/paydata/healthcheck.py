"""Platform health: prove each store is reachable the way pipelines reach it, and leave a trace.

Each check writes a heartbeat keyed by the Airflow run id, so rerunning a run rewrites its own
heartbeat instead of adding one (idempotent), and returns a small summary for XCom.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from paydata.sql import load_sql


class HealthCheckError(RuntimeError):
    """A store answered, but not the way the platform requires (for example without TLS)."""


def record_postgres_heartbeat(conn: Any, run_id: str, *, require_tls: bool) -> dict[str, Any]:
    """Upsert this run's heartbeat row through ``conn`` (any DB-API connection) and report TLS.

    Raises HealthCheckError when ``require_tls`` is set and the session is not encrypted: a
    connection that silently fell back to plaintext must fail the check, not pass it.
    """
    with conn.cursor() as cur:
        cur.execute(load_sql("cluster/queries/heartbeat/heartbeat_table.sql"))
        cur.execute(
            load_sql("cluster/queries/heartbeat/heartbeat_upsert.sql"),
            {"run_id": run_id, "checked_at": datetime.now(UTC)},
        )
        tls_version, server_version = cur.fetchone()
        cur.execute("SELECT current_database(), current_user")
        database, user = cur.fetchone()
    if require_tls and not tls_version:
        conn.rollback()
        raise HealthCheckError(f"connection to database {database!r} as {user!r} is not using TLS")
    conn.commit()
    return {"database": database, "user": user, "tls_version": tls_version, "server_version": server_version}


def record_mongo_heartbeat(database: Any, run_id: str) -> dict[str, Any]:
    """Upsert this run's heartbeat document into ``platform_heartbeat`` of a pymongo Database."""
    database.client.admin.command("ping")
    database["platform_heartbeat"].update_one(
        {"_id": run_id},
        {"$set": {"checked_at": datetime.now(UTC)}},
        upsert=True,
    )
    build = database.client.server_info()
    return {"database": database.name, "server_version": build.get("version")}


def check_mongo_login(client: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Prove a pymongo client is logged in as a user and that its connection options demand TLS.

    ``extra`` is the Airflow connection's extra. pymongo never falls back to plaintext once
    ``tls`` is set, so options asking for TLS with certificate checks mean the session is
    encrypted and the server verified. Raises HealthCheckError when the client is not
    authenticated, or when the options do not ask for TLS or switch certificate checks off.
    """
    status = client.admin.command("connectionStatus")
    users = [f"{user['user']}@{user['db']}" for user in status.get("authInfo", {}).get("authenticatedUsers", [])]
    if not users:
        raise HealthCheckError("the Mongo connection is not authenticated: set its login and password")
    if not any(str(extra.get(key, "")).lower() == "true" for key in ("tls", "ssl")):
        raise HealthCheckError(f"the Mongo connection of {users[0]} does not ask for TLS (extra tls=true)")
    insecure = [key for key in ("allow_insecure", "tlsInsecure", "tlsAllowInvalidCertificates",
                                "tlsAllowInvalidHostnames") if str(extra.get(key, "")).lower() == "true"]
    if insecure:
        raise HealthCheckError(f"the Mongo connection of {users[0]} switches certificate checks off ({insecure})")
    roles = [f"{role['role']}@{role['db']}" for role in status["authInfo"].get("authenticatedUserRoles", [])]
    return {"user": users[0], "roles": sorted(roles), "tls": True}
