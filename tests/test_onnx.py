"""Students export to ONNX, and onnxruntime gives the vectors torch gives."""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import recombined_sentences, tiny_cache
from distilcache.cli import main as cli
from distilcache.student.onnx import exportable
from distilcache.student import load_student
from distilcache.train import TrainConfig, train
from distilcache.student.model import pad_rows
from distilcache.student.directory import ONNX_FILE

pytest.importorskip("onnxruntime")

SENTENCES = recombined_sentences(200, seed=3)
TEXTS = ["", "我", "他在北京大学读书 hotel", "ЖЖЖ ☃☃ qqqq", "我" * 400, *SENTENCES[:40]]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tiny_cache(tmp_path_factory.mktemp("onnx"), SENTENCES)


@pytest.mark.parametrize("options", [
    {"student": "bilstm", "layers": 2, "token_weights": "cache"},  # two layers: the second reads both directions of the first
    {"student": "bilstm", "concat_embeddings": False, "hidden": 16, "attention_pooling": False},  # states alone, projected
    {"student": "transformer", "layers": 2, "hidden": 32, "attention_pooling": True},
], ids=["bilstm-2-layers", "bilstm-projected-no-attention", "transformer-attention"])
def test_onnxruntime_matches_torch_to_1e4(cache, tmp_path, options, capsys):
    train(TrainConfig(cache=cache, output=tmp_path / "s", epochs=1, batch_size=32, device="cpu", **options))
    assert cli(["export-onnx", str(tmp_path / "s")]) == 0
    assert "max abs difference" in capsys.readouterr().out
    torch_vectors = load_student(tmp_path / "s").encode(TEXTS)
    onnx_vectors = load_student(tmp_path / "s", backend="onnx").encode(TEXTS)
    assert np.isfinite(onnx_vectors).all()
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-4, rtol=0)


def test_the_unpacked_bilstm_equals_the_packed_one_on_ragged_batches(cache, tmp_path):
    train(TrainConfig(cache=cache, output=tmp_path / "s", epochs=1, batch_size=32, device="cpu", layers=2))
    student = load_student(tmp_path / "s")
    generator = torch.Generator().manual_seed(0)
    lengths = [1, 7, 3, 12, 5]
    ids = torch.randint(5, student.model.config.vocab_size, (sum(lengths),), generator=generator).numpy()
    weights = np.concatenate([np.full(n, 1.0 / n, dtype=np.float32) for n in lengths])
    batch = pad_rows(ids, weights, np.cumsum([0] + lengths[:-1]), np.array(lengths), student.model.config.pad_id)
    with torch.inference_mode():
        packed = student.model(batch.token_ids, batch.lengths, batch.weights)
        unpacked = exportable(student.model)(batch.token_ids, batch.lengths, batch.weights)
    torch.testing.assert_close(unpacked, packed, atol=1e-5, rtol=1e-5)


def test_the_onnx_backend_needs_an_export_first(cache, tmp_path):
    train(TrainConfig(cache=cache, output=tmp_path / "s", epochs=1, batch_size=32, device="cpu"))
    assert not (tmp_path / "s" / ONNX_FILE).exists()
    with pytest.raises(FileNotFoundError, match="export-onnx"):
        load_student(tmp_path / "s", backend="onnx")
