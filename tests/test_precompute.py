import json
import math
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import jieba
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from conftest import CORPUS, EN, MIXED, ZH, recombined_sentences, record_shard_writes, write_lines
from distilcache import open_cache
from distilcache.cache_format import CacheError, CacheLock, CacheMismatchError, verify_cache
from distilcache.precompute import InputSpec, PoolingConfig, PrecomputeConfig, precompute
from distilcache.devices import threads_beside
from distilcache.precompute import workers
from distilcache.precompute.run import preparing_workers
from distilcache.precompute import local_engine


def _config(teacher: Path, inputs: list[Path], output: Path, **kwargs) -> PrecomputeConfig:
    pooling = PoolingConfig(**{k: kwargs.pop(k) for k in list(kwargs) if k in PoolingConfig.__dataclass_fields__})
    return PrecomputeConfig(teacher=teacher, inputs=[InputSpec(p) for p in inputs], output=output, pooling=pooling,
                            device="cpu", **kwargs)


def reference_vectors(teacher: Path, texts: list[str], corpus: list[str], mode: str, smoothing: float = 0.1, layer: int = -1) -> np.ndarray:
    """The LTD-BERT rule written out directly: jieba words, corpus IDF, characters, offsets, weighted sum."""
    tokenizer = AutoTokenizer.from_pretrained(str(teacher))
    model = AutoModel.from_pretrained(str(teacher)).eval()
    df = Counter()
    for doc in corpus:
        df.update(set(jieba.lcut(doc)))
    vectors = []
    for text in texts:
        char_weight = []
        for word in jieba.lcut(text):
            idf = math.log((1 + len(corpus)) / (1 + df[word])) + 1
            char_weight += [idf / len(word) + smoothing] * len(word)
        encoded = tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
        with torch.no_grad():
            states = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], output_hidden_states=True).hidden_states
        hidden = states[layer][0]
        if mode == "cls":
            vectors.append(hidden[0].numpy())
        elif mode == "mean":
            vectors.append(hidden.mean(0).numpy())
        else:
            offsets = encoded["offset_mapping"][0].tolist()
            weights = torch.zeros(len(offsets))
            for i, (start, end) in enumerate(offsets[1:-1], start=1):  # [CLS] ... [SEP]
                weights[i] = sum(char_weight[start:end])
            vectors.append(((weights / weights.sum()) @ hidden).numpy())
    return np.stack(vectors)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "corpus.txt", CORPUS)


@pytest.mark.parametrize("mode", ["idf", "mean", "cls"])
def test_cached_vectors_equal_an_independent_reference(teacher_dir, corpus, tmp_path, mode):
    precompute(_config(teacher_dir, [corpus], tmp_path / "cache", mode=mode, batch_size=4))
    cache = open_cache(tmp_path / "cache")
    reference = reference_vectors(teacher_dir, CORPUS, CORPUS, mode)
    cosines = _cosine(cache.vectors(), reference)
    for group, texts in (("zh", ZH), ("en", EN), ("mixed", MIXED)):
        rows = [CORPUS.index(t) for t in texts]
        assert cosines[rows].min() >= 0.999, (group, cosines[rows])
    assert cache.dtype == "float16" and cache.vectors().shape == (len(CORPUS), 64)


def test_float32_and_another_layer_match_the_reference(teacher_dir, corpus, tmp_path):
    precompute(_config(teacher_dir, [corpus], tmp_path / "cache", layer=1, smoothing=0.5, dtype="float32"))
    cosines = _cosine(open_cache(tmp_path / "cache").vectors(), reference_vectors(teacher_dir, CORPUS, CORPUS, "idf", 0.5, layer=1))
    assert cosines.min() >= 0.99999


