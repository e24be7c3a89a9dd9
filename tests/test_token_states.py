"""precompute --token-states and train --token-loss: the teacher's token states, compressed, and the loss on them."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import EN, ZH, make_teacher, recombined_sentences, write_lines
from transformers import AutoModel, AutoTokenizer

from distilcache import open_cache
from distilcache.cache_format import CacheError, verify_cache, write_json_atomic, write_parquet_atomic
from distilcache.cache_format.errors import ConfigError
from distilcache.cache_format.hashing import sha256_file
from distilcache.cache_format.layout import TOKEN_PROJECTION_FILE
from distilcache.cache_format.summary import describe
from distilcache.cache_format.token_states import TokenProjection, read_projection
from distilcache.inputs import InputSpec
from distilcache.precompute import PrecomputeConfig, local_engine, precompute
from distilcache.teacher.config import PoolingConfig
from distilcache.train import TrainConfig, train
from distilcache.student.model import BiLSTMEncoder, StudentConfig, StudentModel
from distilcache.train import loop as loop_module
from distilcache.train.data import read_rows, row_groups, scan_cache, training_batches
from distilcache.train.losses import token_state_loss

K = 8


def _projection(dim: int = 6, k: int = 3, seed: int = 0) -> TokenProjection:
    rng = np.random.default_rng(seed)
    components = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:k].astype(np.float32)
    return TokenProjection(rng.normal(size=dim).astype(np.float32), components, np.array([3.0, 2.0, 1.0][:k]), 7.5, 123)


def test_projection_file_round_trips_and_refuses_what_does_not_fit(tmp_path):
    path = tmp_path / TOKEN_PROJECTION_FILE
    projection = _projection()
    write_parquet_atomic(projection.to_table(), path)
    read = read_projection(path, 6, 3)
    np.testing.assert_array_equal(read.mean, projection.mean)
    np.testing.assert_array_equal(read.components, projection.components)
    assert (read.fit_tokens, read.total_variance, read.explained) == (123, 7.5, 6 / 7.5)
    with pytest.raises(CacheError, match="expected the mean and 4 components"):
        read_projection(path, 6, 4)
    with pytest.raises(CacheError, match="columns"):
        read_projection(path, 5, 3)
    broken = projection.to_table().set_column(2, "vector", pa.FixedSizeListArray.from_arrays(
        pa.array(np.full(24, np.nan, dtype=np.float32)), 6))
    write_parquet_atomic(broken, path)
    with pytest.raises(CacheError, match="non-finite"):
        read_projection(path, 6, 3)
    write_parquet_atomic(projection.to_table().replace_schema_metadata({}), path)
    with pytest.raises(CacheError, match="fitted on"):
        read_projection(path, 6, 3)


def test_token_state_loss_by_hand():
    mean = torch.tensor([1.0, 0.0])
    components = torch.tensor([[1.0, 0.0]])  # k = 1: the first coordinate, minus 1
    outputs = torch.tensor([[[3.0, 5.0], [1.0, 9.0]], [[0.0, 0.0], [7.0, 7.0]]])  # coordinates 2, 0 / -1, 6
    targets = torch.tensor([[[1.0], [0.5]], [[-1.0], [100.0]]])
    mask = torch.tensor([[True, True], [True, False]])  # the last position is padding
    expected = ((2 - 1) ** 2 + (0 - 0.5) ** 2 + 0) / (1 + 0.25 + 1)
    assert token_state_loss(outputs, targets, mask, mean, components).item() == pytest.approx(expected)
    assert token_state_loss(outputs, targets, torch.zeros_like(mask), mean, components).item() == 0.0


@pytest.fixture(scope="module")
def states_cache(tmp_path_factory):
    """A cache with token states of a tiny teacher, over plain rows and parallel-text rows (whose teacher read
    another text), the teacher kept."""
    root = tmp_path_factory.mktemp("states")
    sentences = recombined_sentences(120, seed=3)
    teacher = make_teacher(root / "teacher", texts=sentences + EN + ZH)
    rows = [{"id": f"r{i}", "text": text} for i, text in enumerate(sentences)]
    rows += [{"id": f"p{i}", "text": zh, "target": en} for i, (zh, en) in enumerate(zip(ZH, EN))]
    corpus = root / "rows.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    config = PrecomputeConfig(teacher=teacher, inputs=[InputSpec(corpus, id_field="id", target_field="target")], output=root / "cache",
                              device="cpu", token_states=K, student_vocab="teacher", sort_window=64, shard_size=50, workers=1)
    manifest = precompute(config)
    return root, teacher, manifest


def test_token_states_are_the_teachers_states_projected(states_cache):
    root, teacher, manifest = states_cache
    entry = manifest["token_states"]
    assert entry["dim"] == K and entry["rows_with_states"] == manifest["total_rows"] - len(ZH)
    assert entry["fit_tokens"] > K and 0 < entry["explained_variance"] < 1 and entry["bytes_per_row"] > 0
    assert verify_cache(root / "cache") == []
    cache = open_cache(root / "cache")
    assert f"token states {K} principal components" in describe(cache)  # distilcache inspect
    assert "`token_states`: the teacher's state at each of `token_ids`" in (root / "cache" / "README.md").read_text()
    projection = read_projection(cache.token_projection_path, cache.dim, K)
    np.testing.assert_allclose(projection.components @ projection.components.T, np.eye(K), atol=1e-5)
    assert (np.diff(projection.variance) <= 1e-9).all()  # largest variance first
    table = cache.table(["id", "text", "target_text", "token_ids", "token_states"])
    tokenizer = AutoTokenizer.from_pretrained(str(teacher))
    model = AutoModel.from_pretrained(str(teacher)).eval()
    checked = 0
    for row in table.to_pylist():
        if row["target_text"] is not None:
            assert row["token_states"] is None  # the teacher read the target, not these tokens
            continue
        if checked == 5:
            continue
        encoded = tokenizer(row["text"], return_tensors="pt")
        assert encoded["input_ids"][0, 1:-1].tolist() == row["token_ids"]
        with torch.no_grad():
            states = model(**encoded).last_hidden_state[0, 1:-1].numpy()
        np.testing.assert_allclose(np.array(row["token_states"], dtype=np.float32), projection.project(states), atol=2e-2, rtol=1e-2)
        checked += 1
    assert checked == 5


def test_verify_names_a_row_whose_token_states_do_not_fit_its_tokens(states_cache, tmp_path):
    root, _, manifest = states_cache
    cache = tmp_path / "cache"
    shutil.copytree(root / "cache", cache)
    shard = cache / manifest["shards"][0]["file"]
    table = pq.read_table(shard)
    states = table["token_states"].to_pylist()
    states[3] = states[3][:-1]  # a state short, the checksum made to match: a cache someone else wrote
    table = table.set_column(table.schema.get_field_index("token_states"), table.schema.field("token_states"),
                             pa.array(states, table.schema.field("token_states").type))
    write_parquet_atomic(table, shard)
    changed = dict(manifest)
    changed["shards"] = [dict(e) for e in manifest["shards"]]
    changed["shards"][0]["sha256"] = sha256_file(shard)
    write_json_atomic(changed, cache / "manifest.json")
    problems = verify_cache(cache)
    assert len(problems) == 1 and "row 3" in problems[0].message and "token states for" in problems[0].message
    with pytest.raises(CacheError, match="token_states and token_ids differ"):
        read_rows(row_groups(open_cache(cache))[0], open_cache(cache).dim, K)


def test_a_resumed_run_keeps_its_projection_and_one_without_it_is_refused(states_cache, tmp_path, monkeypatch):
    root, teacher, manifest = states_cache
    spec = InputSpec(root / "rows.jsonl", id_field="id", target_field="target")
    options = {"teacher": teacher, "inputs": [spec], "device": "cpu", "token_states": K, "student_vocab": "teacher",
               "sort_window": 64, "shard_size": 50, "workers": 1}
    real_write_shard = local_engine.write_shard

    def write_then_fail(out, index, table):
        real_write_shard(out, index, table)
        if index == 1:
            raise RuntimeError("stopped after shard 1")

    monkeypatch.setattr(local_engine, "write_shard", write_then_fail)
    with pytest.raises(RuntimeError, match="stopped after shard 1"):
        precompute(PrecomputeConfig(output=tmp_path / "cache", **options))
    monkeypatch.undo()
    shutil.copytree(tmp_path / "cache", tmp_path / "lost")
    projection = (tmp_path / "cache" / TOKEN_PROJECTION_FILE).read_bytes()
    resumed = precompute(PrecomputeConfig(output=tmp_path / "cache", **options))
    assert resumed["shards"] == manifest["shards"] and resumed["token_states"] == manifest["token_states"]
    assert (tmp_path / "cache" / TOKEN_PROJECTION_FILE).read_bytes() == projection
    (tmp_path / "lost" / TOKEN_PROJECTION_FILE).unlink()
    with pytest.raises(CacheError, match="holds shards but no token_projection.parquet"):
        precompute(PrecomputeConfig(output=tmp_path / "lost", **options))


def test_token_states_refuse_partitions_and_too_many_components(tmp_path):
    teacher = make_teacher(tmp_path / "teacher", hidden=16)
    corpus = write_lines(tmp_path / "corpus.txt", EN)
    with pytest.raises(ConfigError, match="--token-states fits its projection"):
        PrecomputeConfig(teacher=teacher, inputs=[InputSpec(corpus)], output=tmp_path / "a", token_states=4, num_partitions=2,
                         pooling=PoolingConfig("mean")).validate()
    with pytest.raises(ConfigError, match="exceeds the teacher's hidden size 16"):
        precompute(PrecomputeConfig(teacher=teacher, inputs=[InputSpec(corpus)], output=tmp_path / "b", token_states=17, device="cpu"))


def test_batches_carry_the_states_of_their_rows_and_mask_the_rest(states_cache):
    root, _, _ = states_cache
    cache = open_cache(root / "cache")
    scan = scan_cache(cache, 0.1, 10**6, token_states=True)
    stored = {row["id"]: row["token_states"] for row in cache.table(["id", "token_states"]).to_pylist()}
    seen = 0
    for batch in training_batches(scan, cache.dim, lambda rows: rows, 16, 1000, np.random.default_rng(0), pad_id=0):
        for b, row_id in enumerate(batch.ids.to_pylist()):
            mask = batch.state_mask[b].numpy()
            if stored[row_id] is None:
                assert not mask.any()
            else:
                assert mask.sum() == len(stored[row_id]) == batch.inputs.lengths[b].item()
                np.testing.assert_array_equal(batch.token_states[b][mask].numpy(), np.array(stored[row_id], dtype=np.float16))
            seen += 1
    assert seen == scan.train_rows


def test_the_training_loss_adds_the_weighted_token_state_loss_of_the_rows_with_states(states_cache):
    root, _, _ = states_cache
    cache = open_cache(root / "cache")
    projection = read_projection(cache.token_projection_path, cache.dim, K)
    mean, components = torch.from_numpy(projection.mean), torch.from_numpy(projection.components)
    scan = scan_cache(cache, 0.1, 10**6, token_states=True)
    config = StudentConfig("bilstm", 10**6, cache.dim, 0, 8, 1, embedding_dim=16)
    model = StudentModel(config, BiLSTMEncoder(config)).eval()
    settings = TrainConfig(cache=root / "cache", output=root / "unused", token_loss=0.5)
    with torch.no_grad():
        for batch in training_batches(scan, cache.dim, lambda rows: rows, 16, 1000, np.random.default_rng(0), pad_id=0):
            plain = loop_module._batch_loss(model, batch, settings, torch.device("cpu"), "fp32", None)[0]
            both = loop_module._batch_loss(model, batch, settings, torch.device("cpu"), "fp32", (mean, components))[0]
            outputs = model.project(model.token_states(batch.inputs.token_ids, batch.inputs.lengths))  # (rows, tokens, dim)
            held = [(b, t) for b in range(len(batch)) for t in range(batch.inputs.lengths[b]) if batch.state_mask[b, t]]
            errors = sum(float((((outputs[b, t] - mean) @ components.T - batch.token_states[b, t].float()) ** 2).sum()) for b, t in held)
            norms = sum(float((batch.token_states[b, t].float() ** 2).sum()) for b, t in held)
            assert both.item() - plain.item() == pytest.approx(0.5 * errors / norms, rel=1e-4)


def test_a_student_trained_with_the_token_loss_reports_it(states_cache, tmp_path):
    root, _, _ = states_cache
    summary = train(TrainConfig(cache=root / "cache", output=tmp_path / "student", epochs=3, device="cpu", hidden=32, token_loss=1.0))
    assert json.loads((tmp_path / "student" / "distilcache_student.json").read_text())["training"]["token_loss"] == 1.0
    for entry in summary["history"]:  # the held-out loss holds the token term: above 1 - cosine alone
        assert entry["val_loss"] > 1 - entry["val_fidelity"] + 0.1


def test_token_loss_needs_a_cache_with_token_states(tmp_path, monkeypatch):
    from conftest import tiny_cache

    tiny_cache(tmp_path, recombined_sentences(40))
    scanned = []
    monkeypatch.setattr(loop_module, "scan_cache", lambda *a, **k: scanned.append(1))
    with pytest.raises(ConfigError, match="holds no token states; precompute it with --token-states K"):
        train(TrainConfig(cache=tmp_path / "cache", output=tmp_path / "student", token_loss=1.0, device="cpu"))
    assert not scanned  # refused before reading the rows
