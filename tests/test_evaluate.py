import json
import math

import numpy as np
import pytest

from conftest import make_teacher, recombined_sentences, write_lines
from distilcache.cli import main
from distilcache.evaluate import read_sts, recall_at_k, spearman
from distilcache.precompute import InputSpec, PrecomputeConfig, precompute
from distilcache.train import TrainConfig, train


def test_spearman_matches_a_hand_computed_value_with_ties():
    # ranks of y: [0, 1, 2.5, 4, 2.5]; Pearson of the ranks = 8 / sqrt(10 * 9.5)
    assert spearman(np.array([1, 2, 3, 4, 5]), np.array([5, 6, 7, 8, 7])) == pytest.approx(100 * 8 / math.sqrt(95))
    assert spearman(np.array([0.1, 0.5, 0.9]), np.array([1, 2, 30])) == pytest.approx(100)
    assert spearman(np.array([3, 2, 1]), np.array([1, 2, 3])) == pytest.approx(-100)
    assert math.isnan(spearman(np.array([1, 1, 1]), np.array([1, 2, 3])))


def _at_angles(degrees: list[float]) -> np.ndarray:
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_recall_at_k_matches_hand_computed_neighbours():
    teacher = _at_angles([0, 10, 25, 90, 100])  # nearest: 0->10, 10->0, 25->10, 90->100, 100->90
    student = _at_angles([0, 10, 85, 90, 100])  # nearest: 0->10, 10->0, 85->90, 90->85, 100->90
    assert recall_at_k(student, teacher, k=1) == pytest.approx(3 / 5)
    assert recall_at_k(teacher * 3.0, teacher, k=2) == pytest.approx(1.0)  # scale does not matter
    with pytest.raises(ValueError, match="more than 5 rows"):
        recall_at_k(teacher, teacher, k=5)


def test_similarity_agreement_ranks_the_pairs_as_the_teacher_does():
    from distilcache.evaluate.metrics import similarity_agreement

    teacher = np.random.default_rng(0).normal(size=(50, 8))
    assert similarity_agreement(teacher, teacher) == pytest.approx(100)
    assert similarity_agreement(2 * teacher + 0.0, teacher) == pytest.approx(100)  # cosines ignore the scale
    rotated = teacher @ np.linalg.qr(np.random.default_rng(1).normal(size=(8, 8)))[0]
    assert similarity_agreement(rotated, teacher) == pytest.approx(100)  # and any rotation of the space
    noise = np.random.default_rng(2).normal(size=(50, 8))
    assert abs(similarity_agreement(noise, teacher)) < 10  # unrelated vectors rank pairs at random
    assert math.isnan(similarity_agreement(teacher[:1], teacher[:1]))  # one row has no pair


def test_sts_files_are_read_and_bad_lines_named(tmp_path):
    good = tmp_path / "dev.tsv"
    good.write_text("sentence1\tsentence2\tscore\na\tb\t4.5\nc\td\t0\n", encoding="utf-8")
    pairs = read_sts(good)
    assert pairs.sentence1 == ["a", "c"] and pairs.scores.tolist() == [4.5, 0.0] and pairs.name == f"{tmp_path.name}/dev"
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence1\tsentence2\tscore\na\tb\t4.5\nc\td\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv line 3"):
        read_sts(bad)


def test_evaluate_writes_tables_json_and_a_plot_for_teacher_and_student(tmp_path, capsys):
    sentences = recombined_sentences(300, seed=3)
    teacher = make_teacher(tmp_path / "teacher", texts=sentences)
    precompute(PrecomputeConfig(teacher=teacher, inputs=[InputSpec(write_lines(tmp_path / "c.txt", sentences))],
                                output=tmp_path / "cache", device="cpu"))
    train(TrainConfig(cache=tmp_path / "cache", output=tmp_path / "student", epochs=2, val_fraction=0.2, device="cpu"))
    rng = np.random.default_rng(0)
    sts = tmp_path / "pairs.tsv"
    sts.write_text("sentence1\tsentence2\tscore\n" + "".join(
        f"{sentences[i]}\t{sentences[i + 1]}\t{rng.uniform(0, 5):.2f}\n" for i in range(0, 120, 2)), encoding="utf-8")

    assert main(["evaluate", "--model", str(tmp_path / "student"), "--teacher", str(teacher), "--teacher-cache",
                 str(tmp_path / "cache"), "--sts", str(sts), "--out", str(tmp_path / "report"), "--k", "5",
                 "--speed-sentences", "50"]) == 0
    printed = capsys.readouterr().out
    assert "### Performance" in printed and "### Accuracy" in printed
    results = json.loads((tmp_path / "report" / "report.json").read_text())["results"]
    teacher_row, student_row = results
    assert teacher_row["model"] == "teacher (idf pooling)" and student_row["model"] == "student"
    assert teacher_row["fidelity"] == pytest.approx(1.0, abs=1e-3)  # the teacher through the precompute code path
    assert teacher_row["recall@5"] > 0.95
    assert 0 < student_row["fidelity"] < 1 and 0 <= student_row["recall@5"] <= 1
    assert student_row["held_out_rows"] == teacher_row["held_out_rows"] > 30  # the student's own held-out rows
    assert student_row["sts_gap"] == pytest.approx(student_row["sts_mean"] - teacher_row["sts_mean"])
    assert student_row["speedup"] == pytest.approx(student_row["sentences_per_second"] / teacher_row["sentences_per_second"])
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| student |" in markdown and "gap to teacher" in markdown
    png = (tmp_path / "report" / "quality_vs_speed.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_a_model_of_another_dim_gets_recall_but_no_fidelity(teacher_dir, tmp_path):
    from distilcache import open_cache
    from distilcache.evaluate import evaluate_models
    from distilcache.evaluate.encoders import EvalModel

    sentences = recombined_sentences(200, seed=4)
    precompute(PrecomputeConfig(teacher=teacher_dir, inputs=[InputSpec(write_lines(tmp_path / "c.txt", sentences))],
                                output=tmp_path / "cache", device="cpu"))
    projection = np.random.default_rng(0).normal(size=(64, 16))
    cache = open_cache(tmp_path / "cache")
    lookup = dict(zip(cache.table(["text"])["text"].to_pylist(), cache.vectors()))
    reduced = EvalModel("reduced", lambda texts, batch_size: np.stack([lookup[t] for t in texts]) @ projection, 64 * 16, 64 * 16 * 4)
    (result,) = evaluate_models([reduced], [], cache, val_fraction=0.5, k=5)
    assert result["fidelity"] is None and 0 < result["recall@5"] <= 1


def test_speed_passes_go_round_the_models_in_turn_and_latency_calls_model_by_model():
    from distilcache.evaluate.encoders import EvalModel
    from distilcache.evaluate.run import measure_speeds

    calls = []

    def model(name: str) -> EvalModel:
        return EvalModel(name, lambda texts, batch_size: calls.append((name, len(texts))) or np.zeros((len(texts), 2)), 0, 0)

    texts = [f"sentence {i}" for i in range(10)]
    speeds = measure_speeds([model("a"), model("b")], texts, batch_size=4, latency_calls=2, rounds=3)
    assert [name for name, n in calls if n == 10] == ["a", "b"] * 3  # whole passes, interleaved
    assert [name for name, n in calls if n == 1] == ["a", "a", "b", "b"]  # latency calls, each model warm
    assert [name for name, n in calls if n == 4] == ["a", "b"]  # one warm-up batch each, first
    assert len(speeds) == 2 and all(s["sentences_per_second"] > 0 and s["latency_ms"] > 0 for s in speeds)
