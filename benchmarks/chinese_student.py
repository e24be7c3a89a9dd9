"""A Chinese student from an English teacher: parallel-text targets in the cache (issue 8).

The teacher (all-MiniLM-L6-v2) reads Chinese badly. Each Chinese row with an English translation
gets the teacher's vector of the translation; the student reads the Chinese. English-only rows keep
the student's English. Writes benchmarks/results/CHINESE.md and CHINESE.json. Needs, besides the
package's test install, wordnet-base (optional, English rows) and ../shared/data:

    .venv/bin/python benchmarks/chinese_student.py        # about 20 minutes on 2 CPU cores (reruns reuse the cache and student)

Training data (never a test sentence; dev sets only for choosing): HSK zh-en pairs, Chinese STS-B
train rows aligned with certainty to the English rows they translate (benchmarks/parallel_text.py),
and English sentences: STS-B train, HSK translations, WordNet glosses.
"""

import argparse
import datetime
import json
import os
import platform
import random
import time
from pathlib import Path

import torch
import transformers

from distilcache.cache_format import open_cache
from distilcache.evaluate import evaluate_models, read_sts
from distilcache.evaluate.encoders import TeacherEncoder, student_eval_model
from distilcache.evaluate.report import write_report
from distilcache.precompute import PoolingConfig
from distilcache.weighting import IdfTable
from parallel_text import aligned_stsb_pairs, hsk_pairs
from report import DATA, HERE, _unique, command_block, run, start, train_once, wordnet_sentences

TEST_SETS = ["stsb-zh/test.tsv", "lcqmc/test.tsv", "stsb-en/test.tsv"]
DEV_SETS = ["stsb-zh/dev.tsv", "lcqmc/dev.tsv", "stsb-en/dev.tsv"]


def corpus(workdir: Path, wordnet_limit: int) -> tuple[Path, dict[str, int]]:
    """One .jsonl: parallel rows {id, text: zh, target: en} and English rows {id, text}."""
    pairs = {"hsk_pairs": hsk_pairs(), "stsb_train_pairs": aligned_stsb_pairs("train")[0]}
    lines = (DATA / "stsb-en" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    english = {
        "stsb_en_train": _unique(s for line in lines for s in line.split("\t")[:2]),
        "hsk_en": _unique(en for _, en in pairs["hsk_pairs"]),
        "wordnet": random.Random(0).sample(wordnet := wordnet_sentences(), min(wordnet_limit, len(wordnet))),
    }
    path = workdir / "corpus.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for name, items in pairs.items():
            for i, (zh, en) in enumerate(items):
                f.write(json.dumps({"id": f"{name}:{i}", "text": zh, "target": en}, ensure_ascii=False) + "\n")
        for name, texts in english.items():
            for i, text in enumerate(texts):
                f.write(json.dumps({"id": f"{name}:{i}", "text": text}, ensure_ascii=False) + "\n")
    return path, {name: len(items) for name, items in (pairs | english).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distilcache-chinese"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--wordnet", type=int, default=20000, help="WordNet sentences among the English rows")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--fresh", action="store_true", help="rebuild the cache and retrain the student")
    args = parser.parse_args()
    started = time.time()
    teacher = start(args.workdir, args.fresh)
    path, sizes = corpus(args.workdir, args.wordnet)
    cache, student = args.workdir / "cache", args.workdir / "bilstm-zh"
    commands: list[str] = []
    run(["precompute", "--teacher", teacher, "--teacher-name", "all-MiniLM-L6-v2", "--input", path,
         "--target-field", "target", "--output", cache], args.workdir, commands)
    train_once(["--cache", cache, "--epochs", str(args.epochs)], student, args.workdir, commands)

    opened = open_cache(cache)
    idf = IdfTable.load(opened.idf_path)
    models = [
        TeacherEncoder(teacher, PoolingConfig("idf"), idf).as_eval_model("teacher on the text itself, IDF pooling (the cache's)"),
        TeacherEncoder(teacher, PoolingConfig("mean")).as_eval_model("teacher on the text itself, mean pooling", is_teacher=False),
        student_eval_model(student),
    ]
    # quality only: speed is benchmarks/student_speed.py's job (a Chinese student is the same BiLSTM)
    results = evaluate_models(models, [read_sts(DATA / name) for name in TEST_SETS + DEV_SETS], opened, max_rows=5000,
                              speed_sentences=0)

    manifest = opened.manifest
    data = ", ".join(f"{name} {count:,}" for name, count in sizes.items())
    preamble = "\n".join([
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC in {(time.time() - started) / 60:.0f} min on "
        f"{platform.machine()}, {os.cpu_count()} cores, CPU only. torch {torch.__version__}, transformers {transformers.__version__}.",
        "",
        f"Cache: {opened.num_rows:,} rows, {manifest['stats']['rows_with_target']:,} of them Chinese with an English target "
        f"(the teacher encoded the English, the student reads the Chinese); the student tokenizer adds "
        f"{manifest['student_tokenizer']['added_tokens']:,} CJK characters the teacher reads as [UNK]. Rows by source: {data}. "
        "No test sentence is used; the dev sets are reported for choosing, the test sets for the target.",
        "",
        "Fidelity and recall@10 are measured on held-out cache rows (5% by id hash): for a Chinese row the reference is the "
        "teacher's vector of its English translation, so the teacher's own fidelity there is its cross-lingual gap. "
        f"Speed is not measured here (the student is the default BiLSTM with "
        f"{manifest['student_tokenizer']['added_tokens']:,} more embedding rows): see "
        "benchmarks/student_speed.py.",
        "",
        "Commands:",
        "",
        *command_block(commands, "benchmarks/chinese_student.py", parser.get_default("workdir")),
    ])
    paths = write_report(results, args.out, title="A Chinese student from an English teacher (parallel-text targets)",
                         preamble=preamble, name="CHINESE", plot=False)
    print(paths["markdown"].read_text())


if __name__ == "__main__":
    main()
