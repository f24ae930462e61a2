"""Load and check the feature definitions (``ml/features/definitions/*.yaml``).

A definition file declares entities, sources, windows, windowed aggregates, SCD2 lookups, request
and session signals, derived features, the model's inputs and the analyst's rules baseline. It is
data: the SQL builder (:mod:`ml.features.sql_builder`), the online refresh and the trainer read it,
and its :func:`definitions_hash` is logged with every training run, so a model names the exact
definitions it was trained on. :func:`load_definitions` raises ``DefinitionError`` naming the
offending entry; nothing is half-loaded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFINITIONS_DIR = Path(__file__).resolve().parent / "definitions"
DEFAULT_DEFINITIONS = "fraud_charge"

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
AGGREGATIONS = {"count", "sum", "avg", "count_distinct", "seconds_since_last"}
FILTERS = {"declined", "authorised", "fraud_dispute"}
# Columns each warehouse source offers to aggregates (identifiers are checked against these).
SOURCE_COLUMNS = {
    "charge_event": {"amount_usd", "device_id", "card_fingerprint", "ip_address_token", "customer_id",
                     "merchant_id", "created_at"},
    "dispute_event": {"amount_usd", "customer_id", "card_fingerprint", "merchant_id", "opened_at"},
}
SOURCE_ENTITY_COLUMNS = {
    "charge_event": {"customer_id", "card_fingerprint", "device_id", "ip_address_token", "merchant_id"},
    "dispute_event": {"customer_id", "card_fingerprint", "merchant_id"},
}
SESSION_SIGNALS = {"events_before", "seconds_since_start", "ip_country_code", "device_type"}
REQUEST_TRANSFORMS = {None, "hour_utc"}
REQUEST_COLUMNS = {"amount_usd", "created_at", "card_country_code"}
DERIVED_OPS = {"ratio": 2, "not_equal": 2, "is_zero": 1}
RULE_OPS = {">=", ">", "<", "<=", "=="}
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


class DefinitionError(ValueError):
    """The definitions are malformed; the message names the entry."""


@dataclass(frozen=True)
class Aggregate:
    name: str
    entity: str
    source: str
    aggregation: str
    window: str
    ttl: dt.timedelta
    column: str | None = None
    filter: str | None = None


@dataclass(frozen=True)
class Lookup:
    name: str
    entity: str
    column: str
    encoding: dict[str, float]
    default: float | None = None


@dataclass(frozen=True)
class Definitions:
    name: str
    version: int
    offline_table: str
    online_collection: str
    entities: dict[str, tuple[str, ...]]
    windows: dict[str, dt.timedelta]
    aggregates: tuple[Aggregate, ...]
    lookups: tuple[Lookup, ...]
    request: tuple[dict, ...]
    session: tuple[dict, ...]
    derived: tuple[dict, ...]
    model_features: tuple[str, ...]
    baseline_rules: tuple[dict, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    def aggregates_of(self, entity: str) -> tuple[Aggregate, ...]:
        return tuple(a for a in self.aggregates if a.entity == entity)

    @property
    def aggregate_entities(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.entity for a in self.aggregates))

    @property
    def stored_columns(self) -> tuple[str, ...]:
        """Columns of the offline table besides the key: every non-derived feature, in order."""
        return (tuple(a.name for a in self.aggregates) + tuple(lk.name for lk in self.lookups)
                + tuple(r["name"] for r in self.request) + tuple(s["name"] for s in self.session))

    @property
    def category_columns(self) -> frozenset[str]:
        kinds = [*self.request, *self.session]
        return frozenset(item["name"] for item in kinds if item.get("kind") == "category"
                         and not item.get("encoding"))


def parse_duration(text: str) -> dt.timedelta:
    """``"1 hour"``, ``"24 hours"``, ``"7 days"``, ``"30 minutes"`` -> timedelta."""
    match = re.fullmatch(r"\s*(\d+)\s+(minute|hour|day)s?\s*", str(text))
    if not match:
        raise DefinitionError(f"duration {text!r}: expected '<n> minutes|hours|days'")
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise DefinitionError(f"{where}: {value!r} is not a lowercase identifier")
    return value


def _aggregate(item: dict, entities: dict, windows: dict) -> Aggregate:
    name = _name(item.get("name"), "aggregate")
    where = f"aggregate {name}"
    entity, source, kind = item.get("entity"), item.get("source"), item.get("aggregation")
    if entity not in entities:
        raise DefinitionError(f"{where}: unknown entity {entity!r}")
    if source not in SOURCE_COLUMNS:
        raise DefinitionError(f"{where}: source {source!r} cannot be aggregated")
    missing = set(entities[entity]) - SOURCE_ENTITY_COLUMNS[source]
    if missing:
        raise DefinitionError(f"{where}: source {source} has no entity column {sorted(missing)}")
    if kind not in AGGREGATIONS:
        raise DefinitionError(f"{where}: aggregation {kind!r} not in {sorted(AGGREGATIONS)}")
    column = item.get("column")
    if kind in {"sum", "avg", "count_distinct"} and column not in SOURCE_COLUMNS[source]:
        raise DefinitionError(f"{where}: {kind} needs a column of {source}, got {column!r}")
    if item.get("filter") not in FILTERS | {None}:
        raise DefinitionError(f"{where}: filter {item.get('filter')!r} not in {sorted(FILTERS)}")
    if item.get("window") not in windows:
        raise DefinitionError(f"{where}: window {item.get('window')!r} is not declared")
    ttl = item.get("ttl", item["window"])
    ttl = windows[ttl] if ttl in windows else parse_duration(ttl)
    return Aggregate(name, entity, source, kind, item["window"], ttl, column, item.get("filter"))


def _validate(raw: dict) -> Definitions:
    entities = {}
    for entity, spec in (raw.get("entities") or {}).items():
        columns = tuple(_name(c, f"entity {entity}") for c in spec.get("columns", []))
        if not columns:
            raise DefinitionError(f"entity {entity}: no columns")
        entities[_name(entity, "entity")] = columns
    windows = {label: parse_duration(text) for label, text in (raw.get("windows") or {}).items()}
    aggregates = tuple(_aggregate(item, entities, windows) for item in raw.get("aggregates") or [])
    lookups = []
    for item in raw.get("lookups") or []:
        name = _name(item.get("name"), "lookup")
        if item.get("entity") != "merchant" or item.get("column") not in {"risk_tier_code", "mcc"}:
            raise DefinitionError(f"lookup {name}: only merchant risk_tier_code / mcc can be looked up")
        lookups.append(Lookup(name, "merchant", item["column"],
                              {str(k): float(v) for k, v in (item.get("encoding") or {}).items()},
                              item.get("default")))
    request = tuple(raw.get("request") or [])
    for item in request:
        if item.get("column") not in REQUEST_COLUMNS or item.get("transform") not in REQUEST_TRANSFORMS:
            raise DefinitionError(f"request {item.get('name')}: unknown column or transform")
        _name(item.get("name"), "request")
    session = tuple(raw.get("session") or [])
    for item in session:
        if item.get("signal") not in SESSION_SIGNALS:
            raise DefinitionError(f"session {item.get('name')}: signal not in {sorted(SESSION_SIGNALS)}")
        _name(item.get("name"), "session")
    known = ([a.name for a in aggregates] + [lk.name for lk in lookups] + [r["name"] for r in request]
             + [s["name"] for s in session])
    derived = tuple(raw.get("derived") or [])
    for item in derived:
        name = _name(item.get("name"), "derived")
        if DERIVED_OPS.get(item.get("op")) != len(item.get("args") or []):
            raise DefinitionError(f"derived {name}: op {item.get('op')!r} with args {item.get('args')!r}")
        unknown = [a for a in item["args"] if a not in known]
        if unknown:
            raise DefinitionError(f"derived {name}: unknown inputs {unknown}")
        known.append(name)
    if len(set(known)) != len(known):
        raise DefinitionError(f"feature names repeat: {sorted(n for n in set(known) if known.count(n) > 1)}")
    model_features = tuple(raw.get("model_features") or [])
    unknown = [f for f in model_features if f not in known]
    if unknown or not model_features:
        raise DefinitionError(f"model_features: unknown or empty {unknown}")
    rules = tuple(raw.get("baseline_rules") or [])
    for rule in rules:
        if rule.get("feature") not in known or rule.get("op") not in RULE_OPS:
            raise DefinitionError(f"baseline rule {rule!r}: unknown feature or operator")
    return Definitions(
        name=_name(raw.get("name"), "name"), version=int(raw.get("version", 1)),
        offline_table=_name(raw.get("offline_table"), "offline_table"),
        online_collection=_name(raw.get("online_collection"), "online_collection"),
        entities=entities, windows=windows, aggregates=aggregates, lookups=tuple(lookups),
        request=request, session=session, derived=derived, model_features=model_features,
        baseline_rules=rules, raw=raw)


def load_definitions(name: str = DEFAULT_DEFINITIONS, directory: Path = DEFINITIONS_DIR) -> Definitions:
    """Parse and check ``<directory>/<name>.yaml``."""
    path = directory / f"{name}.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise DefinitionError(f"no feature definitions {path}") from exc
    if not isinstance(raw, dict):
        raise DefinitionError(f"{path}: expected a mapping")
    return _validate(raw)


def definitions_from_dict(raw: dict) -> Definitions:
    return _validate(raw)


def definitions_hash(definitions: Definitions) -> str:
    """SHA-256 of the canonical JSON of the definitions (key order and comments do not matter)."""
    canonical = json.dumps(definitions.raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
