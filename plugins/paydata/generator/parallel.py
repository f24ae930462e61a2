"""Chunks encoded for COPY, either in this process or in forked worker processes.

The loader is the only writer (one connection, one transaction); what it waits for between COPYs
is chunk generation, encryption and COPY-text formatting. :func:`encoded_chunks` moves that work
into ``workers`` processes (chunk ``i`` goes to worker ``i % workers``) while the loader COPYs, and
yields the chunks in index order either way. Ids stay the loader's: a worker sends a chunk's row
counts, the loader reserves the id blocks (in chunk order) and sends back the first ids, and only
then does the worker build the COPY text. Since a chunk depends only on its index, the rows are
the same whichever process builds them.

Memory stays bounded: a worker holds at most the chunk it waits ids for plus one encoded chunk it
is handing over (pipe sends block until the loader reads), so in flight there are about two chunks
per worker.

Workers are started with ``fork`` (Linux): they inherit the generator, the loaded keys and the
identity pools instead of rebuilding them, and never touch the loader's database connection.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

from paydata.generator.config import GeneratorError
from paydata.generator.encode import encode_chunk
from paydata.generator.traffic import PayoutAccumulator, TrafficChunk, TrafficGenerator

ReserveIds = Callable[[dict[str, int]], dict[str, int]]
MAX_WORKERS = 2
# Join timeout when stopping workers; a worker still alive after it is terminated.
_STOP_SECONDS = 10.0


@dataclass
class EncodedChunk:
    """One chunk ready for COPY: UTF-8 COPY text per non-empty table and what the loader tallies."""

    index: int
    payments: int
    buffers: dict[str, bytes] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    max_step: int = 0
    payout_nets: dict = field(default_factory=dict)
    landing_files: list[str] = field(default_factory=list)


def default_workers(generator: TrafficGenerator) -> int:
    """Worker processes :func:`encoded_chunks` uses unless told: 0 (in process) for one chunk or a PAN sink."""
    if generator.pan_sink is not None or generator.config.chunk_count < 2:
        return 0
    return min(MAX_WORKERS, os.cpu_count() or 1)


def check_workers(workers: int) -> int:
    """``workers`` if it is a usable worker count (0 = in process); GeneratorError otherwise."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise GeneratorError(f"workers must be a non-negative integer, got {workers!r}")
    return workers


def encode_for_load(generator: TrafficGenerator, chunk: TrafficChunk, first_ids: dict[str, int],
                    payouts: PayoutAccumulator, landing_dir: Path | None) -> EncodedChunk:
    """Encrypt and encode ``chunk`` with ids from ``first_ids``; write its landing files if asked."""
    texts = encode_chunk(chunk, first_ids)
    rows = {
        "customer": len(chunk.customers), "customer_data_key": len(chunk.customers),
        "payment_method": len(chunk.cards), "payment_intent": len(chunk.charges), "charge": len(chunk.charges),
        "refund": len(chunk.refunds), "dispute": len(chunk.disputes), "payout": 0,
        "balance_transaction": len(chunk.ledger), "charge_status_step": len(chunk.status_steps),
    }
    landing_files = []
    if landing_dir is not None:
        from paydata.generator.landing import write_chunk_landing

        landing_files = [str(path) for path in write_chunk_landing(landing_dir, generator, chunk)]
    return EncodedChunk(
        index=chunk.index, payments=len(chunk.charges),
        buffers={table: text.encode("utf-8") for table, text in texts.items() if text},
        rows=rows, max_step=max((step for _local, step, _status in chunk.status_steps), default=0),
        payout_nets=payouts.chunk_nets(chunk), landing_files=landing_files,
    )


