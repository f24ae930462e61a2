"""OLAP marts of the warehouse, built incrementally from the CDC staging layer.

Public API: :func:`build` (incremental or full rebuild), :func:`check_quality`,
:func:`refresh_aggregates`, :func:`reconcile`, :func:`freshness`, :func:`ensure_marts`,
:func:`label_charges` (fraud labels with a maturity window).
"""

from paydata.warehouse.build import BuildInputError, StagingBehindError, build
from paydata.warehouse.labels import label_charges
from paydata.warehouse.quality import QualityCheckError, check_quality
from paydata.warehouse.reconcile import ReconciliationError, reconcile
from paydata.warehouse.schema import ensure_marts, freshness, refresh_aggregates

__all__ = [
    "BuildInputError",
    "QualityCheckError",
    "ReconciliationError",
    "StagingBehindError",
    "build",
    "check_quality",
    "ensure_marts",
    "freshness",
    "label_charges",
    "reconcile",
    "refresh_aggregates",
]
