"""Students on text the cache never held (issue 18): English, all-MiniLM-L6-v2, STS-B dev and test.

Three corpora:
- in-domain: STS-B's training sentences, 30,000 WordNet glosses and examples, the HSK English
  sentences (the ablation's corpus, 44,785 rows): STS-B dev and test come from the sources the cache holds;
- out-of-domain: 40,536 WordNet glosses and examples (mostly glosses, which are definitions) and the HSK
  English sentences, nothing from STS-B, at the same number of rows;
- out-of-domain sentences: all 42,440 WordNet examples (sentences of use) and the HSK English sentences
  (46,689 rows), nothing from STS-B: the "cache of general sentences" issue 18's target names;
- general English at scale: all the English text that installs here (../shared/DATA.md), nothing from
  STS-B: WordNet's glosses and examples, the HSK English sentences and Debian's English fortunes split
  into sentences (about 200k rows, the size of issue 18's second target).

Each cache trains the default BiLSTM, for train's own epochs (up to 10, chosen by held-out fidelity) as
a user runs it, and for 4 epochs where the levers (the pooling the cache stores, teacher-side
augmentation, the embedding anchor, token-level targets) are measured on the out-of-domain corpus, as in
the ablation; the fast preset, the seeded transformer and sentence-transformers' own distillation
recipe (the real library) train on the same text for the same epochs. Every model is compared with the
teacher used the sentence-transformers way (mean pooling), which is what a user would run instead.
Selection is on STS-B dev; test is reported. Writes benchmarks/results/GENERALISATION.md (the levers),
GENERALISATION_DEFAULTS.md (train's defaults), GENERALISATION_SCALE.md (train's defaults on about 45k and
about 200k rows, each cache pooled by IDF and by mean, a second seed and a larger LSTM at 200k) and
GENERALISATION_EPOCHS.md (which signal, held-out fidelity or STS-B dev, follows STS-B test from epoch to epoch,
both scored after every epoch and only reported) and GENERALISATION_NEGATIVES.md (train's defaults with the
in-batch similarity-matrix loss, and with a queue of earlier rows' teacher vectors joining it); --part makes one
of them.

    apt-get install wordnet-base fortunes
    .venv/bin/pip install accelerate                  # sentence-transformers' trainer needs it
    .venv/bin/python benchmarks/generalisation.py     # about six hours on 2 CPU cores: defaults about 50 minutes, scale
                                                      # two and a half hours, epochs an hour, negatives half an hour
"""

import argparse
import datetime
import json
import os
import platform
import re
import time
from pathlib import Path

import numpy as np
import torch

from ablation import corpus as in_domain_corpus
from distilcache.cache_format import open_cache
from distilcache.evaluate import evaluate_models, read_sts
from distilcache.evaluate.encoders import EvalModel, TeacherEncoder, student_eval_model
from distilcache.pairs import StsPairs, spearman
from distilcache.teacher.config import PoolingConfig
from distilcache.weighting import IdfTable
from report import (DATA, _unique, command, command_block, out_of_domain_corpus, run, start, train_once, wordnet_sentences, write_corpus,
                    write_result)

SETS = ["stsb-en/dev", "stsb-en/test"]
ST_EPOCHS = 1  # the seeded transformer and the sentence-transformers recipe, on the same text

