"""`--engine ray`: the teacher pass on Ray Data actors, one teacher per actor (one GPU each on CUDA).

Planning and finishing are run.py's, so the manifest and the layout are those of the local engine by
construction; this module is an engine like local_engine.py: run_teacher, with the same contract (resume by skipping the
shards that exist, the extras once, shards written with `write_shard`, run info for the manifest).

Rows: the driver reads the inputs with the package's own validating reader (`record_windows`, the one
the plan counted), never with `ray.data` readers, whose notion of a row, an id or a bad line would
differ: ids, rejections and order are those of the local engine by construction. It cuts the shards
still to do into the local engine's sort windows and puts each window into the object store (Ray
spills to disk beyond its memory); the dataset is one row per window, so every window is tokenised,
length-sorted and batched exactly as the local engine does it, and its vectors equal the local ones up
to float rounding.

Actors: each loads the teacher once and turns a window into its shard rows (Preparation,
then the forward and the pooling): the CPU work (jieba, tokenising) scales with the actors
instead of running in one driver thread.

Shards: the output comes back in order (preserve_order) and the driver cuts it into shards by the
plan's row counts and writes them with `write_shard`: a shard's windows may come from several actors
and the driver is where they meet, the cache directory needs to exist on the driver only, and atomic
renames and the cache lock stay in one process. Repeated teacher inputs: an actor computes a window's
first occurrences only (RecordWindow) and the driver gives every repeat its source row's vector
when it cuts the shard. Shipping the vectors costs little next to the
teacher (a few KB a row).

On a cluster (RAY_ADDRESS), every node needs distilcache and the teacher directory at the same path.
"""

import logging
import os
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from tqdm.auto import tqdm

try:
    import ray
    import ray.data
except ImportError as error:  # the extra is optional: say how to get it
    raise ImportError("--engine ray needs Ray Data, which is not installed: pip install 'distilcache[ray]'") from error

from distilcache.cache_format import shard_schema, write_shard
from distilcache.devices import resolve_device, resolve_precision
from distilcache.inputs import Record
from distilcache.precompute.config import PrecomputeConfig
from distilcache.precompute.preparation import Preparation, RecordWindow, expected_rows, record_windows
from distilcache.precompute.shards import describe_run, missing_extras, preparation_for, shard_table, shards_to_do
from distilcache.teacher.model import load_model, pooled_vectors
from distilcache.weighting import IdfTable

log = logging.getLogger(__name__)

_RECORDS = pa.list_(pa.struct([("id", pa.string()), ("text", pa.string()), ("file", pa.string()), ("target_text", pa.string())]))


class _Teacher:
    """A Ray actor's teacher, loaded once; each call turns one window of records into its shard rows."""

    def __init__(self, config: PrecomputeConfig, preparation: Preparation, device: str, precision: str, dim: int):
        self.config, self.preparation = config, preparation
        self.device, self.precision, self.dim = torch.device(device), precision, dim
        self.model = load_model(config.teacher, self.device)

    @torch.inference_mode()
    def __call__(self, batch: pa.Table) -> pa.Table:
        (window,) = batch.to_pylist()  # batch_size=1: one window
        piece = RecordWindow(window["shard"], window["start"], [Record(**r) for r in window["records"]], window["sources"], False,
                             window["key"])
        prepared = self.preparation(piece)
        vectors = pooled_vectors(self.model, prepared.batches, len(prepared.rows), self.device, self.precision,
                                 self.config.pooling.layer, self.config.pooling.normalize)
        table = shard_table(prepared.rows, vectors, self.dim, self.config.dtype)
        table = table.append_column("shard", pa.array(np.full(len(prepared.rows), piece.shard, dtype=np.int64)))
        return table.append_column("source", pa.array(piece.sources, pa.int64()))  # the driver fills the repeats


def _windows(config: PrecomputeConfig, plan: dict[str, Any], todo: set[int]) -> Iterator[pa.Table]:
    """The records of the shards still to do, one sort window a table: the local engine's windows."""
    for piece in record_windows(config, plan, todo):
        yield pa.table({"shard": pa.array([piece.shard], pa.int64()), "start": pa.array([piece.start], pa.int64()),
                        "key": pa.array([piece.key], pa.int64()),
                        "records": pa.array([[asdict(r) for r in piece.records]], _RECORDS),
                        "sources": pa.array([piece.sources], pa.list_(pa.int64()))})


def _connect() -> bool:
    """Join the caller's Ray, else RAY_ADDRESS's cluster, else start a local one; True when started here."""
    if ray.is_initialized():
        return False
    ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False)
    return True


def _device(config: PrecomputeConfig) -> torch.device:
    """The actors' device type (each sees its own GPU as cuda:0). auto: CUDA when the Ray cluster has
    GPUs, so a driver without one still runs the teacher on the workers' GPUs."""
    if config.device == "auto":
        return torch.device("cuda" if ray.cluster_resources().get("GPU", 0) >= 1 else "cpu")
    return torch.device(torch.device(config.device).type)


