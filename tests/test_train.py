import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_teacher, recombined_sentences, tiny_cache, write_lines
from transformers import AutoModel

from distilcache import hf_local, open_cache
from distilcache.cache_format import CacheError, writer
from distilcache.cache_format.errors import ConfigError
from distilcache.cache_format.seed import seed_layer_indices
from distilcache.cache_format.split import split_by_id
from distilcache.precompute.seed import export_seed_layers, seed_entry
from distilcache.student import load_student
from distilcache.student.model import StudentConfig, bracket, pad_rows
from distilcache.train import TrainConfig, data, train
from distilcache.train import loop as loop_module
from distilcache.train.build import build_student
from distilcache.train.data import CacheRows, held_out_batches, read_rows, row_groups, scan_cache, training_batches

SENTENCES = recombined_sentences(400)


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory) -> Path:
    """A 400-row cache from a tiny teacher that is deleted afterwards: training must not need it."""
    return tiny_cache(tmp_path_factory.mktemp("small"), SENTENCES, shard_size=150, export_seed_layers=1)


@pytest.fixture(scope="module")
def streamed_cache(tmp_path_factory) -> Path:
    """A 400-row cache in row groups of 16 rows: training reads it in many pieces."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer, "ROW_GROUP_ROWS", 16)
        return tiny_cache(tmp_path_factory.mktemp("streamed"), SENTENCES, shard_size=150)


def _all_rows(cache_dir: Path) -> CacheRows:
    cache = open_cache(cache_dir)
    return CacheRows.concat([read_rows(group, cache.dim) for group in row_groups(cache)])


def _train(cache: Path, output: Path, **kwargs) -> dict:
    options = {"epochs": 4, "batch_size": 32, "val_fraction": 0.2, "device": "cpu"} | kwargs
    return train(TrainConfig(cache=cache, output=output, **options))


def test_the_held_out_split_depends_on_ids_only():
    ids = [f"doc:{i}" for i in range(2000)]
    train_a, val_a = split_by_id(ids, 0.1)
    train_b, val_b = split_by_id(list(reversed(ids)), 0.1)
    assert {ids[i] for i in val_a} == {ids[::-1][i] for i in val_b}
    assert 150 < len(val_a) < 250 and len(train_a) + len(val_a) == 2000
    assert set(split_by_id(ids, 0.05)[1]) <= set(val_a)  # a smaller held-out set is a subset


def test_an_epoch_serves_every_training_row_once_in_full_length_grouped_batches(streamed_cache, monkeypatch):
    cache = open_cache(streamed_cache)
    scan = scan_cache(cache, 0.2, vocab_size=10_000)
    assert len(scan.groups) > 20 and all(group.rows <= 16 for group in scan.groups)
    rows = _all_rows(streamed_cache)
    train_idx, val_idx = split_by_id(rows.ids.to_pylist(), 0.2)
    assert (scan.train_rows, scan.held_out_rows) == (len(train_idx), len(val_idx))
    np.testing.assert_array_equal(scan.token_ids, np.unique(rows.token_ids))

    held = []
    real_concat = CacheRows.concat
    monkeypatch.setattr(CacheRows, "concat", staticmethod(lambda blocks: held.append(sum(map(len, blocks))) or real_concat(blocks)))

    def epoch(seed: int, buffer_rows: int) -> list:
        return list(training_batches(scan, cache.dim, lambda r: r, 4, buffer_rows, np.random.default_rng(seed), pad_id=0))

    batches = epoch(1, 48)
    ids = [i for batch in batches for i in batch.ids.to_pylist()]
    assert sorted(ids) == sorted(rows.ids.take(train_idx).to_pylist())  # every training row once, no held-out row
    assert len(batches) == -(-len(train_idx) // 4) and sum(len(b) < 4 for b in batches) <= 1
    assert max(held) < 48 + 16 < len(train_idx)  # the buffer and one row group, not the cache
    row_of = {row_id: i for i, row_id in enumerate(rows.ids.to_pylist())}
    for batch in batches[:5]:  # each batch carries its rows' own tokens and teacher vectors
        members = np.array([row_of[i] for i in batch.ids.to_pylist()])
        expected = pad_rows(rows.token_ids, rows.weights, rows.offsets[members], rows.lengths[members], 0)
        np.testing.assert_array_equal(batch.inputs.token_ids.numpy(), expected.token_ids.numpy())
        np.testing.assert_array_equal(batch.teacher_vectors.numpy(), rows.vectors[members])

    lengths = rows.lengths
    padding = sum(lengths[[row_of[i] for i in b.ids.to_pylist()]].max() * len(b) - b.inputs.lengths.sum().item() for b in batches)
    shuffled = np.random.default_rng(2).permutation(train_idx)
    random_padding = sum(lengths[b].max() * len(b) - lengths[b].sum() for b in np.array_split(shuffled, len(batches)))
    assert padding < random_padding / 2
    assert [b.ids.to_pylist() for b in epoch(1, 48)] == [b.ids.to_pylist() for b in batches]  # the rng alone decides
    assert [b.ids.to_pylist() for b in epoch(2, 48)] != [b.ids.to_pylist() for b in batches]
    whole = epoch(1, 10_000)  # a buffer over the cache: one shuffle of every row
    assert sorted(i for b in whole for i in b.ids.to_pylist()) == sorted(ids)

    held_out = list(held_out_batches(scan, cache.dim, lambda r: r, 4, 48, pad_id=0))
    assert sorted(i for b in held_out for i in b.ids.to_pylist()) == sorted(rows.ids.take(val_idx).to_pylist())


def test_a_cache_whose_token_ids_are_outside_the_tokenizer_is_refused_before_training(streamed_cache):
    cache = open_cache(streamed_cache)
    with pytest.raises(CacheError, match=r"part-00000.parquet: row group 0 holds token ids outside the tokenizer's 0\.\.9"):
        scan_cache(cache, 0.2, vocab_size=10)


def test_a_row_group_too_large_to_read_whole_is_refused(streamed_cache, monkeypatch):
    monkeypatch.setattr(data, "MAX_GROUP_ROWS", 15)
    with pytest.raises(CacheError, match="row group 0 declares 16 rows, over the 15 read at once"):
        row_groups(open_cache(streamed_cache))


@pytest.mark.parametrize("student", ["bilstm", "transformer"])
def test_training_lowers_the_loss_and_raises_held_out_fidelity(small_cache, tmp_path, student):
    summary = _train(small_cache, tmp_path / student, student=student, epochs=5, init="random")
    history = summary["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert summary["best_val_fidelity"] > summary["untrained_fidelity"] + 0.2, summary
    log = [json.loads(line) for line in (tmp_path / student / "train_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == list(range(1, 6)) and log == history
    assert json.loads((tmp_path / student / "summary.json").read_text())["best_val_fidelity"] == summary["best_val_fidelity"]


def test_the_transformer_student_is_a_standard_hugging_face_directory(small_cache, tmp_path):
    _train(small_cache, tmp_path / "tfm", student="transformer", epochs=1, hidden=32, layers=1)
    model = AutoModel.from_pretrained(str(tmp_path / "tfm"))
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 32


@pytest.mark.parametrize("token_weights", ["cache", "mean"])
def test_encode_sees_the_same_tokens_and_weights_as_training_and_save_load_round_trips(small_cache, tmp_path, token_weights):
    _train(small_cache, tmp_path / "s", epochs=2, token_weights=token_weights)
    student = load_student(tmp_path / "s")
    assert (student.idf is None) == (token_weights == "mean") == (not (tmp_path / "s" / "idf.parquet").exists())
    rows = _all_rows(small_cache)
    if token_weights == "mean":
        rows.weights = np.repeat(1.0 / np.maximum(rows.lengths, 1), rows.lengths).astype(np.float32)
    from distilcache.weighting import weighted_tokens

    tokens = weighted_tokens(SENTENCES, student.tokenizer, student.info["pooling"]["max_length"], student.idf,
                             student.info["pooling"]["smoothing"])
    for i, t in enumerate(tokens):
        np.testing.assert_array_equal(t.token_ids, rows.token_ids[rows.offsets[i] : rows.offsets[i + 1]])
        np.testing.assert_allclose(t.weights, rows.weights[rows.offsets[i] : rows.offsets[i + 1]], rtol=1e-6)

    inputs = pad_rows(rows.token_ids, rows.weights, rows.offsets[:-1], rows.lengths, student.model.config.pad_id)
    with torch.no_grad():
        seen_in_training = student.model(inputs.token_ids, inputs.lengths, inputs.weights).numpy()
    encoded = student.encode(SENTENCES, batch_size=64)
    np.testing.assert_allclose(encoded, seen_in_training, atol=1e-5)
    np.testing.assert_array_equal(load_student(tmp_path / "s").encode(SENTENCES, batch_size=64), encoded)


def test_encode_handles_empty_long_mixed_and_unknown_text(small_cache, tmp_path):
    _train(small_cache, tmp_path / "s", epochs=1)
    student = load_student(tmp_path / "s")
    texts = ["", "   ", "我" * 5000, "今天 weather 很好", "ЖЖЖ ☃☃ qqqq", SENTENCES[0]]
    vectors = student.encode(texts)
    assert vectors.shape == (6, 64) and np.isfinite(vectors).all()
    assert student.encode(SENTENCES[0]).shape == (64,)
    assert student.encode([]).shape == (0, 64)
    similarity = student.similarity(vectors, vectors)
    assert similarity.shape == (6, 6) and np.isfinite(similarity).all()
    np.testing.assert_allclose(np.diag(similarity), 1.0, atol=1e-5)


@pytest.mark.parametrize("cache_name, options", [("small_cache", {}), ("streamed_cache", {"batch_size": 8, "shuffle_buffer": 48}),
                                                 ("small_cache", {"similarity_weight": 1.0, "similarity_queue": 40})],
                         ids=["whole-cache-buffer", "many-buffers", "similarity-queue"])
def test_a_resumed_run_reaches_the_same_state_as_an_uninterrupted_one(cache_name, options, tmp_path, monkeypatch, request):
    small_cache = request.getfixturevalue(cache_name)
    whole = _train(small_cache, tmp_path / "whole", epochs=4, patience=10, **options)

    real_write_log = loop_module._write_log

    def killed_after_epoch_2(output, history):
        real_write_log(output, history)
        if len(history) == 2:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(loop_module, "_write_log", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _train(small_cache, tmp_path / "resumed", epochs=4, patience=10, **options)
    monkeypatch.setattr(loop_module, "_write_log", real_write_log)
    with pytest.raises(FileExistsError, match="--resume"):
        _train(small_cache, tmp_path / "resumed", epochs=4, patience=10, **options)
    resumed = _train(small_cache, tmp_path / "resumed", epochs=4, patience=10, resume=True, **options)

    assert [e["epoch"] for e in resumed["history"]] == [1, 2, 3, 4]
    for a, b in zip(whole["history"], resumed["history"]):
        assert a["val_fidelity"] == pytest.approx(b["val_fidelity"], abs=1e-5)
    np.testing.assert_allclose(load_student(tmp_path / "whole").encode(SENTENCES[:50]),
                               load_student(tmp_path / "resumed").encode(SENTENCES[:50]), atol=1e-4)


def test_resume_against_another_cache_or_recipe_is_refused(small_cache, tmp_path):
    _train(small_cache, tmp_path / "s", epochs=1)
    with pytest.raises(ValueError, match=r"training settings differ from the checkpoint's in \['lr'\]"):
        _train(small_cache, tmp_path / "s", epochs=1, lr=0.5, resume=True)
    other = Path(shutil.copytree(small_cache, tmp_path / "other"))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["fingerprint"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"cache differ from the checkpoint's in \['fingerprint'\]"):
        _train(other, tmp_path / "s", epochs=1, resume=True)


def test_resume_may_name_reporting_only_dev_sets_otherwise_but_not_selecting_ones(small_cache, tmp_path):
    lines = ["sentence1\tsentence2\tscore"] + [f"{a}\t{b}\t{i % 5}" for i, (a, b) in enumerate(zip(SENTENCES[:30], SENTENCES[30:60]))]
    dev = write_lines(tmp_path / "dev.tsv", lines)
    renamed = Path(shutil.copy(dev, tmp_path / "renamed.tsv"))
    _train(small_cache, tmp_path / "f", epochs=2, dev_sts=(dev,))
    resumed = _train(small_cache, tmp_path / "f", epochs=2, dev_sts=(renamed,), resume=True)  # fidelity selects: the sets only report
    assert [e["epoch"] for e in resumed["history"]] == [1, 2]
    _train(small_cache, tmp_path / "d", epochs=1, dev_sts=(dev,), select="dev")
    with pytest.raises(ValueError, match=r"training settings differ from the checkpoint's in \['dev_sts'\]"):
        _train(small_cache, tmp_path / "d", epochs=1, dev_sts=(renamed,), select="dev", resume=True)
    with pytest.raises(ValueError, match=r"training settings differ from the checkpoint's in \['select'\]"):
        _train(small_cache, tmp_path / "f", epochs=2, dev_sts=(dev,), select="dev", resume=True)


def test_early_stopping_keeps_the_best_epoch(small_cache, tmp_path):
    summary = _train(small_cache, tmp_path / "s", epochs=10, lr=1e-12, patience=2)
    assert summary["epochs_run"] == 3 and summary["best_epoch"] == 1
    assert json.loads((tmp_path / "s" / "distilcache_student.json").read_text())["best_epoch"] == 1


@pytest.mark.parametrize("num_layers, keep, expected", [
    (6, 1, [5]), (6, 2, [0, 5]), (6, 3, [0, 3, 5]), (12, 4, [0, 4, 7, 11]), (6, 6, [0, 1, 2, 3, 4, 5]),
])
def test_seed_layers_are_the_first_the_last_and_evenly_between(num_layers, keep, expected):
    assert seed_layer_indices(num_layers, keep) == expected


def test_seed_layers_out_of_range_are_refused():
    with pytest.raises(ValueError, match="between 1 and the teacher's 6 layers, got 7"):
        seed_layer_indices(6, 7)


def test_the_exported_seed_is_the_teachers_last_layer_and_the_manifest_says_so(tmp_path):
    teacher_dir = make_teacher(tmp_path / "teacher", texts=SENTENCES, layers=3)
    teacher = AutoModel.from_pretrained(str(teacher_dir))
    export_seed_layers(teacher, 1, tmp_path)
    seed = AutoModel.from_pretrained(str(tmp_path / "seed"))
    assert seed.config.num_hidden_layers == 1
    for name, value in seed.encoder.layer[0].state_dict().items():
        assert torch.equal(value, teacher.encoder.layer[2].state_dict()[name]), name
    assert seed_entry(tmp_path, 3)["layers"] == [2]


def test_a_seed_of_three_layers_seeds_a_student_of_two_from_its_first_and_last(tmp_path):
    teacher_dir = make_teacher(tmp_path / "teacher", texts=SENTENCES, layers=3)
    teacher = AutoModel.from_pretrained(str(teacher_dir))
    export_seed_layers(teacher, 3, tmp_path)
    config = teacher.config

    def student(layers: int):
        return build_student(StudentConfig("transformer", config.vocab_size, config.hidden_size, 0, config.hidden_size, layers,
                                           num_heads=config.num_attention_heads), seed_dir=tmp_path / "seed")

    model = student(2).encoder.model
    assert model.config.num_hidden_layers == 2 and model.config.distilcache_seed_layers == [0, 2]
    for kept, teacher_layer in zip(model.encoder.layer, (0, 2)):
        for name, value in kept.state_dict().items():
            assert torch.equal(value, teacher.encoder.layer[teacher_layer].state_dict()[name]), name
    assert student(1).encoder.model.config.distilcache_seed_layers == [2]
    with pytest.raises(ConfigError, match="seed holds 3 teacher layers"):
        student(4)


def test_a_transformer_seeded_from_the_cache_starts_closer_to_the_teacher(small_cache, tmp_path):
    cache = open_cache(small_cache)
    assert cache.manifest["seed"]["layers"] == [1]  # the tiny teacher's last of 2
    seeded = _train(small_cache, tmp_path / "seeded", student="transformer", init="seed", epochs=1)
    fresh = _train(small_cache, tmp_path / "fresh", student="transformer", init="random", epochs=1, hidden=64)
    assert seeded["untrained_fidelity"] > fresh["untrained_fidelity"] + 0.3, (seeded, fresh)
    assert AutoModel.from_pretrained(str(tmp_path / "seeded")).config.num_hidden_layers == 1


def test_bf16_autocast_training_runs_on_cpu(small_cache, tmp_path):
    from distilcache.devices import cpu_has_bf16

    if not cpu_has_bf16():
        with pytest.raises(ValueError, match="bf16 training on this CPU is not supported"):
            _train(small_cache, tmp_path / "s", epochs=2, precision="bf16")
        pytest.skip("this CPU has no bf16 kernels: refused clearly, as tested above")
    summary = _train(small_cache, tmp_path / "s", epochs=2, precision="bf16")
    assert np.isfinite(summary["best_val_fidelity"]) and summary["best_val_fidelity"] > summary["untrained_fidelity"]


def test_train_encode_and_evaluate_from_the_command_line_after_the_teacher_is_gone(small_cache, tmp_path, capsys):
    import pyarrow.parquet as pq

    from distilcache.cli import main

    assert main(["train", "--cache", str(small_cache), "--output", str(tmp_path / "s"), "--epochs", "2",
                 "--val-fraction", "0.2", "--device", "cpu"]) == 0
    assert "held-out fidelity" in capsys.readouterr().out
    new = write_lines(tmp_path / "new.txt", SENTENCES[:5] + ["", "今天 weather"])
    assert main(["encode", "--model", str(tmp_path / "s"), "--input", str(new), "--output", str(tmp_path / "v.parquet")]) == 0
    assert "6 vectors of dim 64; 1 rows rejected" in capsys.readouterr().out
    table = pq.read_table(tmp_path / "v.parquet")
    assert table["id"].to_pylist() == ["new:1", "new:2", "new:3", "new:4", "new:5", "new:7"]
    np.testing.assert_allclose(np.stack(table["vector"].to_numpy(zero_copy_only=False)),
                               load_student(tmp_path / "s").encode(SENTENCES[:5] + ["今天 weather"]), atol=1e-5)
    assert json.loads((tmp_path / "v.rejected.jsonl").read_text())["reason"] == "empty"

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{i % 5}\n" for i, (a, b) in
                                                            enumerate(zip(SENTENCES[:40], SENTENCES[40:80]))), encoding="utf-8")
    assert main(["evaluate", "--model", str(tmp_path / "s"), "--teacher-cache", str(small_cache), "--sts", str(pairs),
                 "--speed-sentences", "20"]) == 0
    assert "| s |" in capsys.readouterr().out


def test_auto_init_starts_a_bilstm_from_the_cached_token_vectors(small_cache, tmp_path):
    summary = _train(small_cache, tmp_path / "s", epochs=1)
    info = json.loads((tmp_path / "s" / "distilcache_student.json").read_text())
    assert info["training"]["init"] == "token-vectors"
    assert info["student"]["embedding_dim"] == 64 and info["student"]["concat_embeddings"] is True
    random_start = _train(small_cache, tmp_path / "r", epochs=1, init="random")
    # starting from the teacher's static vectors is already far closer to the teacher than random
    assert summary["untrained_fidelity"] > random_start["untrained_fidelity"] + 0.2


def test_the_similarity_matrix_loss_trains_and_mean_pooling_is_kept_at_encode_time(small_cache, tmp_path):
    summary = _train(small_cache, tmp_path / "s", epochs=3, similarity_weight=1.0, token_weights="mean")
    assert summary["best_val_fidelity"] > summary["untrained_fidelity"]
    student = load_student(tmp_path / "s")
    assert student.info["pooling"]["mode"] == "mean" and student.idf is None
    from distilcache.weighting import weighted_tokens

    (tokens,) = weighted_tokens([SENTENCES[0]], student.tokenizer, 256, student.idf, 0.1)
    np.testing.assert_allclose(tokens.weights, 1 / len(tokens.weights))


def test_similarity_matrix_loss_matches_a_hand_computed_value():
    from distilcache.train.losses import similarity_matrix_loss

    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosines [[1, 0], [0, 1]]
    student = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # cosines [[1, s], [s, 1]] with s = 1/sqrt(2)
    assert similarity_matrix_loss(teacher * 3, teacher, temperature=0.5).item() == pytest.approx(0.0, abs=1e-6)
    s = 2 ** -0.5
    p = torch.softmax(torch.tensor([1.0, 0.0]) / 0.5, dim=0)  # teacher row 0; row 1 is its mirror image
    q = torch.softmax(torch.tensor([1.0, s]) / 0.5, dim=0)  # student row 0; row 1 likewise
    expected = (p * (p / q).log()).sum().item()  # the same KL for both rows, averaged over 2 rows
    assert similarity_matrix_loss(student, teacher, temperature=0.5).item() == pytest.approx(expected, rel=1e-5)


def test_the_similarity_matrix_loss_compares_each_row_with_the_queue_too():
    from distilcache.train.losses import similarity_matrix_loss

    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    student = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    queue = torch.tensor([[1.0, 0.0]])  # an earlier row's unit teacher vector: a third column for both softmaxes
    assert similarity_matrix_loss(teacher * 3, teacher, temperature=0.5, queue=queue).item() == pytest.approx(0.0, abs=1e-6)
    s = 2 ** -0.5
    rows = [(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([1.0, s, 1.0])),  # row 0: teacher, student cosines to [row 0, row 1, queue]
            (torch.tensor([0.0, 1.0, 0.0]), torch.tensor([s, 1.0, s]))]
    kl = [(p * (p / q).log()).sum().item() for p, q in ((torch.softmax(t / 0.5, 0), torch.softmax(u / 0.5, 0)) for t, u in rows)]
    with_queue = similarity_matrix_loss(student, teacher, temperature=0.5, queue=queue).item()
    assert with_queue == pytest.approx(sum(kl) / 2, rel=1e-5)
    assert with_queue != pytest.approx(similarity_matrix_loss(student, teacher, temperature=0.5).item(), rel=1e-3)


def test_the_teacher_queue_keeps_the_newest_rows_at_unit_length():
    from distilcache.train.losses import TeacherQueue

    queue = TeacherQueue(size=3, dim=2, device=torch.device("cpu"))
    queue.push(torch.tensor([[3.0, 0.0], [0.0, 2.0]]))
    queue.push(torch.tensor([[1.0, 1.0], [-4.0, 0.0]]))
    s = 2 ** -0.5
    torch.testing.assert_close(queue.vectors, torch.tensor([[s, s], [-1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"similarity queue has shape \(4, 2\)"):
        queue.restore(torch.zeros(4, 2))


def test_a_similarity_queue_needs_the_similarity_loss_and_a_size_of_at_least_0(small_cache, tmp_path):
    with pytest.raises(ValueError, match="similarity-queue.*--similarity-weight"):
        _train(small_cache, tmp_path / "s", similarity_queue=64)
    with pytest.raises(ValueError, match="similarity-queue must be >= 0"):
        _train(small_cache, tmp_path / "s", similarity_weight=1.0, similarity_queue=-1)
    assert not (tmp_path / "s").exists()


def test_distillation_losses_match_hand_computed_values():
    from distilcache.train.losses import distillation_loss

    student, teacher = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    cosine = ((1 - 2 ** -0.5) + 0.0) / 2
    mse = ((0 + 1) + (0 + 1)) / 4
    assert distillation_loss(student, teacher, "cosine").item() == pytest.approx(cosine)
    assert distillation_loss(student, teacher, "mse").item() == pytest.approx(mse)
    assert distillation_loss(student, teacher, "mix", mse_weight=0.25).item() == pytest.approx(0.75 * cosine + 0.25 * mse)


def test_the_int8_backend_quantises_the_lstm_and_stays_close_to_fp32(small_cache, tmp_path):
    _train(small_cache, tmp_path / "s", epochs=1)
    fp32, int8 = load_student(tmp_path / "s"), load_student(tmp_path / "s", backend="torch-int8")
    assert "quantized" in type(int8.model.encoder.lstm).__module__
    assert "quantized" not in type(fp32.model.encoder.lstm).__module__  # the default preset runs fp32 by default
    a, b = fp32.encode(SENTENCES[:50]), int8.encode(SENTENCES[:50])
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.98 and not np.allclose(a, b)
    with pytest.raises(ValueError, match="backend must be one of"):
        load_student(tmp_path / "s", backend="int4")


def test_pad_rows_pads_and_reads_an_empty_row_as_one_pad_token():
    token_ids, weights = np.array([7, 8, 9, 5]), np.array([0.25, 0.75, 1.0, 1.0], dtype=np.float32)
    batch = pad_rows(token_ids, weights, starts=np.array([0, 2, 3]), counts=np.array([2, 0, 1]), pad_id=0)
    assert batch.token_ids.tolist() == [[7, 8], [0, 0], [5, 0]]
    assert batch.lengths.tolist() == [2, 1, 1]
    assert batch.weights.tolist() == [[0.25, 0.75], [1.0, 0.0], [1.0, 0.0]]


def test_bracket_puts_each_row_between_the_start_and_end_tokens():
    config = StudentConfig("transformer", vocab_size=20, output_dim=4, pad_id=0, hidden_size=4, num_layers=1, start_id=3, end_id=4)
    ids, lengths = bracket(torch.tensor([[7, 8, 9], [5, 0, 0], [0, 0, 0]]), torch.tensor([3, 1, 1]), config)
    assert ids.tolist() == [[3, 7, 8, 9, 4], [3, 5, 4, 0, 0], [3, 0, 4, 0, 0]]
    assert lengths.tolist() == [5, 3, 3]


@pytest.mark.parametrize("vocabulary", ["tokenizer", "cache"])
def test_a_transformer_reads_its_pieces_between_the_teachers_special_tokens_which_weigh_nothing(small_cache, tmp_path, vocabulary):
    _train(small_cache, tmp_path / "s", student="transformer", init="seed", token_weights="mean", vocabulary=vocabulary, epochs=1)
    student = load_student(tmp_path / "s")
    tokenizer, config = student.tokenizer, student.model.config
    row = (lambda i: i) if student.reader is None else (lambda i: int(student.reader.lookup[i]))
    assert (vocabulary == "cache") == (student.reader is not None)
    assert (config.start_id, config.end_id) == (row(tokenizer.cls_token_id), row(tokenizer.sep_token_id))
    # by hand: the saved Hugging Face model over [CLS] pieces [SEP] as the tokenizer makes them, the pieces' mean
    model = AutoModel.from_pretrained(str(tmp_path / "s")).eval()
    texts = SENTENCES[:5]
    expected = []
    for text in texts:
        encoded = tokenizer(text, return_special_tokens_mask=True)
        ids = torch.tensor([[row(i) for i in encoded["input_ids"]]])
        assert ids[0, 0] == config.start_id and ids[0, -1] == config.end_id
        with torch.no_grad():
            states = model(input_ids=ids).last_hidden_state[0]
        expected.append(states[torch.tensor(encoded["special_tokens_mask"]) == 0].mean(dim=0).numpy())
    vectors = student.encode(texts)
    expected = np.stack(expected)
    cosines = (vectors * expected).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosines.min() > 0.9999
    _train(small_cache, tmp_path / "plain", student="transformer", init="seed", token_weights="mean", epochs=1, special_tokens=False)
    assert load_student(tmp_path / "plain").model.config.start_id == -1
    assert np.abs(load_student(tmp_path / "plain").encode(texts) - vectors).max() > 1e-3


def test_special_tokens_are_refused_for_a_tokenizer_that_adds_no_start_and_end(small_cache):
    from tokenizers.processors import TemplateProcessing

    tokenizer = hf_local.load_tokenizer(open_cache(small_cache).student_tokenizer_dir)
    assert loop_module._bracket_rows(TrainConfig(cache="c", output=Path("o"), special_tokens=True), tokenizer, None) == {
        "start_id": tokenizer.cls_token_id, "end_id": tokenizer.sep_token_id}
    assert loop_module._bracket_rows(TrainConfig(cache="c", output=Path("o"), special_tokens=False), tokenizer, None) == {}
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(single="$A", special_tokens=[])
    with pytest.raises(ConfigError, match="puts 0 special token.*--no-special-tokens"):
        loop_module._bracket_rows(TrainConfig(cache="c", output=Path("o"), special_tokens=True), tokenizer, None)


def test_a_smaller_embedding_starts_from_the_pca_of_the_token_vectors():
    import torch

    from distilcache.student.model import StudentConfig
    from distilcache.train.build import build_student

    rng = np.random.default_rng(0)
    # 20 token vectors of width 6 that lie in a 3-d affine subspace: a 3-d PCA reconstructs them exactly
    vectors = (rng.normal(size=(20, 3)) @ rng.normal(size=(3, 6)) + rng.normal(size=6)).astype(np.float32)
    config = StudentConfig("bilstm", vocab_size=20, output_dim=6, pad_id=0, hidden_size=4, num_layers=1,
                           embedding_dim=3, concat_embeddings=True)
    model = build_student(config, token_vectors=vectors).eval()
    assert tuple(model.encoder.embedding.weight.shape) == (20, 3)
    token_ids = torch.tensor([[1, 2, 3], [4, 5, 0]])
    weights = torch.tensor([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]])
    with torch.no_grad():
        out = model(token_ids, torch.tensor([3, 2]), weights)
    # untrained, the student is the weighted mean of the teacher's static vectors
    expected = torch.einsum("bt,btd->bd", weights, torch.from_numpy(vectors)[token_ids])
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="do not fit"):
        build_student(StudentConfig("bilstm", 20, 6, 0, 4, 1, embedding_dim=8, concat_embeddings=True), token_vectors=vectors)


def test_the_fast_preset_sizes_a_smaller_bilstm_that_flags_still_override(small_cache, tmp_path):
    _train(small_cache, tmp_path / "fast", epochs=1, preset="fast")
    _train(small_cache, tmp_path / "wider", epochs=1, preset="fast", hidden=16)
    # the preset made for CPU speed runs int8 there unless asked otherwise
    assert "quantized" in type(load_student(tmp_path / "fast").model.encoder.lstm).__module__
    assert "quantized" not in type(load_student(tmp_path / "fast", backend="torch").model.encoder.lstm).__module__
    fast = json.loads((tmp_path / "fast" / "distilcache_student.json").read_text())
    wider = json.loads((tmp_path / "wider" / "distilcache_student.json").read_text())
    # the tiny teacher is 64-d: a third of it for the (PCA) embedding, a sixth per LSTM direction
    assert (fast["student"]["embedding_dim"], fast["student"]["hidden_size"]) == (21, 10)
    assert fast["training"]["preset"] == "fast" and (wider["student"]["hidden_size"], wider["student"]["embedding_dim"]) == (16, 21)
    assert load_student(tmp_path / "fast").encode(SENTENCES[:3]).shape == (3, 64)
    with pytest.raises(ValueError, match="does not apply"):
        _train(small_cache, tmp_path / "t", epochs=1, preset="fast", student="transformer")


def test_attention_pooling_is_a_softmax_of_the_log_weights_plus_learned_scores():
    from distilcache.student.model import StudentConfig
    from distilcache.train.build import build_student

    config = StudentConfig("bilstm", vocab_size=10, output_dim=4, pad_id=0, hidden_size=2, num_layers=1, embedding_dim=4,
                           attention_pooling=True)
    model = build_student(config)
    with torch.no_grad():
        model.attention.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))  # the score is a state's first feature
    states = torch.zeros(3, 3, 4)
    states[0, :, 0] = torch.tensor([0.0, 1.0, 2.0])
    states[1, :, 0] = torch.tensor([0.0, 100.0, 5000.0])  # huge scores at padding must not swamp the real token
    weights = torch.tensor([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    unnormalised = torch.tensor([0.5, 0.25 * np.e, 0.25 * np.e**2])
    expected = torch.stack([unnormalised / unnormalised.sum(), torch.tensor([1.0, 0.0, 0.0]), torch.zeros(3)])
    torch.testing.assert_close(model.attend(states, weights), expected)


def test_attention_pooling_starts_as_the_given_weights_and_is_trained_saved_and_loaded(small_cache, tmp_path):
    from distilcache.student.model import StudentConfig
    from distilcache.train.build import build_student

    config = StudentConfig("bilstm", vocab_size=10, output_dim=4, pad_id=0, hidden_size=2, num_layers=1, embedding_dim=4)
    plain = build_student(config).eval()
    attentive = build_student(StudentConfig(**config.to_dict() | {"attention_pooling": True})).eval()
    attentive.load_state_dict(plain.state_dict(), strict=False)
    token_ids, lengths = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])
    weights = torch.tensor([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]])
    with torch.no_grad():
        torch.testing.assert_close(attentive(token_ids, lengths, weights), plain(token_ids, lengths, weights))

    _train(small_cache, tmp_path / "s", epochs=2)  # on by default for a BiLSTM
    student = load_student(tmp_path / "s")
    assert student.info["student"]["attention_pooling"] is True and (tmp_path / "s" / "attention.safetensors").is_file()
    assert student.model.attention.weight.abs().sum() > 0  # it learned something
    _train(small_cache, tmp_path / "off", epochs=1, attention_pooling=False)
    _train(small_cache, tmp_path / "tfm", epochs=1, student="transformer", hidden=32, layers=1)
    for name in ("off", "tfm"):
        assert load_student(tmp_path / name).model.attention is None
        assert not (tmp_path / name / "attention.safetensors").exists()


def test_the_embedding_learning_rate_scale_freezes_or_slows_the_token_embedding(small_cache, tmp_path):
    from distilcache.student.model import StudentConfig
    from distilcache.train.build import build_student

    def embedding_change(scale: float) -> float:
        config = StudentConfig("bilstm", vocab_size=10, output_dim=4, pad_id=0, hidden_size=2, num_layers=1, embedding_dim=4)
        torch.manual_seed(0)
        model = build_student(config)
        before = model.encoder.embedding.weight.detach().clone()
        optimizer = torch.optim.SGD(loop_module._parameter_groups(model, 0.1, scale, anchored=False), lr=0.1)
        model(torch.tensor([[1, 2, 3]]), torch.tensor([3]), torch.tensor([[0.2, 0.3, 0.5]])).sum().backward()
        optimizer.step()
        return (model.encoder.embedding.weight.detach() - before).abs().sum().item()

    assert embedding_change(0.0) == 0.0
    assert embedding_change(0.5) == pytest.approx(embedding_change(1.0) / 2, rel=1e-4)
    with pytest.raises(ValueError, match="embedding-lr-scale"):
        _train(small_cache, tmp_path / "s", embedding_lr_scale=-1)


def test_the_embedding_anchor_pulls_the_token_embedding_back_toward_its_start_instead_of_decaying_it():
    from distilcache.student.model import StudentConfig
    from distilcache.train.build import build_student

    config = StudentConfig("bilstm", vocab_size=10, output_dim=4, pad_id=0, hidden_size=2, num_layers=1, embedding_dim=4)
    torch.manual_seed(0)
    model = build_student(config)
    weight = model.encoder.embedding.weight
    start = weight.detach().clone()
    groups = loop_module._parameter_groups(model, 0.1, 3.0, anchored=True)
    assert [g.get("weight_decay") for g in groups] == [None, 0.0] and groups[1]["lr"] == pytest.approx(0.3)
    optimizer = torch.optim.AdamW(groups, lr=0.1, weight_decay=0.5)
    anchor = loop_module.EmbeddingAnchor(model, optimizer, strength=2.0)
    with torch.no_grad():
        weight.add_(1.0)  # as if the steps so far had moved every row by 1
    anchor.step()
    # by group lr * strength = 0.3 * 2 = 0.6 of the way back: every row ends 0.4 from its start
    torch.testing.assert_close(weight.detach() - start, torch.full_like(start, 0.4))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # AdamW with zero gradients: only weight decay moves weights, and not the anchored embedding
    torch.testing.assert_close(weight.detach() - start, torch.full_like(start, 0.4))
    transformer = build_student(StudentConfig("transformer", vocab_size=10, output_dim=4, pad_id=0, hidden_size=8, num_layers=1))
    with pytest.raises(ValueError, match="embedding-anchor"):
        loop_module.EmbeddingAnchor(transformer, optimizer, strength=1.0)


def test_dev_sets_are_scored_every_epoch_as_the_saved_student_scores_them_and_can_pick_the_epoch(small_cache, tmp_path):
    from distilcache.pairs import pairs_spearman, read_sts

    rng = np.random.default_rng(0)
    lines = ["sentence1\tsentence2\tscore"] + [f"{a}\t{b}\t{rng.uniform(0, 5):.2f}"
                                               for a, b in zip(SENTENCES[:60], recombined_sentences(60, seed=9))]
    dev = write_lines(tmp_path / "dev.tsv", lines)
    other = write_lines(tmp_path / "other.tsv", lines[:1] + lines[30:])
    summary = _train(small_cache, tmp_path / "s", epochs=3, dev_sts=(dev, other), select="dev")
    scores = [entry["dev_spearman"][f"{tmp_path.name}/dev"] for entry in summary["history"]]
    assert [set(entry["dev_spearman"]) for entry in summary["history"]] == [{f"{tmp_path.name}/dev", f"{tmp_path.name}/other"}] * 3
    assert summary["selected_by"] == "dev" and summary["best_epoch"] == 1 + int(np.argmax(scores))
    saved = load_student(tmp_path / "s", backend="torch")
    assert pairs_spearman(lambda texts: saved.encode(texts), read_sts(dev)) == pytest.approx(max(scores), abs=1e-6)
    fidelity = _train(small_cache, tmp_path / "f", epochs=3, dev_sts=(dev,))  # reported, not selecting
    assert fidelity["best_epoch"] == 1 + int(np.argmax([e["val_fidelity"] for e in fidelity["history"]]))
    with pytest.raises(ValueError, match="--select dev needs"):
        _train(small_cache, tmp_path / "x", select="dev")