SHAPING = "word_dropout,span_deletion,crop,local_shuffle,join"  # the variants that reshape a text (all but word_replacement)
# cache directory: (corpus, precompute options beyond the defaults)
CACHES = {
    "cache-in-domain": ("in", []),
    "cache-out-of-domain": ("out", []),
    "cache-out-of-domain-mean": ("out", ["--pooling", "mean"]),
    "cache-out-of-domain-augment-2": ("out", ["--augment", "2", "--augment-operations", SHAPING]),
    "cache-out-of-domain-augment-2-replace": ("out", ["--augment", "2"]),
    "cache-out-of-domain-seed": ("out", ["--export-seed-layers", "2"]),
    "cache-out-of-domain-mean-augment-2-replace": ("out", ["--pooling", "mean", "--augment", "2"]),
    "cache-out-of-domain-mean-seed": ("out", ["--pooling", "mean", "--export-seed-layers", "2"]),
    "cache-out-of-domain-seed-token-states-64": ("out", ["--export-seed-layers", "2", "--token-states", "64"]),
    "cache-sentences": ("sentences", ["--export-seed-layers", "2"]),
    "cache-general": ("general", []),
    "cache-general-mean": ("general", ["--pooling", "mean"]),
    "cache-sentences-mean": ("sentences", ["--pooling", "mean", "--export-seed-layers", "2"]),
}
# what train gives as a user runs it, its own epochs (up to 10, held-out fidelity choosing one): student directory:
# (cache directory, train options); the transformer for the epochs of sentence-transformers' recipe beside it
DEFAULTS = {
    "bilstm-in-domain-default": ("cache-in-domain", []),
    "bilstm-out-of-domain-default": ("cache-out-of-domain", []),
    "bilstm-out-of-domain-fast-default": ("cache-out-of-domain", ["--preset", "fast"]),
    "bilstm-sentences-default": ("cache-sentences", []),
    "bilstm-sentences-default-seed-1": ("cache-sentences", ["--seed", "1"]),
    "bilstm-sentences-default-seed-2": ("cache-sentences", ["--seed", "2"]),
    "bilstm-sentences-fast-default": ("cache-sentences", ["--preset", "fast"]),
    "transformer-seeded-sentences": ("cache-sentences", ["--student", "transformer", "--epochs", str(ST_EPOCHS)]),
    "transformer-seeded-sentences-2-epochs": ("cache-sentences", ["--student", "transformer", "--epochs", "2"]),
    "transformer-seeded-sentences-default": ("cache-sentences", ["--student", "transformer"]),
}
# train's defaults on about 45k rows of general sentences and on about 200k rows of all the general English here,
# each on a cache pooled the LTD-BERT way (IDF, the default) and one pooled by mean (the teacher's own way)
SCALE = {
    "bilstm-sentences-default": DEFAULTS["bilstm-sentences-default"],
    "bilstm-sentences-mean-default": ("cache-sentences-mean", []),
    "bilstm-general-default": ("cache-general", []),
    "bilstm-general-default-seed-1": ("cache-general", ["--seed", "1"]),
    "bilstm-general-mean-default": ("cache-general-mean", []),
    "bilstm-general-hidden-192": ("cache-general", ["--hidden", "192"]),  # LSTM size, where more text might use it
    "bilstm-sentences-fast-default": DEFAULTS["bilstm-sentences-fast-default"],
    "bilstm-sentences-mean-fast-default": ("cache-sentences-mean", ["--preset", "fast"]),
    "bilstm-general-fast-default": ("cache-general", ["--preset", "fast"]),
    "bilstm-general-mean-fast-default": ("cache-general-mean", ["--preset", "fast"]),
    "transformer-seeded-sentences-default": DEFAULTS["transformer-seeded-sentences-default"],
    "transformer-seeded-sentences-mean-default": ("cache-sentences-mean", ["--student", "transformer"]),
}
# lever 6: which signal follows quality on text unlike the cache's from epoch to epoch, held-out fidelity or a dev
# set: train's defaults with STS-B dev and test scored after every epoch (both only reported: held-out fidelity
# still picks the saved epoch, as it does for a user)
EVERY_EPOCH = [option for name in SETS for option in ("--dev-sts", DATA / f"{name}.tsv")]
BY_EPOCH = {
    "bilstm-sentences-default-by-epoch": ("cache-sentences", EVERY_EPOCH),
    "bilstm-sentences-fast-default-by-epoch": ("cache-sentences", ["--preset", "fast", *EVERY_EPOCH]),
    "transformer-seeded-sentences-default-by-epoch": ("cache-sentences", ["--student", "transformer", *EVERY_EPOCH]),
    "bilstm-general-default-by-epoch": ("cache-general", EVERY_EPOCH),
}
# lever 3, more rows to compare: train's defaults with the in-batch similarity-matrix loss added, and with the
# teacher vectors of earlier batches joining it (--similarity-queue)
NEGATIVES = {
    "bilstm-sentences-default": DEFAULTS["bilstm-sentences-default"],
    "bilstm-sentences-similarity-1": ("cache-sentences", ["--similarity-weight", "1"]),
    "bilstm-sentences-similarity-1-queue-4096": ("cache-sentences", ["--similarity-weight", "1", "--similarity-queue", "4096"]),
    "bilstm-sentences-similarity-1-queue-16384": ("cache-sentences", ["--similarity-weight", "1", "--similarity-queue", "16384"]),
    # at the default temperature (0.05) each row's own column holds nearly all of both softmaxes; at 0.2 the others count
    "bilstm-sentences-similarity-1-t-0.2": ("cache-sentences", ["--similarity-weight", "1", "--temperature", "0.2"]),
}
# the levers: student directory: (cache directory, train options), 4 epochs as in the ablation, 2 over the caches
# three times larger
LEVERS = {
    "bilstm-in-domain": ("cache-in-domain", ["--epochs", "4"]),
    "bilstm-out-of-domain": ("cache-out-of-domain", ["--epochs", "4"]),
    "bilstm-out-of-domain-mean": ("cache-out-of-domain-mean", ["--epochs", "4"]),
    "bilstm-out-of-domain-augment-2": ("cache-out-of-domain-augment-2", ["--epochs", "2"]),
    "bilstm-out-of-domain-anchor-1": ("cache-out-of-domain", ["--epochs", "4", "--embedding-anchor", "1"]),
    "bilstm-out-of-domain-augment-2-replace": ("cache-out-of-domain-augment-2-replace", ["--epochs", "2"]),
    "bilstm-out-of-domain-mean-augment-2-replace": ("cache-out-of-domain-mean-augment-2-replace", ["--epochs", "2"]),
    "transformer-seeded-out-of-domain": ("cache-out-of-domain-seed", ["--student", "transformer", "--epochs", str(ST_EPOCHS)]),
    "transformer-seeded-out-of-domain-mean": ("cache-out-of-domain-mean-seed", ["--student", "transformer", "--epochs", str(ST_EPOCHS)]),
    "transformer-seeded-out-of-domain-no-special-tokens": ("cache-out-of-domain-seed", ["--student", "transformer", "--epochs",
                                                                                         str(ST_EPOCHS), "--no-special-tokens"]),
    "transformer-seeded-out-of-domain-mean-no-special-tokens": ("cache-out-of-domain-mean-seed", ["--student", "transformer", "--epochs",
                                                                                                   str(ST_EPOCHS), "--no-special-tokens"]),
    "bilstm-out-of-domain-special-tokens": ("cache-out-of-domain", ["--epochs", "4", "--special-tokens"]),
    "bilstm-out-of-domain-token-weights-cache": ("cache-out-of-domain", ["--epochs", "4", "--token-weights", "cache"]),
    "bilstm-out-of-domain-dropout-0.3": ("cache-out-of-domain", ["--epochs", "4", "--dropout", "0.3"]),
    "bilstm-out-of-domain-token-loss-1": ("cache-out-of-domain-seed-token-states-64", ["--epochs", "4", "--token-loss", "1"]),
    "bilstm-out-of-domain-token-loss-0.2": ("cache-out-of-domain-seed-token-states-64", ["--epochs", "4", "--token-loss", "0.2"]),
    "transformer-seeded-out-of-domain-token-loss-1": ("cache-out-of-domain-seed-token-states-64",
                                                      ["--student", "transformer", "--epochs", str(ST_EPOCHS), "--token-loss", "1"]),
}
# sentence-transformers' own distillation recipe, the one a user would pick instead: the teacher cut to its
# layers 0 and 5 (as the seeded transformer above), mean pooling, MSE to the teacher's embeddings, AdamW 1e-4
ST_LAYERS = [0, 5]
# Debian's English fortunes but drawings and the files of other languages
FORTUNES = Path("/usr/share/games/fortunes")
NOT_ENGLISH_PROSE = {"art", "ascii-art", "chinese", "tang300", "song100", "translate-me"}
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def english_fortunes() -> list[str]:
    """The sentences of Debian's English fortunes (entries split by a line of "%"), attribution lines left out."""
    files = sorted(p for p in FORTUNES.glob("*") if p.is_file() and not p.is_symlink() and not p.suffix and p.name not in NOT_ENGLISH_PROSE)
    if not files:
        raise SystemExit("the general English corpus needs Debian's fortunes: apt-get install fortunes")
    found = []
    for path in files:
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            text = " ".join(line.strip() for line in entry.splitlines() if not line.strip().startswith(("--", "\u2014")))
            found += [s for s in SENTENCE_END.split(text) if len(s.split()) >= 3]
    return _unique(found)


