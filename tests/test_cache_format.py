import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import CORPUS, write_lines
from distilcache import open_cache, verify_cache
from distilcache.cache_format import FORMAT_VERSION, CacheError, CacheVerifyError, shard_schema
from distilcache.cache_format.writer import shard_entry
from distilcache.precompute import InputSpec, PrecomputeConfig, precompute


@pytest.fixture(scope="module")
def built_cache(teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("built")
    corpus = write_lines(root / "corpus.txt", CORPUS)
    precompute(PrecomputeConfig(teacher=teacher_dir, inputs=[InputSpec(corpus)], output=root / "cache", shard_size=5, device="cpu"))
    return root / "cache"


@pytest.fixture
def cache(built_cache: Path, tmp_path: Path) -> Path:
    """A private copy each test may damage."""
    return Path(shutil.copytree(built_cache, tmp_path / "cache"))


def test_a_fresh_cache_verifies_and_round_trips(cache):
    assert verify_cache(cache) == []
    opened = open_cache(cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    assert opened.manifest == manifest
    assert [e["rows"] for e in manifest["shards"]] == [5, 5, 3] and opened.num_rows == 13
    assert opened.table(["text"])["text"].to_pylist() == CORPUS
    assert sum(b.num_rows for b in opened.iter_batches(["id"], batch_size=2)) == 13
    assert opened.vectors().shape == (13, 64) and opened.vectors().dtype == np.float32
    assert opened.dataset.count_rows() == 13
    assert opened.idf().num_rows == manifest["idf"]["num_words"]


def test_shards_store_the_vector_column_plain_and_the_rest_with_zstd(built_cache):
    """Float vectors barely compress, and a dictionary of float16 values never falls back: both only slowed reading."""
    metadata = pq.ParquetFile(open_cache(built_cache).shard_paths[0]).metadata.row_group(0)
    columns = {metadata.column(i).path_in_schema.split(".")[0]: metadata.column(i) for i in range(metadata.num_columns)}
    assert columns["vector"].compression == "UNCOMPRESSED" and not columns["vector"].has_dictionary_page
    assert {name: column.compression for name, column in columns.items() if name != "vector"} == dict.fromkeys(
        ["id", "text", "target_text", "token_ids", "weights", "truncated"], "ZSTD")


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_found_and_named(cache):
    _flip_byte(cache / "shards/part-00001.parquet", 200)
    problems = verify_cache(cache)
    assert [p.file for p in problems] == ["shards/part-00001.parquet"]
    assert "sha256 mismatch" in problems[0].message
    with pytest.raises(CacheVerifyError, match=r"shards/part-00001\.parquet: sha256 mismatch"):
        open_cache(cache)
    open_cache(cache, verify=False)  # trusting the manifest is the caller's choice


def test_a_missing_shard_is_found_and_named(cache):
    (cache / "shards/part-00002.parquet").unlink()
    assert [str(p) for p in verify_cache(cache)] == ["shards/part-00002.parquet: missing"]


def test_a_truncated_shard_is_found_and_named(cache):
    path = cache / "shards/part-00000.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    problems = verify_cache(cache)
    assert [p.file for p in problems] == ["shards/part-00000.parquet"]


def test_damaged_idf_and_tokenizer_files_are_named(cache):
    _flip_byte(cache / "idf.parquet", 10)
    (cache / "tokenizer/tokenizer.json").write_text("{}")
    assert sorted(p.file for p in verify_cache(cache)) == ["idf.parquet", "tokenizer/tokenizer.json"]


def test_unknown_and_temp_files_are_reported(cache):
    (cache / "shards/part-00099.parquet").write_bytes(b"stray")
    (cache / "shards/.tmp-part-00003.parquet").write_bytes(b"half")
    problems = {p.file: p.message for p in verify_cache(cache)}
    assert problems == {
        "shards/.tmp-part-00003.parquet": "unknown file: temp file left by an interrupted write",
        "shards/part-00099.parquet": "unknown file: not listed in the manifest",
    }


def test_a_manifest_that_disagrees_with_the_shards_is_reported(cache):
    manifest = json.loads((cache / "manifest.json").read_text())
    manifest["shards"][0]["rows"] = 6
    manifest["total_rows"] = 14
    (cache / "manifest.json").write_text(json.dumps(manifest))
    assert [str(p) for p in verify_cache(cache)] == ["shards/part-00000.parquet: has 5 rows, manifest says 6"]


def test_a_missing_or_foreign_manifest_is_a_clear_error(cache, tmp_path):
    (cache / "manifest.json").write_text('{"format": "something-else"}')
    assert "not a distilcache manifest" in verify_cache(cache)[0].message
    with pytest.raises(CacheError, match="is not a complete cache"):
        open_cache(tmp_path / "nowhere")


def test_a_cache_made_before_parallel_text_still_opens_but_a_new_one_needs_the_column(cache, built_cache, teacher_dir):
    """Caches from before target_text lack the column (and student_vocab in the manifest)."""
    manifest = json.loads((cache / "manifest.json").read_text())
    for index, entry in enumerate(manifest["shards"]):
        pq.write_table(pq.read_table(cache / entry["file"]).drop_columns(["target_text"]), cache / entry["file"], compression="zstd")
        manifest["shards"][index] = shard_entry(cache, index, entry["rows"])
    (cache / "manifest.json").write_text(json.dumps(manifest))
    assert [p.message.split(":")[0] for p in verify_cache(cache)] == [f"schema differs from cache-format v{FORMAT_VERSION}"] * 3
    del manifest["student_vocab"]
    del manifest["export_token_vectors"]  # older still: only the "token_vectors" entry says they were exported
    (cache / "manifest.json").write_text(json.dumps(manifest))
    assert verify_cache(cache) == []
    assert open_cache(cache).table(["text"])["text"].to_pylist() == CORPUS
    # rerunning its command finds it complete (no student_vocab recorded means the teacher's tokens)
    rerun = precompute(PrecomputeConfig(teacher=teacher_dir, inputs=[InputSpec(built_cache.parent / "corpus.txt")],
                                        output=cache, shard_size=5, device="cpu"))
    assert rerun["shards"] == manifest["shards"]


def test_a_version_1_cache_still_verifies_and_reads_and_a_version_2_one_needs_required_vector_values(cache):
    """Version 2 only declares the vector's values non-null; a version-1 cache's shards declare them nullable."""
    manifest = json.loads((cache / "manifest.json").read_text())
    before = open_cache(cache).vectors()
    dim, dtype = manifest["vector"]["dim"], manifest["vector"]["dtype"]
    for index, entry in enumerate(manifest["shards"]):
        table = pq.read_table(cache / entry["file"])
        pq.write_table(table.cast(shard_schema(dim, dtype, version=1)), cache / entry["file"])
        manifest["shards"][index] = shard_entry(cache, index, entry["rows"])
    assert pq.read_schema(cache / manifest["shards"][0]["file"]).field("vector").type.value_field.nullable
    (cache / "manifest.json").write_text(json.dumps(manifest))
    assert [p.message.split(":")[0] for p in verify_cache(cache)] == [f"schema differs from cache-format v{FORMAT_VERSION}"] * 3
    (cache / "manifest.json").write_text(json.dumps(manifest | {"format_version": 1}))
    assert verify_cache(cache) == []
    np.testing.assert_array_equal(open_cache(cache).vectors(), before)
