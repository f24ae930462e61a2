"""The Postgres role matrix: which roles exist, who logs in as what, and through which connection.

Roles are cluster-wide, so they are created once by whoever owns the cluster (the local stack's
``bootstrap``, compose's ``init.sh``), never by a migration: schema owners have no CREATEROLE.
Migrations grant privileges on their own objects to these roles by name, and skip a role that
does not exist yet with a NOTICE (``paydata_apply_grants()``), so applying them to a bare
database still works. docs/security.md, *Roles and privileges*, has the whole matrix.

* **Group roles** (NOLOGIN) carry the privileges.
* **Login users** are members of one group each; jobs connect as a login user through its own
  Airflow connection. Tests make their own throwaway members of the same groups.
"""

from __future__ import annotations

from dataclasses import dataclass

# NOLOGIN group role -> what it is for (the privileges are granted by the migrations).
GROUP_ROLES = {
    "oltp_app": "the payment API's write path in OLTP, and the audit function",
    "warehouse_loader": "reads and writes the warehouse's staging and marts data (no DDL)",
    "analyst": "reads the marts and the analytics views; not staging, features or ml",
    "merchant_analyst": "reads the fact tables and merchant dimension, its own merchants' rows only",
    "ml": "reads the marts and the features; owns the data of its own schema ml",
    "auditor": "reads the audit log and its chain head, nothing else",
}


@dataclass(frozen=True)
class LoginUser:
    """A login role that is a member of ``group`` and reaches ``database`` through ``conn_id``."""

    name: str
    group: str
    database: str
    conn_id: str


LOGIN_USERS = (
    LoginUser("paydata_app", "oltp_app", "oltp", "paydata_oltp_app"),
    LoginUser("paydata_auditor", "auditor", "oltp", "paydata_oltp_auditor"),
    LoginUser("paydata_loader", "warehouse_loader", "warehouse", "paydata_warehouse_loader"),
    LoginUser("paydata_wh_analyst", "analyst", "warehouse", "paydata_warehouse_analyst"),
    LoginUser("paydata_ml", "ml", "warehouse", "paydata_warehouse_ml"),
)

# A login's connections to further databases of its group (one connection per database).
FURTHER_CONNECTIONS = (
    LoginUser("paydata_auditor", "auditor", "reference", "paydata_reference_auditor"),
)

# Databases each group may connect to (CONNECT is a database privilege, granted at bootstrap).
GROUP_DATABASES = {
    "oltp_app": ("oltp",),
    "auditor": ("oltp", "reference"),
    "warehouse_loader": ("warehouse",),
    "analyst": ("warehouse",),
    "merchant_analyst": ("warehouse",),
    "ml": ("warehouse",),
}

# Where the server has no pgaudit, statements of these groups are logged per database instead
# (``ALTER ROLE ... IN DATABASE ... SET log_statement``): every statement of the roles that read
# or write personal data or the audit trail, DDL of everybody (``ALTER DATABASE``).
STATEMENT_LOGGING = {
    ("oltp_app", "oltp"): "all",
    ("auditor", "oltp"): "all",
    ("auditor", "reference"): "all",
}
DATABASE_LOGGING = {"reference": "ddl", "oltp": "ddl"}
# With pgaudit: the classes logged in the databases holding personal data (session audit logging).
PGAUDIT_CLASSES = "read, write, role, ddl"
PGAUDIT_DATABASES = ("reference", "oltp")


def login_user(name: str) -> LoginUser:
    for user in LOGIN_USERS:
        if user.name == name:
            return user
    raise KeyError(f"no login user {name!r}; known: {', '.join(u.name for u in LOGIN_USERS)}")


def role_connections() -> dict[str, LoginUser]:
    """Connection id -> login user, for every least-privilege Postgres connection."""
    return {user.conn_id: user for user in (*LOGIN_USERS, *FURTHER_CONNECTIONS)}
