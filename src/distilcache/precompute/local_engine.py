"""The local engine of the teacher pass: this process runs the teacher, windows are prepared ahead by a
thread (or the run's worker processes), shards are written in order. The Ray engine (ray_engine.py) has the
same interface: run_teacher(config, plan, idf, out) -> run info."""

import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from distilcache.cache_format import write_shard
from distilcache.devices import resolve_device, resolve_precision, threads_beside
from distilcache.precompute.config import PrecomputeConfig
from distilcache.precompute.prefetch import prefetch
from distilcache.precompute.preparation import PreparedWindow, expected_rows, prepared_windows, record_windows
from distilcache.precompute.shards import describe_run, missing_extras, preparation_for, shard_table, shards_to_do
from distilcache.precompute.token_states import StateCollector, row_states, token_projection
from distilcache.precompute.workers import WorkerGroup
from distilcache.teacher.model import load_model, pooled_vectors
from distilcache.teacher.prepare import PreparedRows
from distilcache.weighting import IdfTable

log = logging.getLogger(__name__)


def run_teacher(config: PrecomputeConfig, plan: dict[str, Any], idf: IdfTable | None, out: Path,
                group: WorkerGroup | None = None) -> dict[str, Any]:
    """With a group, its processes prepare the windows; else a thread of this process does."""
    done, todo = shards_to_do(config, plan, out)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    run_info = describe_run(config, device, precision, done)
    missing = missing_extras(config, plan, out, device, precision)
    if not todo and not missing:
        return run_info
    model = load_model(config.teacher, device)
    if todo:
        run_info |= _compute_shards(config, plan, idf, out, todo, done, model, device, precision, group)
    for export in missing:
        export(model)
    return run_info


def _compute_shards(config: PrecomputeConfig, plan: dict[str, Any], idf: IdfTable | None, out: Path, todo: set[int],
                    done: set[int], model: Any, device: torch.device, precision: str, group: WorkerGroup | None) -> dict[str, Any]:
    preparation = preparation_for(config, plan, idf, out)
    workers = group.size if group is not None else 1
    dim = plan["vector"]["dim"]
    started, rows_done = time.perf_counter(), 0
    log.info("teacher %s on %s (%s), %d shard(s) to compute, %d process(es) preparing", plan["teacher"]["name"], device, precision,
             len(todo), workers)

    def store(shard: int, rows: PreparedRows, vectors: np.ndarray, states: list[np.ndarray | None] | None) -> None:
        write_shard(out, shard, shard_table(rows, vectors, dim, config.dtype, states, config.token_states))
        if config.push:
            config.push()

    # one thread writes each finished shard while the teacher goes on (Parquet and zstd release the GIL); one shard
    # in flight at most, so memory holds two shards, and a failed write stops the run at the next shard
    # with preparing processes, torch keeps to the cores they leave; one preparing thread leaves torch all of them (a
    # CPU teacher's forward needs them, and that thread mostly waits for it)
    with tqdm(total=plan["total_rows"], initial=sum(expected_rows(plan, i) for i in done), desc="precompute",
              unit=" sent", mininterval=1, smoothing=0.1) as bar, torch.inference_mode(), \
            threads_beside(workers if group is not None else 0), ThreadPoolExecutor(1, thread_name_prefix="distilcache-write") as writer:
        shard_rows: list[PreparedRows] = []
        shard_vectors = np.empty((0, dim), dtype=np.float32)
        shard_states: list[np.ndarray | None] = []
        sources: list[int] = []
        writing: Future[None] | None = None
        # reading and handing out windows overlap the teacher
        windows: Iterator[PreparedWindow] = prefetch(prepared_windows(record_windows(config, plan, todo), preparation, group), depth=4)
        projection = None
        if config.token_states:  # read back, or fitted on the first window, which is then computed like the others
            first = next(windows)
            projection = token_projection(config, plan, out, model, first, done, device, precision)
            windows = chain([first], windows)
        for window in windows:
            piece = window.piece
            if piece.start == 0:  # the shard's vectors, each window's written in place
                shard_vectors = np.empty((expected_rows(plan, piece.shard), dim), dtype=np.float32)
            collector = StateCollector(projection, window.rows, device) if projection is not None else None
            pooled_vectors(model, window.batches, len(window.rows), device, precision, config.pooling.layer, config.pooling.normalize,
                           on_batch=bar.update, on_states=collector, out=shard_vectors[piece.start : piece.start + len(window.rows)])
            bar.update(len(window.rows) - len(piece.computed))  # the repeats, filled in below
            shard_rows.append(window.rows)
            shard_states += collector.states if collector is not None else []
            sources += piece.sources
            if piece.last:
                rows = PreparedRows.concat(shard_rows)
                repeats = np.flatnonzero(np.asarray(sources) != np.arange(len(sources)))
                shard_vectors[repeats] = shard_vectors[np.asarray(sources)[repeats]]  # a repeated input takes its first row's vector
                states = row_states(rows, shard_states, sources, config.token_states) if projection is not None else None
                if writing is not None:
                    writing.result()
                writing = writer.submit(store, piece.shard, rows, shard_vectors[: len(rows)], states)  # fewer: the input shrank
                rows_done += len(rows)
                shard_rows, shard_states, sources = [], [], []
        if writing is not None:
            writing.result()
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "sentences_per_second": round(rows_done / seconds, 1) if seconds else None,
            "preparing_workers": workers}
