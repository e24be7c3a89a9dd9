"""Training from caches larger than memory (issue 19): reading rows/s, training rows/s and peak memory
against the number of rows. Each cache size is measured in a process of its own, so each peak is its own.

    .venv/bin/python benchmarks/training_stream.py [--sizes 200000,800000,3200000] [--base-rows 200000]
                                                   [--buffers 25000,100000,250000]

The caches: one precomputed with the null teacher of benchmarks/pipeline_ceiling.py (all-MiniLM-L6-v2
with 0 layers: real tokens, weights and 384-dim float16 vectors) from --base-rows mixed zh/en rows,
then tiled to each size (every tile's ids made unique, checksums and manifest rewritten: a valid cache
that `distilcache verify` accepts). Per size, in a fresh process:
- reading: every row group decoded into the training columns (one thread), again as training reads them
  (a shuffled order, read-ahead threads), then the scan training starts with, then one epoch of padded
  training batches with no student (what an epoch costs the reader);
- training: one epoch of a deliberately tiny BiLSTM (embedding 16, LSTM 16, batch 1024), so that the epoch is
  about the reading and the memory, not the student.
Then peak memory against --shuffle-buffer on the largest cache. And once, the smallest cache's rows
written as shards were before the vector column was stored plain (zstd and a dictionary on every
column), read the same way.
Writes benchmarks/results/TRAINING_STREAM.md.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from pipeline_ceiling import corpus, null_teacher
from report import write_result

from distilcache.cache_format import open_cache
from distilcache.cache_format.layout import MANIFEST_FILE, shard_name
from distilcache.cache_format.writer import ROW_GROUP_ROWS, shard_entry, write_json_atomic, write_parquet_atomic
from distilcache.inputs import InputSpec
from distilcache.precompute import PrecomputeConfig, precompute
from distilcache.train import TrainConfig, train
from distilcache.train.data import (COLUMNS, READ_AHEAD, READ_THREADS, RowGroup, read_ahead, read_rows, row_groups, scan_cache,
                                    training_batches)


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM: ru_maxrss would also count the parent's before exec)."""
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def base_cache(workdir: Path, rows: int) -> Path:
    out = workdir / f"base-{rows}"
    if not (out / MANIFEST_FILE).exists():
        precompute(PrecomputeConfig(teacher=null_teacher(workdir), inputs=[InputSpec(corpus(workdir, rows))], output=out,
                                    device="cpu", token_vectors=False))
    return out


def tiled_cache(base: Path, rows: int, workdir: Path) -> Path:
    """`rows` rows: the base cache's shards again and again, each tile's ids prefixed with its number."""
    out = workdir / f"tiled-{rows}"
    if (out / MANIFEST_FILE).exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(base, out, ignore=shutil.ignore_patterns("shards", MANIFEST_FILE))
    manifest = json.loads((base / MANIFEST_FILE).read_text(encoding="utf-8"))
    tables = [pq.read_table(base / entry["file"]) for entry in manifest["shards"]]
    entries, done, tile = [], 0, 0
    while done < rows:
        for table in tables:
            table = table.slice(0, min(table.num_rows, rows - done))
            if table.num_rows == 0:
                break
            ids = pc.binary_join_element_wise(pa.scalar(f"tile{tile}"), table["id"], ":")
            table = table.set_column(table.schema.get_field_index("id"), "id", ids)
            write_parquet_atomic(table, out / shard_name(len(entries)))
            entries.append(shard_entry(out, len(entries), table.num_rows))
            done += table.num_rows
        tile += 1
    manifest |= {"shards": entries, "total_rows": done}
    write_json_atomic(manifest, out / MANIFEST_FILE)
    return out


def buffer_peak(cache_dir: Path, buffer_rows: int) -> dict[str, float]:
    """Peak memory over the scan and one epoch of batches with this shuffle buffer (run with --buffer)."""
    cache = open_cache(cache_dir)
    start = peak_mib()
    scan = scan_cache(cache, 0.05, 1 << 20)
    scanned = peak_mib()
    for _ in training_batches(scan, cache.dim, lambda r: r, 128, buffer_rows, np.random.default_rng(0), pad_id=0):
        pass
    return {"buffer": buffer_rows, "start_mib": start, "scan_mib": scanned, "epoch_mib": peak_mib()}


def measure(cache_dir: Path, output: Path) -> dict[str, float]:
    """What one process measures of one cache (run with --measure)."""
    cache = open_cache(cache_dir)
    groups = row_groups(cache)
    start_peak = peak_mib()
    started = time.perf_counter()
    rows = sum(len(read_rows(group, cache.dim)) for group in groups)
    read_seconds = time.perf_counter() - started
    started = time.perf_counter()
    order = np.random.default_rng(0).permutation(len(groups))
    assert sum(len(group) for group in read_ahead(order, lambda g: read_rows(groups[g], cache.dim))) == rows
    read_ahead_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scan = scan_cache(cache, 0.05, 1 << 20)
    scan_seconds = time.perf_counter() - started
    started = time.perf_counter()
    served = sum(len(batch) for batch in training_batches(scan, cache.dim, lambda r: r, 128, TrainConfig.shuffle_buffer,
                                                          np.random.default_rng(0), pad_id=0))
    epoch_seconds = time.perf_counter() - started
    reading_peak = peak_mib()
    shutil.rmtree(output, ignore_errors=True)
    summary = train(TrainConfig(cache=cache_dir, output=output, embedding_dim=16, hidden=16, batch_size=1024, epochs=1, device="cpu"))
    return {"rows": rows, "start_mib": start_peak, "read": rows / read_seconds, "read_ahead": rows / read_ahead_seconds,
            "scan": rows / scan_seconds, "batches": served / epoch_seconds,
            "reading_peak_mib": reading_peak, "train": summary["history"][0]["rows_per_second"], "train_peak_mib": peak_mib()}


