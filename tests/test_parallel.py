"""Parallel text: the teacher encodes a row's target text, the student reads its text through a
tokenizer that covers characters the teacher does not know."""

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from conftest import EN, ZH, make_teacher
from distilcache import open_cache
from distilcache.cache_format import CacheMismatchError, verify_cache
from distilcache.cli import main as cli
from distilcache.evaluate.encoders import TeacherEncoder
from distilcache.evaluate.metrics import paired_cosine
from distilcache.precompute import InputSpec, PoolingConfig, PrecomputeConfig, precompute
from distilcache.precompute.idf_pass import compute_idf
from distilcache.inputs import InputError, Record, Rejection, iter_input
from distilcache.student import load_student
from distilcache.train import TrainConfig, train
from distilcache.weighting import IdfTable, weighted_tokens
from distilcache.weighting.student_vocab import is_cjk

NEW_CHARS = "猫狗鱼鸟"  # CJK characters the tiny teacher's vocabulary lacks
PAIRS = [  # id, zh (the student's text), en (the teacher's text; empty: the teacher reads zh)
    ("p1", "我的猫在哪儿？", EN[0]),
    ("p2", "狗今天很好", EN[1]),
    ("p3", "这家酒店的鱼非常好", EN[2]),
    ("p4", "他在北京大学读书", ""),
    ("p5", "鸟不喜欢这本书", ""),
]