def _precision(config: PrecomputeConfig, device: torch.device) -> str:
    """resolve_precision where the teacher runs: a driver without a GPU asks a GPU worker (bf16 or fp16)."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return ray.get(ray.remote(num_gpus=1)(resolve_precision).remote(config.precision, device))
    return resolve_precision(config.precision, device)


def actor_precision(config: PrecomputeConfig) -> str:
    """The precision the actors will compute in, known before planning (it is part of the plan). Asks
    the Ray cluster only when the answer depends on its GPUs."""
    if config.device != "auto" and (torch.device(config.device).type != "cuda" or torch.cuda.is_available()):
        return resolve_precision(config.precision, torch.device(config.device))
    started = _connect()
    try:
        return _precision(config, _device(config))
    finally:
        if started:
            ray.shutdown()


def run_teacher(config: PrecomputeConfig, plan: dict[str, Any], idf: IdfTable | None, out: Path) -> dict[str, Any]:
    """local_engine.run_teacher on Ray Data actors: the same shards, extras and run info (plus the engine's)."""
    done, todo_set = shards_to_do(config, plan, out)
    todo = sorted(todo_set)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    missing = missing_extras(config, plan, out, device, precision)
    run_info = describe_run(config, device, precision, done) | {
        "engine": "ray", "ray": ray.__version__, "ray_workers": config.ray_workers}
    if todo:
        started = _connect()
        try:
            run_info |= _run_actors(config, plan, idf, out, todo, done)
        finally:
            if started:  # a Ray the caller started stays up
                ray.shutdown()
    if missing:  # the extras (token vectors, seed layers) once, on this machine, after the shards they may read
        model = load_model(config.teacher, device)
        for export in missing:
            export(model)
    return run_info


def _run_actors(config: PrecomputeConfig, plan: dict[str, Any], idf: IdfTable | None, out: Path,
                todo: list[int], done: set[int]) -> dict[str, Any]:
    device = _device(config)
    resource = "GPU" if device.type == "cuda" else "CPU"  # one per actor
    available = ray.cluster_resources().get(resource, 0)
    if available < config.ray_workers:
        log.warning("%d Ray workers need %d %ss, the cluster has %g: the actors that fit do the work, the others wait",
                    config.ray_workers, config.ray_workers, resource, available)
    precision = _precision(config, device)
    windows = sum(-(-expected_rows(plan, i) // config.sort_window) for i in todo)
    refs = [ray.put(w) for w in tqdm(_windows(config, plan, set(todo)), total=windows, desc="windows to the object store", unit=" windows")]
    dataset = ray.data.from_arrow_refs(refs)
    dataset.context.execution_options.preserve_order = True  # the driver cuts shards by row count
    dataset.context.enable_progress_bars = False  # the sentences bar below tells the progress
    dim, schema = plan["vector"]["dim"], shard_schema(plan["vector"]["dim"], config.dtype)
    teacher = {"config": config, "preparation": preparation_for(config, plan, idf, out), "device": device.type,
               "precision": precision, "dim": dim}
    vectors = dataset.map_batches(_Teacher, fn_constructor_kwargs=teacher, batch_size=1, batch_format="pyarrow",
                                  compute=ray.data.ActorPoolStrategy(size=config.ray_workers), num_gpus=int(resource == "GPU"))
    log.info("teacher %s on %d Ray actor(s), %s (%s), %d shard(s) to compute", plan["teacher"]["name"], config.ray_workers,
             device, precision, len(todo))
    started, pending, have, shards = time.perf_counter(), [], 0, iter(todo)
    index = next(shards)
    blocks = iter(vectors.iter_batches(batch_size=None, batch_format="pyarrow"))
    with tqdm(total=plan["total_rows"], initial=sum(expected_rows(plan, i) for i in done), desc="precompute",
              unit=" sent", mininterval=1, smoothing=0.1) as bar, closing(blocks):  # closed early: Ray stops the actors
        for block in blocks:
            pending.append(block)
            have += len(block)
            bar.update(len(block))
            while index is not None and have >= (rows := expected_rows(plan, index)):
                table = pa.concat_tables(pending)
                shard, pending, have = table.slice(0, rows), [table.slice(rows)], have - rows
                if pc.any(pc.not_equal(shard["shard"], index)).as_py():
                    raise RuntimeError(f"Ray returned the rows of shard {index} out of order")
                shard = shard.set_column(shard.schema.get_field_index("vector"), "vector", shard["vector"].take(shard["source"]))
                # the format's schema, whatever Ray's blocks say
                write_shard(out, index, shard.drop_columns(["shard", "source"]).cast(schema))
                if config.push:  # a URI output: upload the shard now
                    config.push()
                index = next(shards, None)
    rows_done = sum(expected_rows(plan, i) for i in todo)
    if index is not None or have:
        raise RuntimeError(f"Ray returned {bar.n - bar.initial} rows, the plan expects {rows_done}")
    seconds = time.perf_counter() - started
    return {"device": str(device), "precision": precision, "seconds": round(seconds, 3),
            "sentences_per_second": round(rows_done / seconds, 1) if seconds else None}
