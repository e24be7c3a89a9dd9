"""Matryoshka students: the loss on each prefix, training that records the dims, encode --dim."""

import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import recombined_sentences, tiny_cache, write_lines
from distilcache.cache_format import open_cache
from distilcache.cache_format.errors import ConfigError
from distilcache.cli import main as cli
from distilcache.student import load_student
from distilcache.train import TrainConfig, train
from distilcache.train.losses import matryoshka_loss

SENTENCES = recombined_sentences(400, seed=11)


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _kl_by_hand(student: np.ndarray, teacher: np.ndarray, temperature: float) -> float:
    def probabilities(v: np.ndarray) -> np.ndarray:
        unit = v / np.linalg.norm(v, axis=1, keepdims=True)
        return _softmax_rows(unit @ unit.T / temperature)
    p, q = probabilities(teacher), probabilities(student)
    return float((p * (np.log(p) - np.log(q))).sum() / len(p))


def test_the_matryoshka_loss_is_the_similarity_loss_of_each_prefix_against_the_full_teacher():
    student = np.array([[1.0, 0.0, 2.0, 1.0], [0.5, 1.0, -1.0, 0.0], [-1.0, 0.3, 0.0, 2.0]])
    teacher = np.array([[0.2, 1.0, 0.0, 0.5], [1.0, -0.5, 0.3, 0.0], [0.0, 0.1, 1.0, 1.0]])
    expected = (_kl_by_hand(student[:, :1], teacher, 0.5) + _kl_by_hand(student[:, :3], teacher, 0.5)) / 2
    loss = matryoshka_loss(torch.tensor(student), torch.tensor(teacher), (1, 3), temperature=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # a prefix that already holds the teacher's geometry (the teacher lives in the first two dimensions) costs nothing
    flat = np.hstack([teacher[:, :2], np.zeros((3, 2))])
    assert matryoshka_loss(torch.tensor(np.hstack([flat[:, :2], np.ones((3, 2))])), torch.tensor(flat), (2,), 0.5).item() \
        == pytest.approx(0.0, abs=1e-7)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tiny_cache(tmp_path_factory.mktemp("matryoshka"), SENTENCES)


def _prefix_agreement(student_dir: Path, cache: Path, k: int) -> float:
    """Correlation between the teacher's pairwise cosines and the student's on its first k dimensions, on cache rows."""
    table = open_cache(cache).table(["text", "vector"])
    texts = table["text"].to_pylist()[-120:]
    teacher = np.stack(table["vector"].to_numpy(zero_copy_only=False)[-120:]).astype(np.float32)
    student = load_student(student_dir).encode(texts, dim=k, normalize_embeddings=True)
    teacher = teacher / np.linalg.norm(teacher, axis=1, keepdims=True)
    upper = np.triu_indices(len(texts), 1)
    return float(np.corrcoef((teacher @ teacher.T)[upper], (student @ student.T)[upper])[0, 1])


def test_a_matryoshka_student_keeps_the_teacher_geometry_in_its_first_dimensions_better_than_a_plain_one(cache, tmp_path):
    common = {"cache": cache, "epochs": 4, "batch_size": 32, "device": "cpu", "seed": 1}
    train(TrainConfig(output=tmp_path / "plain", **common))
    summary = train(TrainConfig(output=tmp_path / "m", matryoshka_dims=(8, 16), **common))
    assert summary["best_val_fidelity"] > summary["untrained_fidelity"]
    assert load_student(tmp_path / "m").matryoshka_dims == [8, 16]
    assert _prefix_agreement(tmp_path / "m", cache, 8) > _prefix_agreement(tmp_path / "plain", cache, 8) + 0.03
    full = open_cache(cache).dim  # and the full vector loses little for it
    assert _prefix_agreement(tmp_path / "m", cache, full) > _prefix_agreement(tmp_path / "plain", cache, full) - 0.02


def test_encode_dim_keeps_the_first_dimensions_and_refuses_more_than_the_student_has(cache, tmp_path, caplog):
    train(TrainConfig(cache=cache, output=tmp_path / "s", epochs=1, batch_size=32, device="cpu", matryoshka_dims=(8,)))
    student = load_student(tmp_path / "s")
    full = student.encode(SENTENCES[:5])
    np.testing.assert_allclose(student.encode(SENTENCES[:5], dim=8), full[:, :8], rtol=1e-6, atol=1e-7)
    unit = student.encode(SENTENCES[:5], dim=8, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    assert student.encode(SENTENCES[0], dim=8).shape == (8,)
    with caplog.at_level(logging.WARNING):
        assert student.encode(SENTENCES[:2], dim=8).shape == (2, 8) and not caplog.records
        assert student.encode(SENTENCES[:2], dim=12).shape == (2, 12)
    assert "not trained for 12 dimensions" in caplog.text
    for bad in (0, student.dim + 1, 2.5):
        with pytest.raises(ConfigError, match="dim must be an integer"):
            student.encode(SENTENCES[:2], dim=bad)
    write_lines(tmp_path / "in.txt", SENTENCES[:6])
    assert cli(["encode", "--model", str(tmp_path / "s"), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "v.parquet"),
                "--dim", "8"]) == 0
    vectors = np.stack(pq.read_table(tmp_path / "v.parquet")["vector"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(vectors, student.encode(SENTENCES[:6], dim=8), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dims", [(0, 8), (16, 8), (8, 8)])
def test_matryoshka_dims_must_be_increasing_positive_integers(cache, tmp_path, dims):
    with pytest.raises(ConfigError, match="--matryoshka-dims"):
        train(TrainConfig(cache=cache, output=tmp_path / "s", matryoshka_dims=dims, device="cpu"))


def test_matryoshka_dims_must_be_below_the_teacher_dim(cache, tmp_path, capsys):
    dim = open_cache(cache).dim
    assert cli(["train", "--cache", str(cache), "--output", str(tmp_path / "s"), "--matryoshka-dims", f"8,{dim}"]) != 0
    assert f"below the teacher's dim {dim}" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's usage error
        cli(["train", "--cache", str(cache), "--output", str(tmp_path / "s"), "--matryoshka-dims", "8,x"])
    assert "such as 64,128,256; got '8,x'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
