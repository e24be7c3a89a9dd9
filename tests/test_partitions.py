"""Job arrays: N partitions + merge equal one process; the IDF table splits and merges the same way."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_teacher, recombined_sentences, write_lines
from distilcache import open_cache, verify_cache
from distilcache.cache_format import CacheError
from distilcache.cli import main
from distilcache.precompute import InputSpec, PrecomputeConfig, precompute
from distilcache.precompute import idf_pass
from distilcache.precompute.idf_pass import compute_idf
from distilcache.precompute.finish import merge_partitions
from distilcache.weighting import IdfTable

LINES = recombined_sentences(1000, seed=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("partitions")
    teacher = make_teacher(root / "teacher", texts=LINES)
    inputs = [write_lines(root / "a.txt", LINES[:600] + [""]), write_lines(root / "b.txt", LINES[600:])]
    single = root / "single"
    precompute(PrecomputeConfig(teacher=teacher, inputs=[InputSpec(p) for p in inputs], output=single, device="cpu", shard_size=100))
    return {"root": root, "teacher": teacher, "inputs": inputs, "single": single}


def test_idf_counted_in_processes_is_the_single_pass_table(world, monkeypatch):
    monkeypatch.setattr(idf_pass, "CHUNK_ROWS", 37)  # many chunks, more than the processes take at once
    specs = [InputSpec(p) for p in world["inputs"]]
    one, two = compute_idf(specs), compute_idf(specs, workers=2)
    assert two.num_documents == one.num_documents == 1000 and two.df == one.df
    half = compute_idf(specs, 2, 1, workers=2)  # a partition of it, counted in processes too
    assert half.num_documents == 500 and half.df == compute_idf(specs, 2, 1).df


def test_idf_partitions_merge_into_the_single_pass_table(world, tmp_path):
    specs = [InputSpec(p) for p in world["inputs"]]
    whole = compute_idf(specs)
    merged = IdfTable.merge(compute_idf(specs, 3, i) for i in range(3))
    assert merged.num_documents == whole.num_documents == 1000 and merged.df == whole.df
    assert merged.content_sha256() == open_cache(world["single"]).manifest["idf"]["content_sha256"]

    parts = []
    for i in range(2):
        parts.append(tmp_path / f"idf-{i}.parquet")
        assert main(["idf", *[a for p in world["inputs"] for a in ("--input", str(p))], "--output", str(parts[-1]),
                     "--num-partitions", "2", "--partition", str(i)]) == 0
    assert main(["idf", "--merge", *map(str, parts), "--output", str(tmp_path / "idf.parquet")]) == 0
    assert IdfTable.load(tmp_path / "idf.parquet").content_sha256() == whole.content_sha256()


def _partition_argv(world: dict, out: Path, idf: Path, i: int) -> list[str]:
    return ["precompute", "--teacher", str(world["teacher"]), *[a for p in world["inputs"] for a in ("--input", str(p))],
            "--output", str(out), "--idf", str(idf), "--device", "cpu", "--shard-size", "100",
            "--num-partitions", "3", "--partition", str(i)]


def _assert_same_cache(out: Path, single: Path) -> None:
    assert verify_cache(out) == []
    mine, theirs = open_cache(out).manifest, open_cache(single).manifest
    assert mine["fingerprint"] == theirs["fingerprint"]
    assert mine["shards"] == theirs["shards"]  # the same files, byte for byte (same sha256)
    assert mine["total_rows"] == 1000 and mine["rejected"]["count"] == 1
    assert not (out / "partitions").exists() and not (out / "plan.json").exists()


def test_three_partitions_in_turn_then_the_last_merges(world, tmp_path):
    idf = world["single"] / "idf.parquet"
    out = tmp_path / "cache"
    assert main(_partition_argv(world, out, idf, 2)) == 0
    assert main(_partition_argv(world, out, idf, 0)) == 0
    assert not (out / "manifest.json").exists()
    with pytest.raises(CacheError, match=r"partitions \[1\] of 3 have not finished"):
        merge_partitions(out)
    assert main(_partition_argv(world, out, idf, 1)) == 0  # the last one writes the manifest
    _assert_same_cache(out, world["single"])


def test_three_partitions_running_at_once_equal_one_process(world, tmp_path):
    idf = world["single"] / "idf.parquet"
    out = tmp_path / "cache"
    jobs = [subprocess.Popen([sys.executable, "-m", "distilcache.cli", *_partition_argv(world, out, idf, i)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    for job in jobs:
        _, err = job.communicate(timeout=300)
        assert job.returncode == 0, err[-2000:]
    # each partition looks for the others' partial manifests after writing its own: the last one always merges
    _assert_same_cache(out, world["single"])


def test_partitions_need_a_shared_idf_table(world, tmp_path):
    config = PrecomputeConfig(teacher=world["teacher"], inputs=[InputSpec(p) for p in world["inputs"]], output=tmp_path / "c",
                              num_partitions=2, partition=1)
    with pytest.raises(ValueError, match="compute it first with `distilcache idf`"):
        precompute(config)
    config.partition = 2
    config.idf_file = world["single"] / "idf.parquet"
    with pytest.raises(ValueError, match=r"--partition must be in 0\.\.1"):
        precompute(config)