def _write_pairs(path: Path) -> Path:
    path.write_text("id\tzh\ten\n" + "".join(f"{i}\t{zh}\t{en}\n" for i, zh, en in PAIRS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def parallel(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("parallel")
    teacher = make_teacher(root / "teacher", texts=ZH + EN)
    pairs = _write_pairs(root / "pairs.tsv")
    assert cli(["precompute", "--teacher", str(teacher), "--input", str(pairs), "--id-column", "id", "--text-column", "zh",
                "--target-column", "en", "--output", str(root / "cache"), "--dtype", "float32", "--device", "cpu"]) == 0
    return teacher, pairs, root / "cache"


def test_target_rows_carry_the_teacher_vector_of_the_target_and_the_student_inputs_of_the_text(parallel):
    teacher_dir, _, cache_dir = parallel
    cache = open_cache(cache_dir)
    rows = cache.table().to_pylist()
    assert [r["id"] for r in rows] == [p[0] for p in PAIRS]
    assert [r["text"] for r in rows] == [p[1] for p in PAIRS]
    assert [r["target_text"] for r in rows] == [p[2] or None for p in PAIRS]

    # the teacher side: the target when there is one, else the text, pooled with the cache's IDF
    pooling = PoolingConfig(**cache.manifest["pooling"])
    teacher = TeacherEncoder(teacher_dir, pooling, idf=IdfTable.load(cache_dir / "idf.parquet"))
    expected = teacher.encode([en or zh for _, zh, en in PAIRS])
    assert paired_cosine(cache.vectors(), expected).min() > 0.99999

    # the student side: the text, through the student tokenizer, weighted by the same rule
    student_tokenizer = AutoTokenizer.from_pretrained(str(cache.student_tokenizer_dir))
    tokens = weighted_tokens([zh for _, zh, _ in PAIRS], student_tokenizer, pooling.max_length, IdfTable.load(cache_dir / "idf.parquet"), pooling.smoothing)
    for row, t in zip(rows, tokens):
        assert row["token_ids"] == t.token_ids.tolist()
        np.testing.assert_allclose(row["weights"], t.weights, rtol=1e-6)
    # one token per character, the new characters under ids the teacher's vocabulary does not have
    # (some tokenizers versions show an added CJK token with the spaces their normaliser puts around it)
    assert [t.strip() for t in student_tokenizer.convert_ids_to_tokens(rows[0]["token_ids"])] == list(PAIRS[0][1])
    teacher_vocab = len(AutoTokenizer.from_pretrained(str(cache.tokenizer_dir)))
    new_ids = {i for r in rows for i in r["token_ids"] if i >= teacher_vocab}
    assert sorted(t.strip() for t in student_tokenizer.convert_ids_to_tokens(sorted(new_ids))) == sorted(NEW_CHARS)


def test_the_manifest_records_which_column_fed_the_teacher_and_the_student_tokenizer(parallel):
    _, pairs, cache_dir = parallel
    manifest = open_cache(cache_dir).manifest
    assert manifest["inputs"][0]["text_field"] == "zh" and manifest["inputs"][0]["target_field"] == "en"
    assert manifest["inputs"][0]["rows_with_target"] == 3 and manifest["stats"]["rows_with_target"] == 3
    assert manifest["student_vocab"] == "teacher+cjk"
    assert manifest["student_tokenizer"]["added_tokens"] == len(NEW_CHARS)
    # a target is a document of its own in the IDF table, and `distilcache idf` counts it the same way
    assert manifest["idf"]["num_documents"] == len(PAIRS) + 3
    spec = InputSpec(pairs, id_field="id", text_field="zh", target_field="en")
    assert compute_idf([spec]).content_sha256() == manifest["idf"]["content_sha256"]
    assert verify_cache(cache_dir) == []
    tokenizer_file = cache_dir / manifest["student_tokenizer"]["dir"] / "tokenizer.json"
    original = tokenizer_file.read_bytes()
    tokenizer_file.write_text("{}")
    assert [p.file for p in verify_cache(cache_dir)] == ["student_tokenizer/tokenizer.json"]
    tokenizer_file.write_bytes(original)


def test_a_student_trained_on_parallel_rows_keeps_the_extended_tokenizer(tmp_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel-train")
    teacher = make_teacher(root / "teacher", texts=ZH + EN)
    pairs = _write_pairs(root / "pairs.tsv")
    assert cli(["precompute", "--teacher", str(teacher), "--input", str(pairs), "--id-column", "id", "--text-column", "zh",
                "--target-column", "en", "--output", str(root / "cache"), "--device", "cpu"]) == 0
    train(TrainConfig(cache=root / "cache", output=tmp_path / "student", epochs=1, batch_size=2, val_fraction=0.4, device="cpu"))
    student = load_student(tmp_path / "student")
    cached = open_cache(root / "cache").table(["text", "token_ids"]).to_pylist()
    for row in cached:  # encode tokenises exactly as the cache did, new characters included
        assert student.tokenizer(row["text"], add_special_tokens=False)["input_ids"] == row["token_ids"]
    info = json.loads((tmp_path / "student" / "distilcache_student.json").read_text())
    assert info["student"]["vocab_size"] == len(student.tokenizer) > len(AutoTokenizer.from_pretrained(str(teacher)))


def test_all_unknown_and_empty_texts_get_finite_vectors_and_similarities(parallel, tmp_path):
    teacher_dir, _, cache_dir = parallel
    unknown = ["𠀀𠀁𠀂", "☃☃☃", "", "   "]  # characters neither vocabulary has, and no characters at all
    cache = open_cache(cache_dir)
    teacher = TeacherEncoder(teacher_dir, PoolingConfig(**cache.manifest["pooling"]), idf=IdfTable.load(cache_dir / "idf.parquet"))
    train(TrainConfig(cache=cache_dir, output=tmp_path / "student", epochs=1, batch_size=2, val_fraction=0.4, device="cpu"))
    student = load_student(tmp_path / "student")
    for vectors in (teacher.encode(unknown), student.encode(unknown)):
        assert np.isfinite(vectors).all()
        assert np.isfinite(paired_cosine(vectors, vectors[::-1])).all()
        assert np.isfinite(student.similarity(vectors, vectors)).all()


def test_tsv_and_jsonl_targets_are_read_checked_and_counted(tmp_path):
    rows = list(iter_input(InputSpec(_write_pairs(tmp_path / "pairs.tsv"), "id", "zh", "en")))
    assert [r.target_text for r in rows] == [en or None for _, _, en in PAIRS]
    assert rows[0].documents == (PAIRS[0][1], PAIRS[0][2]) and rows[3].documents == (PAIRS[3][1],)

    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text('{"id": "a", "zh": "猫", "en": "cat"}\n{"id": "b", "zh": "狗", "en": 7}\n{"id": "c", "zh": "鱼"}\n')
    rows = list(iter_input(InputSpec(jsonl, "id", "zh", "en")))
    assert isinstance(rows[0], Record) and rows[0].target_text == "cat"
    assert isinstance(rows[1], Rejection) and rows[1].reason == "bad_type" and "'en'" in rows[1].detail
    assert isinstance(rows[2], Record) and rows[2].target_text is None

    with pytest.raises(InputError, match="no column"):
        list(iter_input(InputSpec(_write_pairs(tmp_path / "other.tsv"), "id", "zh", "english")))
    txt = tmp_path / "lines.txt"
    txt.write_text("猫\n")
    with pytest.raises(InputError, match=r"\.txt input has no fields"):
        list(iter_input(InputSpec(txt, target_field="en")))


def test_is_cjk_matches_the_ideograph_blocks():
    assert all(is_cjk(c) for c in "猫中文𠀀") and not any(is_cjk(c) for c in "aé？。ア한")


def test_a_rerun_with_another_target_column_is_refused(parallel):
    teacher_dir, pairs, cache_dir = parallel
    with pytest.raises(CacheMismatchError, match=r"inputs\.0\.target_field: cache has 'en', this run has None"):
        precompute(PrecomputeConfig(teacher=teacher_dir, inputs=[InputSpec(pairs, "id", "zh")], output=cache_dir,
                                    dtype="float32", device="cpu"))
