"""Caches and students made by the previous release (0.1.0, commit 3cab225) keep working: the files in
tests/data/v0.1.0 were written by that release (a tiny teacher, 60 rows, one BiLSTM and one transformer
student), with the vectors it encoded for three texts."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

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


def _with_legacy_norm_names(safetensors_file: Path) -> None:
    """Rewrite the file's LayerNorm weights under the names save_pretrained gives them in transformers 5.3."""
    tensors = load_file(safetensors_file)
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in tensors.items()}
    assert legacy.keys() != tensors.keys()
    save_file(legacy, safetensors_file, metadata={"format": "pt"})


def test_a_transformer_student_whose_layer_norms_carry_their_legacy_names_loads_and_encodes_as_before(tmp_path):
    directory = Path(shutil.copytree(OLD / "transformer", tmp_path / "transformer"))
    _with_legacy_norm_names(directory / "model.safetensors")  # that release recorded no sha256 of its files
    student = load_student(directory, backend="torch")
    np.testing.assert_allclose(student.encode(EXPECTED["texts"]), np.array(EXPECTED["transformer"]), atol=1e-5)


def test_save_model_writes_the_names_the_model_holds_whatever_names_it_was_loaded_from(tmp_path):
    from distilcache import hf_local

    (tmp_path / "legacy").mkdir()
    for name in ("config.json", "model.safetensors"):  # a Hugging Face model directory, nothing of the student around it
        shutil.copy(OLD / "transformer" / name, tmp_path / "legacy")
    _with_legacy_norm_names(tmp_path / "legacy" / "model.safetensors")
    model = hf_local.load_model(tmp_path / "legacy", use_safetensors=True)
    hf_local.save_model(model, tmp_path / "saved")
    saved = load_file(tmp_path / "saved" / "model.safetensors")
    assert saved.keys() == model.state_dict().keys() and not any(k.endswith((".gamma", ".beta")) for k in saved)
    reloaded = hf_local.load_model(tmp_path / "saved", use_safetensors=True).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded[key], value), key


def test_a_student_trains_from_a_cache_of_the_previous_release(tmp_path):
    cache = Path(shutil.copytree(OLD / "cache", tmp_path / "cache"))
    summary = train(TrainConfig(cache=cache, output=tmp_path / "s", epochs=2, batch_size=16, val_fraction=0.2, device="cpu"))
    assert summary["best_val_fidelity"] > summary["untrained_fidelity"]
    assert np.isfinite(load_student(tmp_path / "s").encode(EXPECTED["texts"])).all()
