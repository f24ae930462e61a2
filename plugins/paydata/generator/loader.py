"""Bulk-load generated traffic into the OLTP database with COPY, once per batch.

Guarantees of :func:`load_traffic`:

* **All or nothing.** A batch is one transaction: every chunk is COPYed, then charge status
  transitions are applied step by step (so the state-machine trigger checks each transition), then
  payouts are posted. Any failure rolls the whole batch back.
* **Idempotent.** The first card token of a batch is derived from the batch key, so an existing
  token means the batch was committed: a rerun of the same config loads nothing. Two concurrent
  loads of one batch are serialised by an advisory lock.
* **Constraints hold.** Nothing is disabled: COPY fires the refund-cap and state-machine triggers
  and checks every foreign key and CHECK. Charges are inserted as pending/succeeded/failed (the
  states allowed on insert) and moved on by UPDATEs.
* **Bounded memory.** Chunks of ``TrafficConfig.chunk_size`` payments; with worker processes about
  two chunks per worker are in flight (see :mod:`paydata.generator.parallel`).

Generation, encryption and COPY formatting run in forked worker processes (two by default, see
:func:`paydata.generator.parallel.default_workers`) while this process COPYs; the rows do not
depend on where a chunk was built.

Identity blocks are reserved with ``setval`` while the traffic tables are locked against
concurrent writers (SHARE ROW EXCLUSIVE: readers are not blocked), so the ids are contiguous.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

from paydata.generator.config import TrafficConfig
from paydata.generator.copy import copy_buffer, copy_into, statement
from paydata.generator.parallel import check_workers, encoded_chunks
from paydata.generator.reference import MerchantProfile
from paydata.generator.traffic import (
    COLUMNS,
    ID_COLUMNS,
    KEY_TABLE,
    STATUS_STEP_COLUMNS,
    TABLE_ORDER,
    PanSink,
    PayoutAccumulator,
    TrafficGenerator,
    payout_rows,
)


@dataclass
class LoadResult:
    batch_key: str
    skipped: bool
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    landing_files: list[str] = field(default_factory=list)

    @property
    def payments(self) -> int:
        return self.rows.get("charge", 0)

    def as_dict(self) -> dict:
        """Counts and paths only (JSON-serialisable, for XCom)."""
        return {"batch_key": self.batch_key, "skipped": self.skipped, "rows": dict(self.rows),
                "seconds": round(self.seconds, 3), "landing_files": list(self.landing_files)}


def load_currencies(oltp_conn) -> dict[str, int]:
    """Chargeable currencies as replicated into OLTP ``currency_ref`` (code -> minor units)."""
    with oltp_conn.cursor() as cursor:
        cursor.execute(statement("select_currency_ref"))
        rows = cursor.fetchall()
    oltp_conn.rollback()
    return dict(rows)


def batch_marker_token(config: TrafficConfig) -> str:
    """The token of the batch's first card: present in ``payment_method`` iff the batch is loaded."""
    from paydata.crypto import tokenise

    return tokenise(f"{config.batch_key}/0/0", domain="card_token")


def reserve_ids(cursor, table: str, count: int) -> int:
    """Reserve ``count`` identity values of ``table``; returns the first. Caller holds the table lock."""
    if count <= 0:
        return 1
    cursor.execute(statement("reserve_ids"), {"table": table, "column": ID_COLUMNS[table], "count": count})
    return cursor.fetchone()[0] - count + 1


