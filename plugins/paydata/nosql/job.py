"""The ingest as the DAG and the command line run it: connections from ``paydata.settings``.

The ingest writes through the ``paydata_mongo_ingest`` connection (``settings.MONGO_INGEST_CONN_ID``)
and only into ``sessions``, ``telemetry``, ``feedback``, ``app_logs``, ``quarantine`` and
``ingest_files``; collection definitions are applied with the platform connection
(``paydata_mongo``). The known customers' names and phones are read from OLTP as the application
role (``paydata_oltp_app``: SELECT on ``customer`` and the audit function, no owner rights),
decrypted with the key ring of the environment, and the bulk read leaves one audit row per run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from paydata import settings
from paydata.nosql import hygiene, ledger
from paydata.nosql.loader import IngestReport, ingest_files, landing_files

DEFAULT_RETENTION_HOURS = 24


class IngestRefused(RuntimeError):
    """At least one landing file was refused (its name was ingested before with another checksum)."""


def _database(conn_id: str):
    return settings.mongo_database(conn_id)


def prepare() -> list[str]:
    """Apply the collection definitions (validators, indexes; idempotent)."""
    from paydata.nosql.definitions import apply_definitions

    database = _database(settings.MONGO_CONN_ID)
    try:
        return apply_definitions(database)
    finally:
        database.client.close()


def safeguard_from_oltp():
    """A :class:`Safeguard` with the environment's token key and the OLTP customers' names and phones."""
    from paydata.crypto import default_tokeniser
    from paydata.nosql.scrub import KnownValues, Safeguard

    tokeniser = default_tokeniser()
    conn = settings.pg_connect(settings.OLTP_APP_CONN_ID)
    try:
        known = KnownValues.from_oltp(conn, tokeniser)
    finally:
        conn.close()
    return Safeguard(tokeniser, known)


def run(landing_dir: Path, batch_keys: list[str] | None = None) -> dict[str, Any]:
    """Ingest the landing files (of ``batch_keys`` if given); return the report as a dict.

    Every other file is ingested before a refused one fails the run with :class:`IngestRefused`.
    """
    report: IngestReport
    paths = landing_files(Path(landing_dir), batch_keys=batch_keys)
    database = _database(settings.MONGO_INGEST_CONN_ID)
    try:
        report = ingest_files(database, Path(landing_dir), paths, safeguard_from_oltp())
    finally:
        database.client.close()
    if report.refused:
        raise IngestRefused(
            f"refused {len(report.refused)} landing file(s) whose names were ingested before with another "
            f"checksum: {', '.join(report.refused)}; the other files were ingested ({report.totals()})"
        )
    return report.as_dict()


def reconcile(names: list[str]) -> dict[str, Any]:
    """Check lines = loaded + quarantined + duplicates for the named files in the ledger.

    Raises :class:`ledger.ReconciliationError` naming every file that does not add up, or if a
    named file has no ``loaded`` entry.
    """
    database = _database(settings.MONGO_INGEST_CONN_ID)
    try:
        found = {entry.name: entry for entry in ledger.entries(database, names)}
    finally:
        database.client.close()
    problems = [f"{name}: not in the ledger as loaded" for name in names
                if name not in found or found[name].status != "loaded"]
    problems += [f"{e.name}: {e.lines} lines != {e.loaded} loaded + {e.quarantined} quarantined + "
                 f"{e.duplicates} duplicates" for e in found.values() if not e.reconciles]
    if problems:
        raise ledger.ReconciliationError("; ".join(problems))
    return {"files": len(found), "lines": sum(e.lines for e in found.values()),
            "loaded": sum(e.loaded for e in found.values()),
            "quarantined": sum(e.quarantined for e in found.values()),
            "duplicates": sum(e.duplicates for e in found.values())}


def clean_landing(landing_dir: Path, retention_hours: float, now: dt.datetime) -> dict[str, Any]:
    """Remove landing files ingested at least ``retention_hours`` before ``now``."""
    database = _database(settings.MONGO_INGEST_CONN_ID)
    try:
        removed = hygiene.remove_ingested(database, Path(landing_dir), dt.timedelta(hours=retention_hours), now)
    finally:
        database.client.close()
    return {"removed": len(removed), "retention_hours": retention_hours}
