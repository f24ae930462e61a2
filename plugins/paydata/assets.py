"""Airflow Asset URIs of the platform: the one place they are spelled.

Imported by DAG files at parse time, so it imports nothing heavy. Producers and consumers name an
Asset through these functions, never by a literal, so a renamed Asset cannot leave a consumer
waiting on a name nobody publishes.
"""

from __future__ import annotations

SCHEME = "paydata"


def cdc_staging(source: str) -> str:
    """Updated when a capture run of ``source`` applied changes to the warehouse staging layer."""
    return f"{SCHEME}://warehouse/staging/{source}"


def cdc_mongo(source: str) -> str:
    """Updated when a capture run of ``source`` applied changes to MongoDB."""
    return f"{SCHEME}://mongo/{source}"


def marts(table: str) -> str:
    """A marts table (or ``aggregates``) of the warehouse."""
    return f"{SCHEME}://warehouse/marts/{table}"