def test_every_line_is_one_row_in_order_and_rejections_are_counted(teacher_dir, tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes("\n".join(CORPUS[:3]).encode() + b"\n\n  \nbad\xff\n" + "\n".join(CORPUS[3:]).encode() + b"\n")
    manifest = precompute(_config(teacher_dir, [path], tmp_path / "cache", shard_size=4))
    table = open_cache(tmp_path / "cache").table()
    assert table["text"].to_pylist() == CORPUS
    assert table["id"].to_pylist() == [f"lines:{n}" for n in [1, 2, 3] + list(range(7, 7 + len(CORPUS) - 3))]
    assert manifest["total_rows"] == len(CORPUS) and len(manifest["shards"]) == math.ceil(len(CORPUS) / 4)
    assert manifest["rejected"]["count"] == 3 and manifest["rejected"]["by_reason"] == {"empty": 2, "invalid_utf8": 1}
    (entry,) = manifest["inputs"]
    assert entry["input_rows"] == entry["rows"] + entry["rejected"] == len(CORPUS) + 3
    rejected = [json.loads(line) for line in (tmp_path / "cache" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["row"], r["reason"]) for r in rejected] == [(4, "empty"), (5, "empty"), (6, "invalid_utf8")]


def test_weights_align_with_tokens_and_sum_to_one(teacher_dir, corpus, tmp_path):
    precompute(_config(teacher_dir, [corpus], tmp_path / "cache"))
    table = open_cache(tmp_path / "cache").table()
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "cache" / "tokenizer"))
    for text, ids, weights in zip(CORPUS, table["token_ids"].to_pylist(), table["weights"].to_pylist()):
        assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(weights) == len(ids) and sum(weights) == pytest.approx(1.0, abs=1e-5)
        assert min(weights) > 0


def test_text_without_tokens_still_gets_a_finite_vector(teacher_dir, tmp_path):
    path = write_lines(tmp_path / "odd.txt", ["\u200b\u200b", "今天天气很好"])
    manifest = precompute(_config(teacher_dir, [path], tmp_path / "cache"))
    table = open_cache(tmp_path / "cache").table()
    assert table["token_ids"].to_pylist()[0] == [] and table["weights"].to_pylist()[0] == []
    assert np.isfinite(open_cache(tmp_path / "cache").vectors()).all()
    assert manifest["stats"]["rows_without_tokens"] == 1


def test_truncation_is_recorded_per_row(teacher_dir, tmp_path):
    path = write_lines(tmp_path / "t.txt", ["我的儿子在哪儿", "短"])
    manifest = precompute(_config(teacher_dir, [path], tmp_path / "cache", max_length=5))
    table = open_cache(tmp_path / "cache").table()
    assert table["truncated"].to_pylist() == [True, False]
    assert [len(ids) for ids in table["token_ids"].to_pylist()] == [3, 1]
    assert manifest["stats"]["truncated_rows"] == 1


def test_rerun_with_the_same_settings_does_nothing(teacher_dir, corpus, tmp_path, caplog):
    first = precompute(_config(teacher_dir, [corpus], tmp_path / "cache"))
    shard = tmp_path / "cache" / first["shards"][0]["file"]
    stamp = shard.stat().st_mtime_ns
    with caplog.at_level("INFO"):
        again = precompute(_config(teacher_dir, [corpus], tmp_path / "cache"))
    assert "already complete" in caplog.text
    assert again == first and shard.stat().st_mtime_ns == stamp


def test_rerun_with_other_settings_is_refused_naming_the_field(teacher_dir, corpus, tmp_path):
    precompute(_config(teacher_dir, [corpus], tmp_path / "cache"))
    with pytest.raises(CacheMismatchError, match=r"pooling\.smoothing: cache has 0\.1, this run has 0\.2"):
        precompute(_config(teacher_dir, [corpus], tmp_path / "cache", smoothing=0.2))
    with pytest.raises(CacheMismatchError, match=r"vector\.dtype: cache has 'float16', this run has 'float32'"):
        precompute(_config(teacher_dir, [corpus], tmp_path / "cache", dtype="float32"))


