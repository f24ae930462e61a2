"""Mongo collection definitions and example queries, kept as data under ``include/nosql``.

* ``include/nosql/collections.json``: per collection an optional ``$jsonSchema`` validator and a
  list of indexes (``name``, ``keys`` as ``[[field, 1|-1], ...]``, optional ``unique``,
  ``sparse``, ``partialFilterExpression``). :func:`apply_definitions` creates what is missing,
  updates validators with ``collMod`` and rebuilds an index whose stored definition differs
  from the file; running it twice changes nothing the second time.
* ``include/nosql/queries/<name>.json``: ``collection``, ``params`` (name -> ``string`` | ``int``
  | ``number`` | ``date``) and an aggregation ``pipeline`` in which ``{"$param": "<name>"}``
  marks where a bound value goes. :func:`run_query` substitutes values structurally (never by
  text) and checks their types, so a parameter cannot inject query operators.

Collections filled by the landing ingest take their validators from the record schemas
(``include/nosql/records.json``, see :mod:`paydata.nosql.records`): ``"validator": "derived"``.

Command line: ``python -m paydata.nosql apply`` (as the administrator, connection ``paydata_mongo``) /
``python -m paydata.nosql run <name> key=value ...`` (as the read-only analyst,
``paydata_mongo_analyst``) / ``python -m paydata.nosql ingest [landing dir]`` (as the ingest writer).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo.database import Database
from pymongo.errors import CollectionInvalid

from paydata.settings import REPO_ROOT

NOSQL_DIR = REPO_ROOT / "include" / "nosql"
COLLECTIONS_FILE = NOSQL_DIR / "collections.json"
QUERIES_DIR = NOSQL_DIR / "queries"

PARAM_TYPES = ("string", "int", "number", "date")
_INDEX_OPTIONS = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds")


class NoSqlDefinitionError(ValueError):
    """A definition or query file is malformed, or a query was called with bad parameters."""


def load_definitions(path: Path = COLLECTIONS_FILE) -> dict[str, dict[str, Any]]:
    """Collection name -> definition from ``collections.json``; raises NoSqlDefinitionError if malformed."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NoSqlDefinitionError(f"cannot read {path}: {exc}") from exc
    collections = data.get("collections") if isinstance(data, dict) else None
    if not isinstance(collections, dict) or not collections:
        raise NoSqlDefinitionError(f"{path}: expected an object with a non-empty 'collections' object")
    for name, definition in collections.items():
        if not isinstance(definition, dict):
            raise NoSqlDefinitionError(f"{path}: collection {name!r} must be an object")
        validator = definition.get("validator")
        if validator is not None and validator != "derived" and not (isinstance(validator, dict) and validator):
            raise NoSqlDefinitionError(
                f"{path}: collection {name!r} validator must be a non-empty object or \"derived\""
            )
        for index in definition.get("indexes", []):
            _check_index(path, name, index)
    return collections


def _check_index(path: Path, collection: str, index: Any) -> None:
    keys = index.get("keys") if isinstance(index, dict) else None
    if not isinstance(index, dict) or not isinstance(index.get("name"), str) or not keys:
        raise NoSqlDefinitionError(f"{path}: {collection} index needs a 'name' and non-empty 'keys': {index!r}")
    for key in keys:
        if not (isinstance(key, list) and len(key) == 2 and isinstance(key[0], str) and key[1] in (1, -1)):
            raise NoSqlDefinitionError(f"{path}: {collection}.{index['name']} key {key!r} is not [field, 1|-1]")
    unknown = set(index) - {"name", "keys", *_INDEX_OPTIONS}
    if unknown:
        raise NoSqlDefinitionError(f"{path}: {collection}.{index['name']} has unknown options {sorted(unknown)}")


