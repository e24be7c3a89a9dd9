"""A student's embedding table: the pieces its cache uses (`train --vocabulary cache`, the default for a
large vocabulary) against the whole tokenizer (`--vocabulary tokenizer`), on a cache of a SentencePiece
teacher (multilingual-e5-small: 250,002 pieces). Prints parameters, directory size, load time and CPU
encode speed of the two default BiLSTMs, trained the same way (speed and size do not depend on how long):

    .venv/bin/python benchmarks/embedding_table.py --cache "$WORKDIR"/cache-mean    # a cache of benchmarks/multilingual_teacher.py
"""

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import torch

from distilcache.cache_format import open_cache
from distilcache.evaluate.encoders import student_eval_model
from distilcache.evaluate.run import measure_speeds
from distilcache.student import load_student
from report import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distilcache-embedding-table"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--sentences", type=int, default=2000, help="held-out cache texts timed")
    args = parser.parse_args()
    cache = open_cache(args.cache)
    texts = cache.table(["text"])["text"].to_pylist()[-args.sentences:]
    rows = []
    for table in ("cache", "tokenizer"):
        student = args.workdir / table
        if not (student / "summary.json").exists():
            run(["train", "--cache", args.cache, "--epochs", str(args.epochs), "--vocabulary", table, "--output", student],
                args.workdir, [])
        started = time.perf_counter()
        loaded = load_student(student, backend="torch")
        load_seconds = time.perf_counter() - started
        size = sum(p.stat().st_size for p in student.iterdir() if p.is_file() and p.name not in ("checkpoint.pt",))
        rows.append((table, loaded.model.config.vocab_size, sum(p.numel() for p in loaded.model.parameters()), size, load_seconds,
                     student_eval_model(student, backend="torch")))
    speeds = measure_speeds([row[-1] for row in rows], texts, latency_calls=0)
    print(f"# embedding table — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}; cache {cache.teacher['name']}, "
          f"{cache.num_rows:,} rows; {len(texts):,} cache texts timed (batch 256, best of 5 passes)")
    print()
    print("| --vocabulary | table rows | parameters | student directory (without checkpoint) | load s | sentences/s |")
    print("|---|---|---|---|---|---|")
    for (table, vocab, params, size, load_seconds, _), speed in zip(rows, speeds):
        print(f"| {table} | {vocab:,} | {params / 1e6:.1f}M | {size / 2**20:.0f} MiB | {load_seconds:.1f} | "
              f"{speed['sentences_per_second']:,.0f} |")


if __name__ == "__main__":
    main()
