"""--engine ray: Ray Data actors write the cache the local engine writes, and resume a crashed run."""

import importlib
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_teacher, recombined_sentences, record_shard_writes, write_lines
from distilcache import open_cache, verify_cache
from distilcache.cli import main
from distilcache.precompute import InputSpec, PrecomputeConfig, precompute, workers

ray = pytest.importorskip("ray")
from distilcache.precompute import ray_engine  # needs ray

_DISTINCT = recombined_sentences(270, seed=3)
# rows 50-69 repeat rows 10-29 (in shards of 64: 50-63 from other windows of the same shard); the last 10 repeat rows 0-9
LINES = _DISTINCT[:50] + _DISTINCT[10:30] + _DISTINCT[50:] + _DISTINCT[:10]
WINDOW = 25  # rows tokenised and length-sorted together: a 64-row shard spans three windows, often on two actors
ROW_COLUMNS = ["id", "text", "target_text", "token_ids", "weights", "truncated"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    root = tmp_path_factory.mktemp("ray")
    teacher = make_teacher(root / "teacher", texts=LINES)
    inputs = [write_lines(root / "a.txt", LINES[:180] + [""]), write_lines(root / "b.txt", LINES[180:])]
    local = root / "local"
    precompute(_config(teacher, inputs, local, engine="local"))
    yield {"teacher": teacher, "inputs": inputs, "local": local}
    ray.shutdown()


def _config(teacher: Path, inputs: list[Path], out: Path, engine: str = "ray", workers: int = 2) -> PrecomputeConfig:
    return PrecomputeConfig(teacher=teacher, inputs=[InputSpec(p) for p in inputs], output=out, device="cpu",
                            shard_size=64, batch_size=8, export_seed_layers=1, engine=engine, ray_workers=workers, sort_window=WINDOW)


def _assert_same_cache(out: Path, local: Path) -> dict:
    assert verify_cache(out) == []
    mine, theirs = open_cache(out), open_cache(local)
    assert mine.manifest.keys() == theirs.manifest.keys()
    for key in ("fingerprint", "total_rows", "rejected", "inputs", "idf", "tokenizer", "token_vectors", "seed", "stats"):
        assert mine.manifest[key] == theirs.manifest[key], key
    assert [(s["file"], s["rows"]) for s in mine.manifest["shards"]] == [(s["file"], s["rows"]) for s in theirs.manifest["shards"]]
    assert mine.table(ROW_COLUMNS).equals(theirs.table(ROW_COLUMNS))
    np.testing.assert_allclose(mine.vectors(), theirs.vectors(), atol=2e-3)
    assert mine.manifest["run"]["engine"] == "ray"
    return mine.manifest


def test_ray_engine_writes_the_local_engines_cache(world, tmp_path):
    out = tmp_path / "cache"
    argv = ["precompute", "--teacher", str(world["teacher"]), *[a for p in world["inputs"] for a in ("--input", str(p))],
            "--output", str(out), "--device", "cpu", "--shard-size", "64", "--batch-size", "8", "--export-seed-layers", "1",
            "--engine", "ray", "--ray-workers", "2"]
    assert main(argv) == 0
    manifest = _assert_same_cache(out, world["local"])
    assert manifest["run"]["ray_workers"] == 2 and len(manifest["shards"]) == 5
    assert manifest["total_rows"] == 300 and manifest["rejected"]["count"] == 1
    # 270 texts, 6 repeats from shard 0 in shard 1 (rows 64-69) and 10 in shard 4 computed again: the local count too
    assert manifest["stats"]["teacher_inputs"] == 286
    vectors = open_cache(out).vectors()
    np.testing.assert_array_equal(vectors[50:64], vectors[10:24])


def test_a_crashed_ray_run_resumes_computing_only_the_missing_shards(world, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    written = record_shard_writes(monkeypatch, ray_engine, crash_after=2)
    with pytest.raises(KeyboardInterrupt):
        precompute(_config(world["teacher"], world["inputs"], out, workers=1))
    assert (out / "plan.json").exists() and not (out / "manifest.json").exists()
    stamps = {i: (out / f"shards/part-{i:05d}.parquet").stat().st_mtime_ns for i in written}

    rewritten = record_shard_writes(monkeypatch, ray_engine)
    manifest = precompute(_config(world["teacher"], world["inputs"], out, workers=1))
    assert written + rewritten == [0, 1, 2, 3, 4] and manifest["run"]["resumed_shards"] == 2
    assert {i: (out / f"shards/part-{i:05d}.parquet").stat().st_mtime_ns for i in stamps} == stamps  # not rewritten
    _assert_same_cache(out, world["local"])


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "distilcache.precompute.ray_engine")
    with pytest.raises(ImportError, match=r"pip install 'distilcache\[ray\]'"):
        importlib.import_module("distilcache.precompute.ray_engine")


def test_the_ray_engine_counts_the_idf_in_worker_processes_that_end_before_its_pass(world, tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "BYTES_PER_WORKER", 1)  # this small corpus gets the processes
    started, alive_at_the_pass = [], []
    real_init, real_run_teacher = workers.WorkerGroup.__init__, ray_engine.run_teacher

    def init(self, size):
        started.append(size)
        real_init(self, size)

    def run_teacher(*args):
        alive_at_the_pass.extend(p.name for p in multiprocessing.active_children() if p.name.startswith("distilcache-worker"))
        return real_run_teacher(*args)

    monkeypatch.setattr(workers.WorkerGroup, "__init__", init)
    monkeypatch.setattr(ray_engine, "run_teacher", run_teacher)
    out = tmp_path / "cache"
    precompute(PrecomputeConfig(**(vars(_config(world["teacher"], world["inputs"], out)) | {"workers": 2})))
    assert started == [2] and alive_at_the_pass == []
    _assert_same_cache(out, world["local"])
