"""Encrypted backups with restore drills.

* :mod:`paydata.backup.stream` - chunked AES-256-GCM streaming format (per-backup data key
  wrapped by the backup KEK; truncation and reordering detected).
* :mod:`paydata.backup.sources` - ``pg_dump``/``pg_restore`` pipes, the Mongo export/import,
  row counts and checksums.
* :mod:`paydata.backup.catalog` - the backup folder, manifests, retention.
* :mod:`paydata.backup.run` - :func:`take_backup`, :func:`restore`, :func:`restore_drill`.

Command line: ``python -m paydata.backup {backup,list,restore,drill,expire}``; see
``docs/security.md``, *Encrypted backups*.
"""

from paydata.backup.catalog import BackupNotFound, backup_root, expire, latest, list_backups
from paydata.backup.run import DrillResult, restore, restore_drill, take_backup
from paydata.backup.stream import BackupIntegrityError

__all__ = [
    "BackupIntegrityError",
    "BackupNotFound",
    "DrillResult",
    "backup_root",
    "expire",
    "latest",
    "list_backups",
    "restore",
    "restore_drill",
    "take_backup",
]