def test_resume_after_a_crash_skips_finished_shards_and_equals_an_uninterrupted_run(teacher_dir, corpus, tmp_path, monkeypatch):
    precompute(_config(teacher_dir, [corpus], tmp_path / "whole", shard_size=3))

    written = record_shard_writes(monkeypatch, local_engine, crash_after=2)
    with pytest.raises(KeyboardInterrupt):
        precompute(_config(teacher_dir, [corpus], tmp_path / "resumed", shard_size=3))
    assert not (tmp_path / "resumed" / "manifest.json").exists() and (tmp_path / "resumed" / "plan.json").exists()
    stamps = {i: (tmp_path / "resumed" / f"shards/part-{i:05d}.parquet").stat().st_mtime_ns for i in written}

    rewritten = record_shard_writes(monkeypatch, local_engine)
    manifest = precompute(_config(teacher_dir, [corpus], tmp_path / "resumed", shard_size=3))
    assert written + rewritten == [0, 1, 2, 3, 4] and manifest["run"]["resumed_shards"] == 2
    for i, stamp in stamps.items():  # finished shards were not rewritten
        assert (tmp_path / "resumed" / f"shards/part-{i:05d}.parquet").stat().st_mtime_ns == stamp
    whole = open_cache(tmp_path / "whole")
    for a, b in zip(whole.shard_paths, open_cache(tmp_path / "resumed").shard_paths):
        assert a.read_bytes() == b.read_bytes()
    assert manifest["fingerprint"] == whole.manifest["fingerprint"]
    assert not (tmp_path / "resumed" / "plan.json").exists()


def test_a_second_writer_is_refused(teacher_dir, corpus, tmp_path):
    (tmp_path / "cache").mkdir()
    with CacheLock(tmp_path / "cache"):
        with pytest.raises(CacheError, match="being written by another process"):
            precompute(_config(teacher_dir, [corpus], tmp_path / "cache"))
    precompute(_config(teacher_dir, [corpus], tmp_path / "cache"))  # the lock is gone with its holder


def test_a_foreign_non_empty_directory_is_not_written_into(teacher_dir, corpus, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "notes.txt").write_text("mine")
    with pytest.raises(CacheError, match="not empty"):
        precompute(_config(teacher_dir, [corpus], tmp_path / "cache"))
    assert (tmp_path / "cache" / "notes.txt").read_text() == "mine"


def test_a_reused_idf_table_gives_the_same_weights_and_fingerprint(teacher_dir, corpus, tmp_path):
    first = precompute(_config(teacher_dir, [corpus], tmp_path / "a"))
    config = _config(teacher_dir, [corpus], tmp_path / "b")
    config.idf_file = tmp_path / "a" / "idf.parquet"
    second = precompute(config)
    assert second["idf"]["content_sha256"] == first["idf"]["content_sha256"]
    assert second["fingerprint"] == first["fingerprint"] and second["idf"]["source"]["kind"] == "file"
    a, b = open_cache(tmp_path / "a").table(), open_cache(tmp_path / "b").table()
    assert a["weights"].to_pylist() == b["weights"].to_pylist()


def test_words_missing_from_a_reused_idf_table_get_the_df_zero_idf(teacher_dir, corpus, tmp_path):
    precompute(_config(teacher_dir, [corpus], tmp_path / "a"))
    new_text = write_lines(tmp_path / "new.txt", ["我爱北京天安门"])
    config = _config(teacher_dir, [new_text], tmp_path / "b", mode="idf")
    config.idf_file = tmp_path / "a" / "idf.parquet"
    precompute(config)
    reference = reference_vectors(teacher_dir, ["我爱北京天安门"], CORPUS, "idf")  # df from the table's corpus
    assert _cosine(open_cache(tmp_path / "b").vectors(), reference).min() >= 0.999


def test_tokenizer_files_are_copied_into_the_cache(teacher_dir, corpus, tmp_path):
    manifest = precompute(_config(teacher_dir, [corpus], tmp_path / "cache"))
    assert "tokenizer/tokenizer.json" in manifest["tokenizer"]["files"]
    copied = AutoTokenizer.from_pretrained(str(tmp_path / "cache" / "tokenizer"))
    assert copied("今天 weather")["input_ids"] == AutoTokenizer.from_pretrained(str(teacher_dir))("今天 weather")["input_ids"]


