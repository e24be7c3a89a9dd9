"""distilcache finetune: labelled pairs, the teacher as a soft label, a student directory out."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_teacher, recombined_sentences, tiny_cache, write_lines
from distilcache.cache_format.errors import ConfigError, DataFileError
from distilcache.cache_format import open_cache
from distilcache.cli import main as cli
from distilcache.evaluate.metrics import similarity_agreement
from distilcache.pairs import read_sts, spearman
from distilcache.precompute import InputSpec, PrecomputeConfig, precompute
from distilcache.student import load_student
from distilcache.train import FinetuneConfig, TrainConfig, train
from distilcache.train.finetune import finetune, pair_loss
from distilcache.train.losses import cosent_loss, cosine_mse_loss, similarity_matrix_loss

SENTENCES = recombined_sentences(300, seed=21)


def test_cosent_by_hand():
    cosines, labels = torch.tensor([0.9, 0.2, 0.5], dtype=torch.float64), torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64)
    # ordered pairs (i, j) with labels[i] > labels[j]: (0, 1), (0, 2), (2, 1)
    expected = math.log(1 + math.exp(20 * (0.2 - 0.9)) + math.exp(20 * (0.5 - 0.9)) + math.exp(20 * (0.2 - 0.5)))
    assert cosent_loss(cosines, labels).item() == pytest.approx(expected, rel=1e-5)
    swapped = torch.tensor([0.2, 0.9, 0.5], dtype=torch.float64)  # the most similar pair now has the lowest cosine
    assert cosent_loss(swapped, labels).item() > 10 * cosent_loss(cosines, labels).item()
    assert cosent_loss(cosines, torch.ones(3, dtype=torch.float64)).item() == 0.0  # equal labels order nothing
    assert cosine_mse_loss(cosines, labels).item() == pytest.approx(((0.1 ** 2) + (0.2 ** 2) + 0) / 3)


def test_the_pair_loss_weighs_the_teacher_side_by_alpha():
    generator = torch.Generator().manual_seed(0)
    vectors, teacher = torch.randn(6, 8, generator=generator), torch.randn(6, 8, generator=generator)
    labels = torch.tensor([1.0, 0.2, 0.6])
    cosines = torch.nn.functional.cosine_similarity(vectors[:3], vectors[3:])
    soft, gold = similarity_matrix_loss(vectors, teacher, 0.05), cosent_loss(cosines, labels)
    config = lambda alpha: FinetuneConfig(student=Path("s"), pairs=Path("p"), output=Path("o"), alpha=alpha)  # noqa: E731
    assert pair_loss(vectors, teacher, labels, config(0.0)).item() == pytest.approx(gold.item(), rel=1e-6)
    assert pair_loss(vectors, teacher, labels, config(1.0)).item() == pytest.approx(soft.item(), rel=1e-6)
    assert pair_loss(vectors, teacher, labels, config(0.25)).item() == pytest.approx(0.25 * soft.item() + 0.75 * gold.item(), rel=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("finetune")
    tiny_cache(root, SENTENCES, keep_teacher=True)
    teacher = root / "teacher"
    train(TrainConfig(cache=root / "cache", output=root / "student", epochs=2, batch_size=32, device="cpu"))
    return {"root": root, "teacher": teacher, "cache": root / "cache", "student": root / "student"}


def _overlap_pairs(path: Path, sentences: list[str], seed: int, count: int) -> Path:
    """Pairs scored 0-5 by their word overlap: a labelling the distilled student does not know."""
    rng = np.random.default_rng(seed)
    lines = ["sentence1\tsentence2\tscore"]
    for _ in range(count):
        a, b = (sentences[i] for i in rng.choice(len(sentences), 2, replace=False))
        words_a, words_b = set(a.split()), set(b.split())
        lines.append(f"{a}\t{b}\t{5 * len(words_a & words_b) / max(1, len(words_a | words_b)):.3f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _score(directory: Path, pairs_file: Path) -> float:
    pairs, student = read_sts(pairs_file), load_student(directory)
    a, b = student.encode(pairs.sentence1), student.encode(pairs.sentence2)
    return spearman((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1), pairs.scores)


def test_finetuning_on_gold_pairs_raises_their_spearman_and_writes_a_student_like_any_other(trained, tmp_path, capsys):
    train_pairs = _overlap_pairs(tmp_path / "train.tsv", SENTENCES[:200], seed=1, count=400)
    dev_pairs = _overlap_pairs(tmp_path / "dev.tsv", SENTENCES[200:], seed=2, count=150)
    before = {name: _score(trained["student"], pairs) for name, pairs in (("train", train_pairs), ("dev", dev_pairs))}
    assert cli(["finetune", "--student", str(trained["student"]), "--pairs", str(train_pairs), "--dev", str(dev_pairs),
                "--output", str(tmp_path / "tuned"), "--alpha", "0", "--epochs", "6", "--lr", "2e-3", "--device", "cpu"]) == 0
    assert "dev Spearman" in capsys.readouterr().out
    assert _score(tmp_path / "tuned", train_pairs) > before["train"] + 20
    assert _score(tmp_path / "tuned", dev_pairs) > before["dev"] + 4  # sentences it never saw
    info = json.loads((tmp_path / "tuned" / "distilcache_student.json").read_text())
    assert info["finetune"]["alpha"] == 0 and info["finetune"]["pairs_count"] == 400 and info["teacher"] == \
        json.loads((trained["student"] / "distilcache_student.json").read_text())["teacher"]
    assert load_student(tmp_path / "tuned").encode("").shape == (load_student(trained["student"]).dim,)


def test_alpha_one_keeps_the_teacher_geometry_that_gold_labels_alone_pull_away_from(trained, tmp_path):
    pairs = _overlap_pairs(tmp_path / "p.tsv", SENTENCES[:100], seed=3, count=200)
    common = {"student": trained["student"], "pairs": pairs, "epochs": 4, "lr": 2e-3, "device": "cpu"}
    soft = finetune(FinetuneConfig(output=tmp_path / "soft", cache=trained["cache"], alpha=1.0, **common))
    sentences = list(dict.fromkeys(read_sts(pairs).sentence1 + read_sts(pairs).sentence2))
    assert soft["sentences_with_cached_vectors"] == len(sentences)  # every pair sentence is a cache row
    gold = finetune(FinetuneConfig(output=tmp_path / "gold", alpha=0.0, **common))
    assert gold["sentences_with_cached_vectors"] == 0
    table = open_cache(trained["cache"]).table(["text", "vector"])
    teacher = dict(zip(table["text"].to_pylist(), table["vector"].to_numpy(zero_copy_only=False)))
    reference = np.stack([teacher[t] for t in sentences]).astype(np.float32)

    def agreement(directory: Path) -> float:
        return similarity_agreement(load_student(directory).encode(sentences), reference)
    assert agreement(tmp_path / "soft") > agreement(tmp_path / "gold") + 1


def test_a_cache_of_another_teacher_is_refused(trained, tmp_path):
    other = make_teacher(tmp_path / "other", texts=SENTENCES, hidden=32)
    precompute(PrecomputeConfig(teacher=other, inputs=[InputSpec(write_lines(tmp_path / "c.txt", SENTENCES[:50]))],
                                output=tmp_path / "cache", device="cpu", teacher_name="other"))
    pairs = _overlap_pairs(tmp_path / "p.tsv", SENTENCES[:50], seed=4, count=20)
    with pytest.raises(ConfigError, match="not the one the student learnt from"):
        finetune(FinetuneConfig(student=trained["student"], pairs=pairs, output=tmp_path / "o", cache=tmp_path / "cache", device="cpu"))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content, message", [
    ("a\tb\t1\nc\td\n", r"line 2: expected 3 tab-separated fields"),
    ("sentence1\tsentence2\tscore\na\tb\thigh\n", r"line 2: the score 'high' is not a finite number"),
    ("a\tb\tnan\n", r"line 1: the score 'nan'"),
    ("a\tb\t7\nc\td\t2\n", r"scores must be 0-5 or 0/1; pair 1"),
    ("sentence1\tscore\na\t1\n", r"header must name sentence1, sentence2 and score"),
])
def test_a_bad_pairs_file_is_named_with_its_line_and_nothing_is_written(trained, tmp_path, capsys, content, message):
    (tmp_path / "p.tsv").write_text(content, encoding="utf-8")
    assert cli(["finetune", "--student", str(trained["student"]), "--pairs", str(tmp_path / "p.tsv"),
                "--output", str(tmp_path / "o"), "--device", "cpu"]) != 0
    error = capsys.readouterr().err
    assert str(tmp_path / "p.tsv") in error
    assert __import__("re").search(message, error), error
    assert not (tmp_path / "o").exists()


def test_a_headerless_pairs_file_reads_its_three_columns(tmp_path):
    (tmp_path / "p.tsv").write_text("一架飞机\t飞机起飞\t4.5\nx\ty\t0\n", encoding="utf-8")
    pairs = read_sts(tmp_path / "p.tsv")
    assert pairs.sentence1 == ["一架飞机", "x"] and pairs.sentence2 == ["飞机起飞", "y"] and pairs.scores.tolist() == [4.5, 0.0]
    with pytest.raises(DataFileError, match="no pairs"):
        (tmp_path / "e.tsv").write_text("", encoding="utf-8")
        read_sts(tmp_path / "e.tsv")
    shutil.rmtree(tmp_path)