def encoded_chunks(generator: TrafficGenerator, reserve_ids: ReserveIds, payouts: PayoutAccumulator, *,
                   workers: int | None = None, landing_dir: Path | None = None) -> Iterator[EncodedChunk]:
    """Every chunk of the batch, encoded, in index order; ``reserve_ids`` is called in the same order.

    ``reserve_ids(counts)`` receives :meth:`TrafficChunk.counts` and returns the first id per table.
    ``workers`` (default :func:`default_workers`) is the number of worker processes, 0 meaning
    in this process; a generator with a ``pan_sink`` always runs in process (the sink must see the
    numbers where it lives). An error in a worker is raised here with its original type when it
    can be pickled; a worker that dies without a word raises GeneratorError. Closing the iterator
    stops the workers.
    """
    workers = min(check_workers(workers) if workers is not None else default_workers(generator),
                  generator.config.chunk_count)
    if workers == 0 or generator.pan_sink is not None:
        for chunk in generator.chunks():
            yield encode_for_load(generator, chunk, reserve_ids(chunk.counts()), payouts, landing_dir)
        return
    yield from _in_workers(generator, reserve_ids, payouts, workers, landing_dir)


def _in_workers(generator: TrafficGenerator, reserve_ids: ReserveIds, payouts: PayoutAccumulator,
                workers: int, landing_dir: Path | None) -> Iterator[EncodedChunk]:
    context = multiprocessing.get_context("fork")
    pipes: list[Connection] = []
    processes = []
    try:
        for number in range(workers):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_worker, args=(child_end, generator, number, workers, payouts, landing_dir),
                name=f"paydata-chunk-worker-{number}", daemon=True)
            process.start()
            child_end.close()
            pipes.append(parent_end)
            processes.append(process)

        def answer_counts(index: int) -> None:
            counts = _receive(pipes[index % workers], processes[index % workers], "counts", index)
            first_ids = reserve_ids(counts)
            try:
                pipes[index % workers].send(first_ids)
            except OSError:
                raise _worker_gone(processes[index % workers], index) from None

        chunk_count = generator.config.chunk_count
        answer_counts(0)
        for index in range(chunk_count):
            has_next = index + 1 < chunk_count
            # With two or more workers the next chunk's ids go out before this chunk is COPYed, so
            # its worker encodes meanwhile; a single worker first has to hand this chunk over.
            if has_next and workers > 1:
                answer_counts(index + 1)
            yield _receive(pipes[index % workers], processes[index % workers], "chunk", index)
            if has_next and workers == 1:
                answer_counts(index + 1)
    finally:
        for pipe in pipes:
            pipe.close()
        for process in processes:
            process.join(_STOP_SECONDS)
            if process.is_alive():
                process.terminate()
                process.join(_STOP_SECONDS)


def _receive(pipe: Connection, process, kind: str, index: int):
    wait([pipe, process.sentinel])
    try:
        got_kind, got_index, body = pipe.recv()
    except (EOFError, OSError):
        raise _worker_gone(process, index) from None
    if got_kind == "error":
        raise body
    if (got_kind, got_index) != (kind, index):
        raise GeneratorError(f"chunk worker {process.name} sent {got_kind} {got_index}, expected {kind} {index}")
    return body


def _worker_gone(process, index: int) -> GeneratorError:
    process.join(_STOP_SECONDS)
    return GeneratorError(f"chunk worker {process.name} exited (code {process.exitcode}) before finishing "
                          f"chunk {index}")


def _worker(pipe: Connection, generator: TrafficGenerator, number: int, workers: int,
            payouts: PayoutAccumulator, landing_dir: Path | None) -> None:
    index = number
    try:
        for index in range(number, generator.config.chunk_count, workers):
            chunk = generator.chunk(index)
            pipe.send(("counts", index, chunk.counts()))
            first_ids = pipe.recv()
            pipe.send(("chunk", index, encode_for_load(generator, chunk, first_ids, payouts, landing_dir)))
    except (EOFError, BrokenPipeError):
        pass  # the loader stopped listening: it is already handling its own error
    except BaseException as error:  # noqa: BLE001 - every failure goes back to the loader
        _send_error(pipe, index, error)
    finally:
        pipe.close()


def _send_error(pipe: Connection, index: int, error: BaseException) -> None:
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
        payload = error
    except Exception:  # noqa: BLE001 - an unpicklable error still has to be reported
        payload = GeneratorError(f"chunk {index} failed in a worker: {type(error).__name__}: {error}")
    try:
        pipe.send(("error", index, payload))
    except (OSError, ValueError):
        pass