def general_english_corpus(workdir: Path) -> list[Path]:
    """All the general English text that installs here: WordNet's glosses and examples, the HSK English
    sentences and the English fortunes, each text once and none that STS-B holds (any split)."""
    from hsk_sentences_audio import load_sentences

    seen = {" ".join(s.split()) for split in ("train", "dev", "test")  # STS-B's sentences, then each text kept
            for line in (DATA / "stsb-en" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:] for s in line.split("\t")[:2]}
    wordnet = wordnet_sentences()
    if not wordnet:
        raise SystemExit("the general English corpus needs WordNet: apt-get install wordnet-base")
    sources = {}
    for name, texts in (("wordnet", wordnet), ("hsk_en", [s["translation"]["en"] for s in load_sentences()]),
                        ("fortunes_en", english_fortunes())):
        kept = []
        for text in texts:
            text = " ".join(text.split())
            if text and text not in seen:
                seen.add(text)
                kept.append(text)
        sources[name] = kept
    return write_corpus(workdir / "general", sources)


def sentence_transformers_distillation(teacher: Path, texts: list[str], output: Path, epochs: int) -> float:
    """Train sentence-transformers' distillation recipe into output (unless done before); its training
    seconds (the teacher's embeddings included, as the recipe computes them)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: nothing to fetch
    seconds_file = output / "training_seconds.txt"
    if seconds_file.exists():
        return float(seconds_file.read_text())
    started = time.perf_counter()
    teacher_model = SentenceTransformer(str(teacher), device="cpu")
    targets = teacher_model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=True)
    student = SentenceTransformer(str(teacher), device="cpu")
    bert = student[0].auto_model
    bert.encoder.layer = torch.nn.ModuleList([bert.encoder.layer[i] for i in ST_LAYERS])
    bert.config.num_hidden_layers = len(ST_LAYERS)
    data = Dataset.from_dict({"sentence": texts, "label": targets.tolist()})
    arguments = SentenceTransformerTrainingArguments(str(output / "run"), num_train_epochs=epochs, per_device_train_batch_size=64,
                                                     learning_rate=1e-4, warmup_steps=0.1, save_strategy="no", report_to=[],
                                                     use_cpu=True, seed=0)
    SentenceTransformerTrainer(model=student, args=arguments, train_dataset=data, loss=losses.MSELoss(student)).train()
    seconds = time.perf_counter() - started
    student.save(str(output))
    seconds_file.write_text(f"{seconds:.1f}")
    return seconds


# a part of the benchmark: its results file, its students, and the corpora sentence-transformers' recipe trains on
PARTS = {
    "levers": ("GENERALISATION.md", LEVERS, ["out"]),
    "defaults": ("GENERALISATION_DEFAULTS.md", DEFAULTS, ["sentences"]),
    "scale": ("GENERALISATION_SCALE.md", SCALE, []),
    "epochs": ("GENERALISATION_EPOCHS.md", BY_EPOCH, []),
    "negatives": ("GENERALISATION_NEGATIVES.md", NEGATIVES, []),
}
CORPUS_NAMES = {"in": "in-domain", "out": "out-of-domain", "sentences": "out-of-domain sentences", "general": "general English"}


def by_epoch_lines(students: dict[str, tuple[Path, str]], teacher: dict[str, float], minutes: float) -> list[str]:
    """GENERALISATION_EPOCHS.md: for each student (its directory and its cache), the epoch held-out fidelity picks
    and the one STS-B dev would pick, STS-B test at each, and how each signal ranks the epochs against test;
    then every epoch's scores."""
    dev, test = SETS
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [f"# Students on text the cache never held (English), which signal picks the epoch — {now:%Y-%m-%d %H:%M} UTC", "",
             f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; all-MiniLM-L6-v2; run in {minutes:.0f} min. "
             "train's defaults, with STS-B dev and test scored after every epoch (`--dev-sts`, only reported: held-out "
             "fidelity picks the saved epoch, as for a user). No cache holds a sentence of STS-B, so test measures quality on "
             "text unlike the cache's; dev is the signal a user with a labelled set of their own would have. Spearman x100; "
             f"in brackets, the share of the teacher's score (mean pooling: dev {teacher[dev]:.1f}, test {teacher[test]:.1f}). "
             "Rank correlation: Spearman x100 across the epochs between the signal and test.", "",
             "| model | cache | epochs | training minutes | epoch fidelity picks: test | epoch dev picks: test | best test (epoch) | "
             "rank correlation with test: fidelity | dev |",
             "|---|---|---|---|---|---|---|---|---|"]
    histories = {}
    for name, (directory, cache) in students.items():
        history = [json.loads(line) for line in (directory / "train_log.jsonl").read_text().splitlines()]
        histories[name] = history
        fidelity = np.array([epoch["val_fidelity"] for epoch in history])
        dev_scores, test_scores = (np.array([epoch["dev_spearman"][s] for epoch in history]) for s in SETS)
        picked = [f"{test_scores[i]:.1f} ({100 * test_scores[i] / teacher[test]:.1f}%), epoch {i + 1}"
                  for i in (int(fidelity.argmax()), int(dev_scores.argmax()))]
        best = int(test_scores.argmax())
        minutes = sum(epoch["seconds"] for epoch in history) / 60
        lines.append(f"| {name} | {cache} | {len(history)} | {minutes:.1f} | {picked[0]} | {picked[1]} | "
                     f"{test_scores[best]:.1f} ({best + 1}) | {spearman(fidelity, test_scores):.0f} | {spearman(dev_scores, test_scores):.0f} |")
    for name, history in histories.items():
        lines += ["", f"{name}:", "", "| epoch | held-out fidelity | STS-B dev | STS-B test |", "|---|---|---|---|"]
        lines += [f"| {epoch['epoch']} | {epoch['val_fidelity']:.4f} | {epoch['dev_spearman'][dev]:.2f} | {epoch['dev_spearman'][test]:.2f} |"
                  for epoch in history]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distilcache-ood"))
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all",
                        help="levers: GENERALISATION.md; defaults: GENERALISATION_DEFAULTS.md; scale: GENERALISATION_SCALE.md; "
                             "epochs: GENERALISATION_EPOCHS.md; negatives: GENERALISATION_NEGATIVES.md; all: each")
    args = parser.parse_args()
    teacher = start(args.workdir, fresh=False)
    builders = {"in": lambda: in_domain_corpus(args.workdir / "in-domain", 30_000),
                "out": lambda: out_of_domain_corpus(args.workdir),
                "sentences": lambda: out_of_domain_corpus(args.workdir, sentences=True),
                "general": lambda: general_english_corpus(args.workdir)}
    parts = PARTS if args.part == "all" else [args.part]
    used = {CACHES[cache][0] for part in parts for cache, _ in PARTS[part][1].values()} | {c for part in parts for c in PARTS[part][2]}
    corpora = {name: build() for name, build in builders.items() if name in used}  # only what the parts read: each needs its packages
    for part in parts:
        run_part(part, teacher, corpora, args.workdir, parser.get_default("workdir"))


