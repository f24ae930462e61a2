"""MongoDB: collection definitions and example queries (:mod:`.definitions`), and the ingest of the
NoSQL landing files (record schemas :mod:`.records`, safety :mod:`.scrub`, document model
:mod:`.documents`, file ledger :mod:`.ledger`, loader :mod:`.loader`, landing hygiene and erasure
:mod:`.hygiene`). See ``docs/mongo.md``.
"""

from paydata.nosql.definitions import (
    COLLECTIONS_FILE,
    NOSQL_DIR,
    PARAM_TYPES,
    QUERIES_DIR,
    NoSqlDefinitionError,
    apply_definitions,
    bind,
    load_definitions,
    load_query,
    query_names,
    run_query,
)

__all__ = [
    "COLLECTIONS_FILE",
    "NOSQL_DIR",
    "PARAM_TYPES",
    "QUERIES_DIR",
    "NoSqlDefinitionError",
    "apply_definitions",
    "bind",
    "load_definitions",
    "load_query",
    "query_names",
    "run_query",
]
