"""`distilcache export --format sentence-transformers`: the real sentence-transformers loads the directory and
gives the student's own vectors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_teacher, recombined_sentences, tiny_cache, write_lines
from distilcache.cache_format.errors import ConfigError
from distilcache.cli import main as cli
from distilcache.precompute import InputSpec, PrecomputeConfig, precompute
from distilcache.student import load_student
from distilcache.student.st_export import export_sentence_transformers
from distilcache.train import TrainConfig, train
from distilcache.weighting.student_vocab import LARGE_VOCABULARY

st = pytest.importorskip("sentence_transformers")

SENTENCES = recombined_sentences(200, seed=5)
TEXTS = ["我", "他在北京大学读书 hotel", "ЖЖЖ ☃☃ qqqq", "我" * 400, *SENTENCES[:30]]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tiny_cache(tmp_path_factory.mktemp("st"), SENTENCES, keep_teacher=True, export_seed_layers=1)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _module_types(directory: Path) -> list[str]:
    return [m["type"] for m in json.loads((directory / "modules.json").read_text())]


@pytest.mark.parametrize("options", [
    {"token_weights": "cache"},  # the default BiLSTM with the cached IDF weights (jieba at encode time), attention pooling
    {"student": "transformer", "layers": 1, "hidden": 32, "attention_pooling": True},
], ids=["bilstm", "transformer-attention"])
def test_any_student_runs_in_sentence_transformers_through_the_distilcache_module(cache, tmp_path, options, capsys):
    train(TrainConfig(cache=cache, output=tmp_path / "s", epochs=1, batch_size=32, device="cpu", **options))
    assert cli(["export", str(tmp_path / "s"), "--format", "sentence-transformers", "--output", str(tmp_path / "st")]) == 0
    assert "distilcache modules" in capsys.readouterr().out
    assert _module_types(tmp_path / "st") == ["distilcache.student.st_module.DistilcacheStudent"]
    assert not list((tmp_path / "st").rglob("*.py"))  # the directory ships no code
    with pytest.raises(ValueError, match="trust_remote_code"):  # sentence-transformers' own gate on outside classes
        st.SentenceTransformer(str(tmp_path / "st"))
    model = st.SentenceTransformer(str(tmp_path / "st"), trust_remote_code=True, device="cpu")
    expected = load_student(tmp_path / "s").encode(["", *TEXTS])
    vectors = model.encode(["", *TEXTS], batch_size=7)
    assert model.get_embedding_dimension() == expected.shape[1]
    assert _cosines(vectors, expected).min() >= 0.9999
    model.save(str(tmp_path / "again"))  # saved by sentence-transformers: still the same student
    again = st.SentenceTransformer(str(tmp_path / "again"), trust_remote_code=True, device="cpu")
    assert _cosines(again.encode(TEXTS), expected[1:]).min() >= 0.9999


_WITHOUT_DISTILCACHE = """
import sys, numpy as np
class NoDistilcache:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "distilcache":
            raise ImportError("distilcache is not installed here")
sys.meta_path.insert(0, NoDistilcache())
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu")
np.save(sys.argv[2], model.encode(open(sys.argv[3], encoding="utf-8").read().split("\\n"), batch_size=5))
"""


def _encode_without_distilcache(directory: Path, texts: list[str], tmp_path: Path) -> np.ndarray:
    (tmp_path / "texts.txt").write_text("\n".join(texts), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", _WITHOUT_DISTILCACHE, str(directory), str(tmp_path / "v.npy"), str(tmp_path / "texts.txt")],
                   check=True, env=env, cwd=tmp_path)
    return np.load(tmp_path / "v.npy")


def test_a_transformer_student_with_mean_weights_exports_as_plain_modules_that_load_without_distilcache(cache, tmp_path):
    train(TrainConfig(cache=cache, output=tmp_path / "s", student="transformer", layers=1, hidden=32, token_weights="mean",
                      special_tokens=False, epochs=1, batch_size=32, device="cpu"))  # width 32: a projection to the teacher's 64 (a Dense)
    assert export_sentence_transformers(tmp_path / "s", tmp_path / "st") == "plain"
    types = _module_types(tmp_path / "st")
    assert all(t.startswith("sentence_transformers.") for t in types) and len(types) == 3
    expected = load_student(tmp_path / "s").encode(TEXTS)
    assert _cosines(_encode_without_distilcache(tmp_path / "st", TEXTS, tmp_path), expected).min() >= 0.9999


def test_a_table_of_the_cache_pieces_is_spread_back_over_the_whole_tokenizer(tmp_path):
    teacher = make_teacher(tmp_path / "teacher", texts=SENTENCES, hidden=32, unused_tokens=LARGE_VOCABULARY)
    precompute(PrecomputeConfig(teacher=teacher, inputs=[InputSpec(write_lines(tmp_path / "c.txt", SENTENCES[:60]))],
                                output=tmp_path / "cache", device="cpu", export_seed_layers=1))
    train(TrainConfig(cache=tmp_path / "cache", output=tmp_path / "s", student="transformer", init="seed", token_weights="mean",
                      special_tokens=False, epochs=1, batch_size=32, device="cpu"))
    student = load_student(tmp_path / "s")
    assert student.reader is not None and student.model.config.vocab_size < 1000
    export_sentence_transformers(tmp_path / "s", tmp_path / "st", modules="plain")
    model = st.SentenceTransformer(str(tmp_path / "st"), device="cpu")
    assert model[0].auto_model.get_input_embeddings().num_embeddings == len(student.tokenizer)
    texts = [*SENTENCES[100:110], "[unused7] [unused99] 我"]  # sentences the cache never held, pieces its table lacks
    assert _cosines(model.encode(texts), student.encode(texts)).min() >= 0.9999


def test_a_plain_export_of_a_student_that_needs_distilcache_is_refused_and_nothing_is_overwritten(cache, tmp_path, capsys):
    train(TrainConfig(cache=cache, output=tmp_path / "s", epochs=1, batch_size=32, device="cpu"))
    with pytest.raises(ConfigError, match="BiLSTM.*--modules distilcache"):
        export_sentence_transformers(tmp_path / "s", tmp_path / "st", modules="plain")
    # mean weights, but [CLS] and [SEP] read and weighed 0: sentence-transformers' mean pooling cannot leave them out
    train(TrainConfig(cache=cache, output=tmp_path / "t", student="transformer", layers=1, hidden=32, token_weights="mean",
                      epochs=1, batch_size=32, device="cpu"))
    with pytest.raises(ConfigError, match="special tokens.*--no-special-tokens"):
        export_sentence_transformers(tmp_path / "t", tmp_path / "st", modules="plain")
    assert export_sentence_transformers(tmp_path / "t", tmp_path / "st") == "distilcache"
    shutil.rmtree(tmp_path / "st")
    assert not (tmp_path / "st").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert cli(["export", str(tmp_path / "s"), "--format", "sentence-transformers", "--output", str(tmp_path / "taken")]) != 0
    assert "not an empty directory" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
