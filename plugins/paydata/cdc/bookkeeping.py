"""A bookkeeping table of change capture in the warehouse (confirm ledger, dead letters).

One autocommit connection, opened on first use and reopened after it closed; the table is created
on first write, under the same advisory lock as the staging sink's DDL (``CREATE ... IF NOT
EXISTS`` races between concurrent runs otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg2 import sql

from paydata.cdc.model import STAGING_SCHEMA
from paydata.sql import load_sql


class WarehouseBookkeeping:
    """Base of a store kept in one table of the warehouse's staging schema; SQL in ``include/sql/<folder>``."""

    sql_folder = ""
    create_statement = ""
    exists_statement = ""

    def __init__(self, connect: Callable[[], Any], schema: str = STAGING_SCHEMA) -> None:
        self._connect = connect
        self._schema = schema
        self._conn: Any = None
        self._prepared = False

    def _statement(self, name: str) -> sql.Composed:
        return sql.SQL(load_sql(f"{self.sql_folder}/{name}.sql").strip()).format(schema=sql.Identifier(self._schema))

    def _connection(self):
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
            self._conn.autocommit = True
            self._prepared = False
        return self._conn

    def _exists(self) -> bool:
        with self._connection().cursor() as cursor:
            cursor.execute(sql.SQL(load_sql(f"{self.sql_folder}/{self.exists_statement}.sql")), {"schema": self._schema})
            return bool(cursor.fetchone()[0])

    def _prepare(self) -> None:
        if self._prepared:
            return
        if self._exists():  # defined by the migrate step: the loader may not run DDL
            self._prepared = True
            return
        conn = self._connection()
        conn.autocommit = False
        try:
            with conn.cursor() as cursor:
                cursor.execute(load_sql("warehouse/queries/staging/prepare_lock.sql"))
                cursor.execute(sql.SQL(load_sql("warehouse/queries/staging/create_schema.sql").strip()).format(
                    schema=sql.Identifier(self._schema)))
                cursor.execute(self._statement(self.create_statement))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.autocommit = True
        self._prepared = True

    def define(self) -> None:
        """Create the table if it is missing (the migrate step, as the warehouse owner)."""
        self._prepare()

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None