def test_shards_are_zstd_parquet_with_the_v1_schema(teacher_dir, corpus, tmp_path):
    manifest = precompute(_config(teacher_dir, [corpus], tmp_path / "cache"))
    parquet = pq.ParquetFile(tmp_path / "cache" / manifest["shards"][0]["file"])
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    assert parquet.schema_arrow.names == ["id", "text", "target_text", "token_ids", "weights", "truncated", "vector"]
    vector_type = parquet.schema_arrow.field("vector").type
    assert vector_type.value_type == pa.float16() and vector_type.list_size == 64


def test_a_shard_prepared_in_several_windows_equals_one_prepared_at_once(teacher_dir, corpus, tmp_path):
    precompute(_config(teacher_dir, [corpus], tmp_path / "one", batch_size=2))
    precompute(_config(teacher_dir, [corpus], tmp_path / "windows", batch_size=2, sort_window=3))
    one, windows = open_cache(tmp_path / "one"), open_cache(tmp_path / "windows")
    assert one.table(["id", "token_ids", "weights"]).equals(windows.table(["id", "token_ids", "weights"]))
    np.testing.assert_allclose(one.vectors(), windows.vectors(), atol=2e-3)


def test_bf16_autocast_runs_on_cpu_and_stays_close_to_fp32(teacher_dir, corpus, tmp_path):
    """The reduced-precision path CUDA uses by default, exercised on the CPU (CI has no GPU)."""
    precompute(_config(teacher_dir, [corpus], tmp_path / "fp32"))
    manifest = precompute(_config(teacher_dir, [corpus], tmp_path / "bf16", precision="bf16"))
    assert manifest["run"]["precision"] == "bf16"
    assert _cosine(open_cache(tmp_path / "fp32").vectors(), open_cache(tmp_path / "bf16").vectors()).min() >= 0.99


