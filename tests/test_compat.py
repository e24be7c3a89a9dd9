"""Caches and students made by the previous release (0.1.0, commit 3cab225) keep working: the files in
tests/data/v0.1.0 were written by that release (a tiny teacher, 60 rows, one BiLSTM and one transformer
student), with the vectors it encoded for three texts."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from distilcache import load_student, open_cache, verify_cache
from distilcache.train import TrainConfig, train

OLD = Path(__file__).with_name("data") / "v0.1.0"
EXPECTED = json.loads((OLD / "expected.json").read_text(encoding="utf-8"))


def test_a_cache_from_the_previous_release_verifies_and_opens():
    assert verify_cache(OLD / "cache") == []
    cache = open_cache(OLD / "cache")
    assert cache.num_rows == EXPECTED["rows"] and cache.vectors().shape == (EXPECTED["rows"], 32)
    assert cache.seed_dir is not None and cache.token_vectors_path is not None and cache.idf_path is not None


@pytest.mark.parametrize("kind", ["bilstm", "transformer"])
def test_a_student_from_the_previous_release_encodes_as_it_did(kind):
    student = load_student(OLD / kind, backend="torch")
    np.testing.assert_allclose(student.encode(EXPECTED["texts"]), np.array(EXPECTED[kind]), atol=1e-5)


def test_a_student_trains_from_a_cache_of_the_previous_release(tmp_path):
    cache = Path(shutil.copytree(OLD / "cache", tmp_path / "cache"))
    summary = train(TrainConfig(cache=cache, output=tmp_path / "s", epochs=2, batch_size=16, val_fraction=0.2, device="cpu"))
    assert summary["best_val_fidelity"] > summary["untrained_fidelity"]
    assert np.isfinite(load_student(tmp_path / "s").encode(EXPECTED["texts"])).all()
