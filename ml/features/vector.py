"""One charge's feature values at scoring time: the online documents read the way the offline
store computes them.

The offline table holds, per charge, aggregates over events strictly before ``created_at``, the
merchant version valid just before it, the request attributes (``request`` in the definitions)
and the session signals. At scoring time the same values come from:

* **aggregates**: the entity's online document (``ml.features.online``), computed by the same SQL
  at ``as_of``. :func:`aggregate_value` reads one value at the charge's time ``at``: a value whose
  ``expires_at`` is past describes a window that no longer holds any of the events it counted, so
  it reads as an entity without history (what the SQL gives for no rows: ``count``/``sum``/
  ``count_distinct`` 0, ``avg``/``seconds_since_last`` NULL); ``seconds_since_last`` grows by the
  time elapsed since ``as_of`` and becomes NULL past its window. An entity with no document (never
  seen, or a NULL key) reads as no history too, exactly as the offline LATERAL join of no rows.
* **merchant lookups**: the ``merchant_lookup`` document; without one, the lookup's default
  (the SQL's ``coalesce(..., default)``).
* **request values**: :func:`request_values`, the Python twin of the SQL's request columns (the
  hour is the UTC hour of the charge time, like ``fragments.sql``'s ``request_hour_utc``); a test
  compares both on every offline row.
* **session signals**: :func:`ml.features.sessions.session_signals`, the function the offline
  build calls.

Derived features are then added by :func:`ml.training.data.add_derived`, as in training.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from ml.features.definitions import Aggregate, Definitions
from ml.features.online import entity_document_id
from ml.features.sessions import encode_signals, session_signals

MERCHANT_LOOKUP = "merchant_lookup"
# What the SQL of each aggregation returns over no rows (include/sql/features/fragments.sql).
EMPTY_VALUE = {"count": 0.0, "sum": 0.0, "count_distinct": 0.0, "avg": None, "seconds_since_last": None}


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def document_ids(definitions: Definitions, attributes: Mapping[str, Any]) -> dict[str, str]:
    """Entity name -> online document id for the keys present in ``attributes`` (an entity with a
    missing key part has no document, as its offline join matches no rows)."""
    ids = {}
    for entity in definitions.aggregate_entities:
        key = tuple(attributes.get(column) for column in definitions.entities[entity])
        if all(part is not None and part != "" for part in key):
            ids[entity] = entity_document_id(entity, key)
    if definitions.lookups and attributes.get("merchant_id") is not None:
        ids[MERCHANT_LOOKUP] = entity_document_id(MERCHANT_LOOKUP, (attributes["merchant_id"],))
    return ids


def aggregate_value(aggregate: Aggregate, document: Mapping[str, Any] | None, at: dt.datetime,
                    window: dt.timedelta) -> float | None:
    """The aggregate at time ``at`` from its entity's online document (see the module doc)."""
    if document is None:
        return EMPTY_VALUE[aggregate.aggregation]
    value = (document.get("values") or {}).get(aggregate.name)
    expires = (document.get("expires_at") or {}).get(aggregate.name)
    if expires is not None and _aware(at) >= _aware(expires):
        return EMPTY_VALUE[aggregate.aggregation]
    if value is None:
        return None
    if aggregate.aggregation == "seconds_since_last" and document.get("as_of") is not None:
        elapsed = max(0.0, (_aware(at) - _aware(document["as_of"])).total_seconds())
        value = float(value) + elapsed
        return None if value > window.total_seconds() else value
    return float(value)


def request_values(definitions: Definitions, attributes: Mapping[str, Any], at: dt.datetime) -> dict[str, Any]:
    """The charge's own attributes as the offline table stores them (``request`` in the definitions)."""
    values = {}
    for item in definitions.request:
        if item.get("transform") == "hour_utc":
            values[item["name"]] = float(_aware(at).astimezone(dt.UTC).hour)
        else:
            value = attributes.get(item["column"])
            values[item["name"]] = float(value) if isinstance(value, int | float) else value
    return values


def feature_row(definitions: Definitions, documents: Mapping[str, Mapping[str, Any] | None],
                attributes: Mapping[str, Any], at: dt.datetime,
                session_documents: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Every stored (non-derived) feature of one charge at ``at``: ``documents`` maps entity name to
    its online document (None or absent: no document)."""
    row: dict[str, Any] = {}
    for aggregate in definitions.aggregates:
        row[aggregate.name] = aggregate_value(aggregate, documents.get(aggregate.entity), at,
                                              definitions.windows[aggregate.window])
    lookup_document = documents.get(MERCHANT_LOOKUP) or {}
    for lookup in definitions.lookups:
        value = (lookup_document.get("values") or {}).get(lookup.name)
        row[lookup.name] = value if value is not None else (
            None if lookup.default is None else float(lookup.default))
    row.update(request_values(definitions, attributes, at))
    row.update(encode_signals(definitions, session_signals(list(session_documents), at)))
    return row
