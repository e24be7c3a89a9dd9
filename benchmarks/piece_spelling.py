"""How a student whose embedding table holds only its cache's pieces reads a piece the table lacks: as the
table's pieces that spell it (`PieceReader`, what `encode` does) against one unknown token (what it did
before). Students of a SentencePiece teacher's cache (benchmarks/multilingual_teacher.py trains them), the
same weights read both ways, on the Chinese sets and English STS-B; also the share of each set's sentences
that hold a piece outside the table, and CPU encode speed both ways. Writes benchmarks/results/PIECE_SPELLING.md:

    .venv/bin/python benchmarks/piece_spelling.py /tmp/distilcache-e5/bilstm-mean /tmp/distilcache-e5/bilstm-fast-mean:torch-int8
"""

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from distilcache.pairs import pairs_spearman, read_sts
from distilcache.student import load_student
from distilcache.student.encode import Student
from report import DATA, HERE

SETS = ["stsb-zh/dev", "afqmc/dev", "stsb-zh/test", "lcqmc/test", "pawsx-zh/test", "stsb-en/test"]
DEV, UNSEEN = SETS[:2], ["lcqmc/test", "pawsx-zh/test"]  # UNSEEN: sources that gave the Chinese cache no text


def _capped(name: str, limit: int):
    pairs = read_sts(DATA / f"{name}.tsv")
    pairs.sentence1, pairs.sentence2, pairs.scores = pairs.sentence1[:limit], pairs.sentence2[:limit], pairs.scores[:limit]
    return pairs


def _as_unknown(student: Student) -> Student:
    """The student reading every piece its table lacks as the unknown token, as encode did before spelling."""
    if student.reader is None:
        raise SystemExit(f"{student.directory}: its table holds the whole tokenizer; nothing to spell")
    reader = student.reader
    reader.spell = lambda token_id: [int(reader.lookup[token_id])]
    return student


def _outside_share(student: Student, texts: list[str]) -> float:
    """The share of texts with a piece outside the student's table."""
    encodings = student.tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    return float(np.mean([not student.reader.held[e.ids].all() for e in encodings]))


def _speeds(students: dict[str, Student], texts: list[str], rounds: int = 3) -> dict[str, float]:
    """Sentences/s of each, the best of `rounds`, the students timed in turn in each round."""
    best = dict.fromkeys(students, float("inf"))
    for _ in range(rounds):
        for name, student in students.items():
            started = time.perf_counter()
            student.encode(texts, show_progress_bar=False)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: len(texts) / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("students", nargs="+", help="student directories, each optionally :BACKEND (torch, torch-int8)")
    parser.add_argument("--max-pairs", type=int, default=5000, help="pairs per set at most (as multilingual_teacher.py)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sets = {name: _capped(name, args.max_pairs) for name in SETS}
    lines = [f"# Reading pieces a student's table lacks — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}; at most {args.max_pairs:,} pairs "
             f"per set; `{' '.join(['python', *sys.argv])}`", ""]
    shares: dict[str, float] = {}
    rows = []
    for spec in args.students:
        directory, _, backend = spec.partition(":")
        label = Path(directory).name + (f" ({backend})" if backend else "")
        students = {"unknown": _as_unknown(load_student(directory, backend=backend or "torch")),
                    "spelled": load_student(directory, backend=backend or "torch")}
        if not shares:
            shares = {n: _outside_share(students["spelled"], p.sentence1 + p.sentence2) for n, p in sets.items()}
        speeds = _speeds(students, sets["pawsx-zh/test"].sentence1[:2000])
        for reading, student in students.items():
            scores = {n: pairs_spearman(lambda texts: student.encode(texts, show_progress_bar=False), p) for n, p in sets.items()}
            rows.append((label, reading, scores, speeds[reading]))
            print(label, reading, {n: round(v, 2) for n, v in scores.items()}, f"{speeds[reading]:,.0f}/s", flush=True)
    lines += ["Share of each set's sentences with a piece outside the first student's table: " +
              ", ".join(f"{n} {100 * v:.1f}%" for n, v in shares.items()) + ".", "",
              "| student | a lacking piece reads as | " + " | ".join(SETS) + " | dev mean | unseen mean (LCQMC, PAWS-X) | "
              "PAWS-X sentences/s |", "|---|---|" + "---|" * (len(SETS) + 3)]
    for label, reading, scores, speed in rows:
        mean = lambda names: np.mean([scores[n] for n in names])  # noqa: E731
        lines.append(f"| {label} | {'the pieces that spell it' if reading == 'spelled' else 'the unknown token'} | " +
                     " | ".join(f"{scores[n]:.2f}" for n in SETS) + f" | {mean(DEV):.2f} | {mean(UNSEEN):.2f} | {speed:,.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "PIECE_SPELLING.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