def run_part(part: str, teacher: Path, corpora: dict[str, list[Path]], workdir: Path, default_workdir: Path) -> None:
    """Make the part's caches and students (reusing those made before) and write its results file."""
    results_file, students, _ = PARTS[part]
    started = time.time()
    commands: list[str] = []
    caches = {name: CACHES[name] for name in dict.fromkeys(cache for cache, _ in students.values())}
    for name, (corpus, options) in caches.items():
        cache = workdir / name
        argv = ["precompute", "--teacher", teacher, "--teacher-name", "all-MiniLM-L6-v2", *options,
                *[a for p in corpora[corpus] for a in ("--input", p)], "--output", cache]
        if (cache / "manifest.json").exists():
            commands.append(command(argv, workdir) + "   # reused from an earlier run")
        else:
            run(argv, workdir, commands)
    for name, (cache, options) in students.items():
        train_once(["--cache", workdir / cache, *options], workdir / name, workdir, commands)
    described = {name: " ".join([CORPUS_NAMES[corpus], *options]) for name, (corpus, options) in caches.items()}
    sts = [read_sts(DATA / f"{name}.tsv") for name in SETS]
    mean_teacher = TeacherEncoder(teacher, PoolingConfig("mean")).as_eval_model("teacher, mean pooling (the sentence-transformers way)")
    if part == "epochs":
        (teacher_result,) = evaluate_models([mean_teacher], sts, None, speed_sentences=0)
        lines = by_epoch_lines({name: (workdir / name, described[cache]) for name, (cache, _) in students.items()},
                               {s: teacher_result["sts"][s]["spearman"] for s in SETS}, (time.time() - started) / 60)
    else:
        lines = comparison_lines(part, teacher, mean_teacher, sts, described, corpora, workdir, started)
    lines += ["", "Commands:", "", *command_block(commands, f"benchmarks/generalisation.py --part {part}", default_workdir), ""]
    write_result(results_file, lines)