def test_the_dataset_card_describes_the_cache_and_verify_vouches_for_it(teacher_dir, corpus, tmp_path):
    manifest = precompute(_config(teacher_dir, [corpus], tmp_path / "cache"))
    card = (tmp_path / "cache" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nconfigs:") and "path: shards/part-*.parquet" in card
    assert manifest["teacher"]["name"] in card and f"{manifest['total_rows']:,} in 1 shard(s)" in card
    assert manifest["fingerprint"] in card and corpus.name in card
    assert verify_cache(tmp_path / "cache") == []
    (tmp_path / "cache" / "README.md").write_text(card + "edited\n", encoding="utf-8")
    assert [p.file for p in verify_cache(tmp_path / "cache")] == ["README.md"]


def _count_teacher_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of every batch the teacher computes from now on."""
    from distilcache.teacher import model as model_module

    counted, forward = [], model_module.forward_layer
    monkeypatch.setattr(model_module, "forward_layer", lambda model, inputs, layer: counted.append(len(inputs["input_ids"]))
                        or forward(model, inputs, layer))
    return counted


def test_a_repeated_teacher_input_reaches_the_teacher_once_per_shard(teacher_dir, tmp_path, monkeypatch):
    # shard 0 repeats its first five rows in later windows; shard 1 repeats rows of shard 0 (computed again there)
    lines = CORPUS + CORPUS[:5] + CORPUS[2:6]
    distinct = precompute(_config(teacher_dir, [write_lines(tmp_path / "distinct.txt", CORPUS)], tmp_path / "distinct", mode="mean"))
    counted = _count_teacher_rows(monkeypatch)
    manifest = precompute(_config(teacher_dir, [write_lines(tmp_path / "repeats.txt", lines)], tmp_path / "cache", mode="mean",
                                  shard_size=len(CORPUS) + 5, sort_window=4, batch_size=3))
    assert sum(counted) == manifest["stats"]["teacher_inputs"] == len(CORPUS) + 4
    assert manifest["total_rows"] == len(lines)
    cache, reference = open_cache(tmp_path / "cache"), open_cache(tmp_path / "distinct").vectors()
    vectors, texts = cache.vectors(), cache.table(["text"])["text"].to_pylist()
    np.testing.assert_allclose(vectors, reference[[CORPUS.index(t) for t in texts]], atol=2e-3)
    np.testing.assert_array_equal(vectors[len(CORPUS):len(CORPUS) + 5], vectors[:5])  # the same shard: the first row's vector
    assert distinct["stats"]["teacher_inputs"] == len(CORPUS)


def test_rows_sharing_a_teacher_input_share_its_vector_but_keep_their_own_student_tokens(teacher_dir, tmp_path, monkeypatch):
    rows = [{"id": "a", "text": ZH[0], "target": EN[0]}, {"id": "b", "text": ZH[1], "target": EN[0]}, {"id": "c", "text": EN[0]},
            {"id": "d", "text": ZH[0]}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    counted = _count_teacher_rows(monkeypatch)
    config = PrecomputeConfig(teacher=teacher_dir, inputs=[InputSpec(path, target_field="target")], output=tmp_path / "cache",
                              pooling=PoolingConfig("mean"), device="cpu")
    manifest = precompute(config)
    assert sum(counted) == manifest["stats"]["teacher_inputs"] == 2  # EN[0] for a, b, c; ZH[0] for d
    cache = open_cache(tmp_path / "cache")
    vectors, tokens = cache.vectors(), cache.table(["token_ids"])["token_ids"].to_pylist()
    np.testing.assert_array_equal(vectors[[1, 2]], vectors[[0, 0]])
    assert not np.allclose(vectors[3], vectors[0])
    assert tokens[0] == tokens[3] != tokens[1] != tokens[2]


def test_a_worker_group_returns_results_in_order_and_raises_a_workers_error_or_death():
    with workers.WorkerGroup(2) as group:
        for key, (a, b) in enumerate([(7, 2), (9, 4), (10, 3), (5, 5)]):
            group.submit(key * 3, divmod, a, b)  # keys 0, 3, 6, 9: workers 0, 1, 0, 1
        assert [group.oldest() for _ in range(4)] == [(3, 1), (2, 1), (3, 1), (1, 0)]
        group.submit(1, int, "not a number")
        with pytest.raises(ValueError, match="invalid literal") as raised:
            group.oldest()
        assert "distilcache-worker-1" in "".join(raised.value.__notes__)
        group.submit(0, os._exit, 3)
        with pytest.raises(RuntimeError, match="distilcache-worker-0 .* ended with exit code 3"):
            group.oldest()


def test_preparing_workers_default_to_a_thread_on_the_cpu_and_to_the_spare_cores_for_ray(teacher_dir, tmp_path):
    config = _config(teacher_dir, [tmp_path / "c.txt"], tmp_path / "out")
    assert config.workers is None and preparing_workers(config) == 1  # a CPU teacher's forward needs the cores
    assert preparing_workers(replace(config, workers=3)) == 3
    assert preparing_workers(replace(config, engine="ray")) == workers.spare_cores() == max(1, (os.cpu_count() or 1) - 1)


def test_torch_keeps_to_the_cores_busy_processes_leave_and_gets_its_threads_back():
    before = torch.get_num_threads()
    with threads_beside(os.cpu_count() or 1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_worker_processes_write_the_same_cache_byte_for_byte(teacher_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "BYTES_PER_WORKER", 1)  # a worker per byte: this small corpus gets the processes
    corpus = write_lines(tmp_path / "corpus.txt", recombined_sentences(260, seed=5) + CORPUS + ZH)  # ZH twice: repeats
    options = {"shard_size": 100, "sort_window": 30, "batch_size": 8, "token_states": 4}  # the states cross processes too
    one = precompute(_config(teacher_dir, [corpus], tmp_path / "one", workers=1, **options))
    two = precompute(_config(teacher_dir, [corpus], tmp_path / "two", workers=2, **options))
    for key in ("fingerprint", "idf", "shards", "stats", "total_rows", "token_states"):
        assert one[key] == two[key], key  # shards and idf.parquet by sha256
    assert (one["run"]["preparing_workers"], two["run"]["preparing_workers"]) == (1, 2)
    assert two["stats"]["teacher_inputs"] == two["total_rows"] - len(ZH)