def load_traffic(
    oltp_conn,
    config: TrafficConfig,
    merchants: list[MerchantProfile],
    currencies: dict[str, int] | None = None,
    *,
    progress: bool = True,
    landing_dir: Path | None = None,
    pan_sink: PanSink | None = None,
    workers: int | None = None,
    keys=None,
) -> LoadResult:
    """Generate the batch described by ``config`` and COPY it into OLTP; see the module docstring.

    ``currencies`` defaults to OLTP ``currency_ref``; merchants must already be in ``merchant_ref``
    (a missing one is a foreign-key error that rolls the batch back). With ``landing_dir`` the
    batch's landing files are written alongside (by whichever process builds the chunk).
    ``workers``: worker processes for chunk generation (default two when the batch has several
    chunks and no ``pan_sink``; 0 builds every chunk in this process). The customers' data keys
    go to the key store ``keys`` (default: the process-wide one) in one transaction of its own
    that commits just before the OLTP batch: a failure in between leaves unused keys, never
    customers without keys. Raises GeneratorError for bad input, or the worker's own error if
    generating a chunk fails there.
    """
    from tqdm import tqdm

    from paydata.keystore import default_keystore

    started = time.perf_counter()
    if workers is not None:
        check_workers(workers)
    currencies = currencies if currencies is not None else load_currencies(oltp_conn)
    generator = TrafficGenerator(config, merchants, currencies, pan_sink=pan_sink)
    result = LoadResult(batch_key=config.batch_key, skipped=False)
    if config.payments == 0:
        return result
    keys = keys or default_keystore()
    try:
        with oltp_conn.cursor() as cursor, keys.bulk() as key_loader:
            cursor.execute(statement("batch_lock"), {"batch_key": config.batch_key})
            cursor.execute(statement("batch_marker_exists"), {"token": batch_marker_token(config)})
            if cursor.fetchone()[0]:
                oltp_conn.rollback()
                result.skipped = True
                result.seconds = time.perf_counter() - started
                return result
            cursor.execute(statement("lock_traffic_tables"))
            cursor.execute(statement("create_charge_status_steps"))
            payouts = PayoutAccumulator({m.merchant_id: m.payout_schedule for m in merchants})
            rows_written = dict.fromkeys((*TABLE_ORDER, KEY_TABLE, "charge_status_step"), 0)
            max_step = 0

            def reserve_chunk_ids(counts: dict[str, int]) -> dict[str, int]:
                return {table: reserve_ids(cursor, table, count) for table, count in counts.items()}

            with tqdm(total=config.payments, unit="payment", disable=not progress,
                      desc=f"batch {config.batch_key}") as bar:
                chunks = encoded_chunks(generator, reserve_chunk_ids, payouts, workers=workers,
                                        landing_dir=landing_dir)
                try:
                    for chunk in chunks:
                        if chunk.buffers.get(KEY_TABLE):
                            key_loader.copy("customer", chunk.buffers[KEY_TABLE])
                        for table in TABLE_ORDER:
                            if table in chunk.buffers:
                                copy_into(cursor, table, COLUMNS[table], io.BytesIO(chunk.buffers[table]))
                        if "charge_status_step" in chunk.buffers:
                            copy_into(cursor, "generator_charge_status_step", STATUS_STEP_COLUMNS,
                                      io.BytesIO(chunk.buffers["charge_status_step"]))
                        for table, count in chunk.rows.items():
                            rows_written[table] += count
                        max_step = max(max_step, chunk.max_step)
                        payouts.merge(chunk.payout_nets)
                        result.landing_files += chunk.landing_files
                        bar.update(chunk.payments)
                finally:
                    chunks.close()
            for step in range(1, max_step + 1):
                cursor.execute(statement("apply_charge_status_step"), {"step": step})
            due = payouts.payouts(config.end)
            if due:
                first_payout = reserve_ids(cursor, "payout", len(due))
                first_ledger = reserve_ids(cursor, "balance_transaction", len(due))
                for table, rows in payout_rows(due, first_payout, first_ledger).items():
                    copy_into(cursor, table, COLUMNS[table], copy_buffer(rows))
                    rows_written[table] += len(rows)
            key_loader.commit()
        oltp_conn.commit()
    except BaseException:
        oltp_conn.rollback()
        raise
    result.rows = rows_written
    result.seconds = time.perf_counter() - started
    return result