def comparison_lines(part: str, teacher: Path, mean_teacher: EvalModel, sts: list[StsPairs], described: dict[str, str],
                     corpora: dict[str, list[Path]], workdir: Path, started: float) -> list[str]:
    """The results of a part that compares models: the teacher (mean pooling, and as each corpus's IDF pooling makes
    it), the part's students and sentence-transformers' recipe, each scored on STS-B dev and test."""
    _, students, st_corpora = PARTS[part]
    caches = {name: CACHES[name] for name in described}
    rows = [(mean_teacher, "—", None, None)]
    for name, (corpus, options) in caches.items():
        if "--pooling" not in options and CORPUS_NAMES[corpus] not in (row[1] for row in rows):
            # the teacher as this corpus's IDF pooling makes it
            encoder = TeacherEncoder(teacher, PoolingConfig("idf"), IdfTable.load(open_cache(workdir / name).idf_path))
            rows.append((encoder.as_eval_model("teacher, IDF pooling"), CORPUS_NAMES[corpus], None, None))
    for name, (cache, _) in students.items():
        student = workdir / name
        rows.append((student_eval_model(student), described[cache], open_cache(workdir / cache),
                     json.loads((student / "summary.json").read_text())))

    from sentence_transformers import SentenceTransformer

    for corpus in st_corpora:
        texts = [line for path in corpora[corpus] for line in path.read_text(encoding="utf-8").splitlines()]
        st_dir = workdir / f"sentence-transformers-distilled-{CORPUS_NAMES[corpus].replace(' ', '-')}"
        st_seconds = sentence_transformers_distillation(teacher, texts, st_dir, ST_EPOCHS)
        st_model = SentenceTransformer(str(st_dir), device="cpu")
        rows.append((EvalModel(f"sentence-transformers distillation (layers {ST_LAYERS}, MSE, AdamW 1e-4), {ST_EPOCHS} epoch(s)",
                               lambda batch, batch_size, model=st_model: model.encode(batch, batch_size=batch_size, convert_to_numpy=True),
                               0, 0),
                     f"{CORPUS_NAMES[corpus]} text, no cache", None, {"seconds": st_seconds, "rows_seen": len(texts) * ST_EPOCHS}))

    results = []
    for model, name, opened, summary in rows:
        (result,) = evaluate_models([model], sts, opened, speed_sentences=0)
        results.append((model, name, opened, summary, result))
        print(model.name, {k: round(v["spearman"], 2) for k, v in result["sts"].items()}, flush=True)
    top = {s: results[0][-1]["sts"][s]["spearman"] for s in SETS}
    title = {"defaults": "what train gives by default", "scale": "train's defaults on 45k and 200k rows, IDF and mean pooling",
             "levers": "the levers", "negatives": "the similarity-matrix loss, over the batch and over a queue of earlier rows"}[part]
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [f"# Students on text the cache never held (English), {title} — {now:%Y-%m-%d %H:%M} UTC", "",
             f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; all-MiniLM-L6-v2; run in "
             f"{(time.time() - started) / 60:.0f} min. Spearman x100 on STS-B; in brackets, the share of the teacher's score "
             "(mean pooling, as sentence-transformers runs it). In-domain: the cache holds STS-B's training sentences; "
             "out-of-domain: it holds nothing from STS-B (WordNet glosses and examples, and HSK), at the same number of source rows; "
             "out-of-domain sentences: WordNet's example sentences and HSK, nothing from STS-B; general English: WordNet's "
             "glosses and examples, HSK and Debian's English fortunes, no sentence of STS-B.", "",
             "| model | cache | cache rows | training rows seen | training minutes | STS-B dev | STS-B test | held-out fidelity |",
             "|---|---|---|---|---|---|---|---|"]
    for model, name, opened, summary, result in results:
        scores = " | ".join(f"{result['sts'][s]['spearman']:.1f} ({100 * result['sts'][s]['spearman'] / top[s]:.1f}%)" for s in SETS)
        if summary is None:
            lines.append(f"| {model.name} | {name} | — | — | — | {scores} | — |")
        elif opened is None:  # trained outside distilcache
            lines.append(f"| {model.name} | {name} | — | {summary['rows_seen']:,} | {summary['seconds'] / 60:.1f} | {scores} | — |")
        else:
            minutes = sum(epoch["seconds"] for epoch in summary["history"]) / 60
            lines.append(f"| {model.name} | {name} | {opened.num_rows:,} | {summary['train_rows'] * summary['epochs_run']:,} | "
                         f"{minutes:.1f} | {scores} | {result['fidelity']:.3f} |")
    for name in caches:
        states = open_cache(workdir / name).manifest.get("token_states")
        if states:
            lines += ["", f"{name}: token states in {states['dim']} principal components (fitted on {states['fit_tokens']:,} token states, "
                          f"keeping {100 * states['explained_variance']:.1f}% of their variance) cost {states['bytes_per_row']:,.0f} bytes "
                          f"per row, on {states['rows_with_states']:,} rows."]
    return lines


if __name__ == "__main__":
    main()
