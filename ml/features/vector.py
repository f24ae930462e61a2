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

Derived features and the model's input vector: :class:`ModelInputs` computes them from such a row
in plain Python, the one-row twin of training's :func:`ml.training.data.model_matrix` (pandas, whole
frames); a test holds both equal on every offline row and on generated rows with missing values.
A scorer builds one charge's inputs in microseconds this way, where a one-row DataFrame costs
milliseconds.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ml.features.definitions import Aggregate, Definitions
from ml.features.online import entity_document_id
from ml.features.sessions import encode_signals, session_signals

MERCHANT_LOOKUP = "merchant_lookup"
# What the SQL of each aggregation returns over no rows (include/sql/warehouse/queries/features/fragments.sql).
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


def _numeric(value: Any) -> float:
    """One value as ``pd.to_numeric(..., errors="coerce")`` reads it: NaN when it is not a number."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _known(value: Any) -> bool:
    """``pd.notna`` of one value."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _ratio(numerator: Any, denominator: Any) -> float:
    top, bottom = _numeric(numerator), _numeric(denominator)
    return math.nan if bottom == 0 or math.isnan(bottom) else top / bottom


def _not_equal(left: Any, right: Any) -> float:
    return float(left != right) if _known(left) and _known(right) else math.nan


def _is_zero(value: Any) -> float:
    number = _numeric(value)
    return math.nan if math.isnan(number) else float(number == 0)


_DERIVED = {"ratio": _ratio, "not_equal": _not_equal, "is_zero": _is_zero}


class ModelInputs:
    """The model's inputs (``model_features``, in order, float64 with NaN for missing) of rows of
    stored features, computed once per definitions: the derived features of each row in the
    definitions' order, as :func:`ml.training.data.add_derived` computes them for a frame."""

    def __init__(self, definitions: Definitions):
        self.features = tuple(definitions.model_features)
        self.derived = tuple((item["name"], _DERIVED[item["op"]], tuple(item["args"])) for item in definitions.derived)

    def values(self, row: Mapping[str, Any]) -> list[float]:
        """One row's inputs as floats (a value that is not a number raises, as ``astype(float)``)."""
        full = dict(row)
        for name, operation, args in self.derived:
            full[name] = operation(*(full.get(arg) for arg in args))
        return [math.nan if full.get(name) is None else float(full[name]) for name in self.features]

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Rows x ``features``, float64 (C order: what a model's ``predict_proba`` takes as is)."""
        return np.array([self.values(row) for row in rows], dtype=np.float64).reshape(len(rows), len(self.features))