def apply_definitions(database: Database, definitions: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Bring ``database`` in line with the definitions; return what changed (empty when nothing did).

    Creates missing collections (with validator), sets a changed validator, creates missing
    indexes and drops/recreates an index of the same name whose keys or options differ.
    Indexes not in the file are left alone. Raises pymongo errors from the server unchanged.
    """
    from paydata.nosql.records import with_derived_validators

    definitions = with_derived_validators(load_definitions() if definitions is None else definitions)
    actions: list[str] = []
    existing = {info["name"]: info.get("options", {}) for info in database.list_collections()}
    for name, definition in definitions.items():
        validator = definition.get("validator")
        if name not in existing:
            try:
                if validator:
                    database.create_collection(name, validator=validator)
                else:
                    database.create_collection(name)
                actions.append(f"created collection {name}")
            except CollectionInvalid:  # created concurrently: fall through to the validator check
                existing[name] = {}
        if name in existing and validator and existing[name].get("validator") != validator:
            database.command("collMod", name, validator=validator)
            actions.append(f"set validator of {name}")
        actions += _apply_indexes(database, name, definition.get("indexes", []))
    return actions


def _apply_indexes(database: Database, collection: str, indexes: list[dict[str, Any]]) -> list[str]:
    actions = []
    stored = {info["name"]: info for info in database[collection].list_indexes()}
    for index in indexes:
        keys = [(field, direction) for field, direction in index["keys"]]
        options = {option: index[option] for option in _INDEX_OPTIONS if option in index}
        current = stored.get(index["name"])
        if current is not None:
            same_keys = [(field, int(direction)) for field, direction in current["key"].items()] == keys
            same_options = all(current.get(option) == options.get(option) for option in _INDEX_OPTIONS)
            if same_keys and same_options:
                continue
            database[collection].drop_index(index["name"])
            actions.append(f"dropped changed index {collection}.{index['name']}")
        database[collection].create_index(keys, name=index["name"], **options)
        actions.append(f"created index {collection}.{index['name']}")
    return actions


def query_names() -> list[str]:
    """Names of the example queries in ``include/nosql/queries``."""
    return sorted(path.stem for path in QUERIES_DIR.glob("*.json"))


def load_query(name: str) -> dict[str, Any]:
    """The parsed query file ``<name>.json``; raises NoSqlDefinitionError if unknown or malformed."""
    if name not in query_names():
        raise NoSqlDefinitionError(f"unknown query {name!r}; known queries: {query_names()}")
    path = QUERIES_DIR / f"{name}.json"
    try:
        query = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NoSqlDefinitionError(f"{path}: {exc}") from exc
    if not isinstance(query.get("collection"), str) or not isinstance(query.get("pipeline"), list):
        raise NoSqlDefinitionError(f"{path}: needs 'collection' (string) and 'pipeline' (list)")
    params = query.setdefault("params", {})
    bad = {param: kind for param, kind in params.items() if kind not in PARAM_TYPES}
    if bad:
        raise NoSqlDefinitionError(f"{path}: parameter types must be one of {PARAM_TYPES}, got {bad}")
    return query


def bind(pipeline: Any, values: dict[str, Any]) -> Any:
    """``pipeline`` with every ``{"$param": name}`` replaced by ``values[name]`` (structurally)."""
    if isinstance(pipeline, dict):
        if set(pipeline) == {"$param"}:
            name = pipeline["$param"]
            if name not in values:
                raise NoSqlDefinitionError(f"pipeline uses parameter {name!r} that the query does not declare")
            return values[name]
        return {key: bind(value, values) for key, value in pipeline.items()}
    if isinstance(pipeline, list):
        return [bind(item, values) for item in pipeline]
    return pipeline


def _check_value(query_name: str, param: str, kind: str, value: Any) -> Any:
    expected = {"string": (str,), "int": (int,), "number": (int, float), "date": (datetime,)}[kind]
    if isinstance(value, bool) or not isinstance(value, expected):
        raise NoSqlDefinitionError(
            f"query {query_name!r} parameter {param!r} must be {kind}, got {type(value).__name__}"
        )
    if kind == "date" and value.tzinfo is None:
        raise NoSqlDefinitionError(f"query {query_name!r} parameter {param!r} must be a timezone-aware datetime")
    return value


def run_query(database: Database, name: str, **params: Any) -> list[dict[str, Any]]:
    """Run the example query ``name`` with ``params``; returns the result documents.

    Raises NoSqlDefinitionError for an unknown query, a missing or unexpected parameter, or a
    value of the wrong type.
    """
    query = load_query(name)
    declared: dict[str, str] = query["params"]
    missing = sorted(set(declared) - set(params))
    extra = sorted(set(params) - set(declared))
    if missing or extra:
        raise NoSqlDefinitionError(
            f"query {name!r} takes parameters {sorted(declared)}; missing {missing}, unexpected {extra}"
        )
    values = {param: _check_value(name, param, declared[param], params[param]) for param in declared}
    return list(database[query["collection"]].aggregate(bind(query["pipeline"], values)))


def _parse_cli_value(kind: str, text: str) -> Any:
    if kind == "int":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "date":
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return text


def main(argv: list[str] | None = None) -> int:
    from paydata import settings

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in {"apply", "run", "list", "ingest"}:
        print("usage: python -m paydata.nosql apply | list | run <query> key=value ... | ingest [landing dir]",
              file=sys.stderr)
        return 2
    if args[0] == "ingest":
        from paydata.generator.landing import default_landing_dir
        from paydata.nosql import job

        landing_dir = Path(args[1]) if len(args) > 1 else default_landing_dir()
        job.prepare()
        report = job.run(landing_dir)
        print(json.dumps({**report, "reconciled": job.reconcile(report["file_names"])}, indent=2))
        return 0
    # Definitions are the administrator's job; the example queries run as the read-only analyst.
    database = settings.mongo_database(settings.MONGO_CONN_ID if args[0] == "apply" else settings.MONGO_ANALYST_CONN_ID)
    if args[0] == "apply":
        for action in apply_definitions(database) or ["nothing to change"]:
            print(action)
    elif args[0] == "list":
        print("\n".join(query_names()))
    else:
        if len(args) < 2:
            print("usage: python -m paydata.nosql run <query> key=value ...", file=sys.stderr)
            return 2
        declared = load_query(args[1])["params"]
        params = {}
        for item in args[2:]:
            key, sep, text = item.partition("=")
            if not sep or key not in declared:
                print(f"bad parameter {item!r}; expected one of {sorted(declared)} as key=value", file=sys.stderr)
                return 2
            params[key] = _parse_cli_value(declared[key], text)
        for document in run_query(database, args[1], **params):
            print(json.dumps(document, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