def legacy_read_rate(cache_dir: Path, workdir: Path) -> float:
    """Rows/s of read_rows over the first shard written with zstd and a dictionary on every column, the vector too."""
    cache = open_cache(cache_dir, verify=False)
    path = workdir / "legacy-shard.parquet"
    pq.write_table(pq.read_table(cache.shard_paths[0]), path, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    metadata = pq.ParquetFile(path).metadata
    groups = [RowGroup(path, g, metadata.row_group(g).num_rows) for g in range(metadata.num_row_groups)]
    started = time.perf_counter()
    rows = sum(len(read_rows(group, cache.dim)) for group in groups)
    return rows / (time.perf_counter() - started)


def in_memory_mib(cache_dir: Path) -> float:
    """What every row's training columns take as Arrow arrays (what training held before it streamed), from the
    first shard's bytes per row."""
    cache = open_cache(cache_dir, verify=False)
    first = pq.read_table(cache.shard_paths[0], columns=COLUMNS)
    return first.nbytes / first.num_rows * cache.num_rows / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200000,800000,3200000")
    parser.add_argument("--base-rows", type=int, default=200_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distilcache-stream"))
    parser.add_argument("--buffers", default="25000,100000,250000", help="shuffle buffers measured on the largest cache")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--buffer", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        result = buffer_peak(args.measure, args.buffer) if args.buffer else measure(args.measure, args.workdir / "student")
        print(json.dumps(result))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    base = base_cache(args.workdir, args.base_rows)
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        cache_dir = tiled_cache(base, size, args.workdir)
        run = subprocess.run([sys.executable, __file__, "--workdir", str(args.workdir), "--measure", str(cache_dir)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(run.stdout.strip().splitlines()[-1]) | {"in_memory_mib": in_memory_mib(cache_dir)})
        print(results[-1], flush=True)

    buffers = []
    for buffer_rows in [int(b) for b in args.buffers.split(",")]:
        run = subprocess.run([sys.executable, __file__, "--measure", str(cache_dir), "--buffer", str(buffer_rows)],
                             capture_output=True, text=True, check=True)
        buffers.append(json.loads(run.stdout.strip().splitlines()[-1]))
        print(buffers[-1], flush=True)
    legacy = legacy_read_rate(tiled_cache(base, int(args.sizes.split(",")[0]), args.workdir), args.workdir)
    lines = [f"# Training from a cache larger than memory — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
             f"pyarrow {pa.__version__}; null-teacher caches (384-dim float16) tiled from {args.base_rows:,} mixed zh/en rows; "
             f"shuffle buffer {TrainConfig.shuffle_buffer:,} rows, batch 128; `.venv/bin/python benchmarks/training_stream.py "
             f"--sizes {args.sizes} --buffers {args.buffers}`", "",
             "Reading: row groups decoded into the training columns, on one thread, then as training reads them (in a "
             f"shuffled order, on {READ_THREADS} threads, {READ_AHEAD} groups ahead); the scan before training (held-out split, "
             "token ids, finite vectors); an epoch of padded batches with no student. Training: one epoch of a tiny "
             "BiLSTM (embedding 16, LSTM 16, batch 1024). Peaks are the process's maximum resident memory (VmHWM), after "
             "imports and opening the cache, after reading, after training; the last column is what holding every row's "
             "training columns would take (what training did before it streamed).", "",
             f"| rows | read rows/s, one thread | read rows/s, {READ_THREADS} threads | scan rows/s | batches rows/s | peak MiB: "
             "at the start, reading, training | training rows/s | the training columns in memory, MiB |",
             "|---|---|---|---|---|---|---|---|",
             *[f"| {r['rows']:,} | {r['read']:,.0f} | {r['read_ahead']:,.0f} | {r['scan']:,.0f} | {r['batches']:,.0f} | "
               f"{r['start_mib']:,.0f}, "
               f"{r['reading_peak_mib']:,.0f}, {r['train_peak_mib']:,.0f} | {r['train']:,.0f} | {r['in_memory_mib']:,.0f} |"
               for r in results], "",
             f"The same rows as shards were written before the vector column was stored plain (zstd and a dictionary on every "
             f"column): read {legacy:,.0f} rows/s, against {results[0]['read']:,.0f} above.", "",
             f"Peak memory against the shuffle buffer, the {results[-1]['rows']:,}-row cache, the scan and one epoch of "
             "batches (no student), each in a process of its own:", "",
             "| --shuffle-buffer rows | MiB at the start | after the scan | after the epoch |", "|---|---|---|---|",
             *[f"| {b['buffer']:,} | {b['start_mib']:,.0f} | {b['scan_mib']:,.0f} | {b['epoch_mib']:,.0f} |" for b in buffers], ""]
    write_result("TRAINING_STREAM.md", lines)


if __name__ == "__main__":
    main()
