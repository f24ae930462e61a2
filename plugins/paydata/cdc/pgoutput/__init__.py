"""Decoder for PostgreSQL's ``pgoutput`` logical replication messages (protocol versions 1 and 2).

Format
------
Every message is one ``bytes`` payload whose first byte names its type; integers are big-endian,
strings are NUL-terminated UTF-8. A decoded transaction arrives as::

    B(final_lsn, commit_time, xid)  [O origin]  (R relation | Y type | I | U | D | T | M)*
    C(flags, commit_lsn, end_lsn, commit_time)

* ``R`` (relation) is sent before the first change of a relation in a session and again whenever
  its definition changes (e.g. ``ALTER TABLE ... ADD COLUMN``), always *before* the change that
  needs it. The decoder caches it by relation OID; changes name only the OID.
* ``I``/``U``/``D`` carry TupleData: per column ``n`` (NULL), ``u`` (unchanged TOASTed value, not
  sent), ``t`` (text, the type output function's text) or ``b`` (binary, only with the ``binary``
  option, which we do not use). ``U`` carries an old tuple only when a replica-identity column
  changed (``K``: key columns only, the others NULL) or the table has ``REPLICA IDENTITY FULL`` (``O``:
  the whole old row); ``D`` always carries ``K`` or ``O``.
* ``T`` (truncate) names several relation OIDs with ``cascade``/``restart identity`` flags.
* ``M`` is a ``pg_logical_emit_message`` payload (requires the ``messages`` option). A
  transactional one belongs to its transaction; a non-transactional one (what we use as a heartbeat)
  arrives on its own, outside Begin/Commit.
* Streaming of in-progress transactions (protocol 2 ``S``/``E``/``c``/``A``) and two-phase
  messages are rejected with :class:`DecodeError`: the slot is used without ``streaming``.

LSNs: which one is recorded where
---------------------------------
* ``Begin.final_lsn`` equals ``Commit.commit_lsn``: the WAL position where the commit record
  *starts*. Because it is known at Begin, every :class:`RawChange` carries it as ``commit_lsn``.
* ``Commit.end_lsn`` is the position just past the commit record; it is what a consumer reports
  back to the slot (``flush_lsn``) once the whole transaction is durable in every sink, so the
  server may recycle WAL and will not resend that transaction.
* The ``wal_start_lsn`` passed to :meth:`PgOutputDecoder.feed` (the XLogData header's WAL start,
  or the ``lsn`` column of ``pg_logical_slot_*_binary_changes``) is kept, for the Begin, as
  ``Transaction.begin_lsn``, for diagnostics only. For a change it is a WAL position inside the
  transaction, *not* monotonic across transactions (transactions interleave in WAL but are
  emitted in commit order); for a Commit the server reports ``end_lsn``.

Why ``(commit_lsn, index_in_txn)`` is the sinks' exactly-once position
--------------------------------------------------------------------
Logical decoding emits whole transactions in commit order and commit LSNs strictly increase, so
the pair (commit LSN, 0-based ordinal of the change within its transaction) is unique per change
and totally ordered in apply order. After a restart the slot replays from its confirmed flush
position, which may be behind what a sink already applied; a sink that stores the highest applied
pair in the same database transaction as the data skips every change whose pair is not greater,
and so applies each change exactly once without coordinating with the other sinks.

Unchanged TOAST
---------------
An ``UPDATE`` that does not modify a TOASTed (large, out-of-line) column does not send it; the
column's value in ``RawChange.new`` is the :data:`UNCHANGED_TOAST` sentinel. Sinks must treat it as
"keep the value already stored": leave the column out of the UPDATE's SET list (or merge with the
previously stored row). It never appears in inserts, and it must never be written as a value
(it refuses ``bool()`` so that a careless truth test fails loudly instead of acting like NULL).
"""

from paydata.cdc.pgoutput.decoder import ChangeKind, PgOutputDecoder, RawChange, Transaction
from paydata.cdc.pgoutput.messages import (
    ACCELERATED,
    UNCHANGED_TOAST,
    Begin,
    Commit,
    DecodeError,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    Origin,
    Relation,
    RelationColumn,
    Truncate,
    TupleValue,
    TypeMessage,
    Update,
    _python_tuple,
    _tuple,
    decode_message,
    format_lsn,
    parse_lsn,
)

__all__ = [
    "ACCELERATED",
    "ChangeKind",
    "TupleValue",
    "_python_tuple",
    "_tuple",
    "UNCHANGED_TOAST",
    "Begin",
    "Commit",
    "DecodeError",
    "Delete",
    "Insert",
    "LogicalMessage",
    "Message",
    "Origin",
    "PgOutputDecoder",
    "RawChange",
    "Relation",
    "RelationColumn",
    "Transaction",
    "Truncate",
    "TypeMessage",
    "Update",
    "decode_message",
    "format_lsn",
    "parse_lsn",
]
