"""Caches on shared storage: s3:// for real, against a local S3-compatible server (moto's server
mode on 127.0.0.1), through pyarrow.fs. Precompute, resume, verify and train all take the URI."""

import shutil
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from conftest import make_teacher, recombined_sentences, record_shard_writes, write_lines
from distilcache import open_cache
from distilcache.cache_format import verify_cache
from distilcache.cli import main as cli
from distilcache.precompute import InputSpec, PrecomputeConfig, precompute
from distilcache.precompute import local_engine
from distilcache.student import load_student

moto_server = pytest.importorskip("moto.server")

SENTENCES = recombined_sentences(60, seed=5)


@pytest.fixture(scope="module")
def endpoint():
    with pytest.MonkeyPatch.context() as env:
        for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            env.setenv(key, value)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"endpoint_override={host}:{port}&scheme=http&region=us-east-1&allow_bucket_creation=true"
        server.stop()


@pytest.fixture
def mirrors(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DISTILCACHE_MIRRORS", str(tmp_path / "mirrors"))
    return tmp_path / "mirrors"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("remote") / "teacher", texts=SENTENCES)


def _uri(endpoint: str, name: str) -> str:
    return f"s3://bucket/caches/{name}?{endpoint}"


def _objects(uri: str) -> dict[str, pafs.FileInfo]:
    fs, base = pafs.FileSystem.from_uri(uri)
    found = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return {f.path[len(base) + 1 :]: f for f in found if f.type == pafs.FileType.File}


def test_s3_round_trip_precompute_verify_train_equals_a_local_cache(endpoint, mirrors, teacher, tmp_path):
    corpus = write_lines(tmp_path / "corpus.txt", SENTENCES)
    uri = _uri(endpoint, "round-trip")
    common = ["--teacher", str(teacher), "--input", str(corpus), "--shard-size", "25", "--device", "cpu"]
    assert cli(["precompute", *common, "--output", uri]) == 0
    assert cli(["precompute", *common, "--output", str(tmp_path / "local")]) == 0

    objects = _objects(uri)
    assert {"manifest.json", "README.md", "idf.parquet", "shards/part-00002.parquet"} <= objects.keys()
    assert "plan.json" not in objects and not any(name.startswith(".lock") for name in objects)
    remote, local = open_cache(uri), open_cache(tmp_path / "local")
    assert remote.manifest["fingerprint"] == local.manifest["fingerprint"]
    assert [s["sha256"] for s in remote.manifest["shards"]] == [s["sha256"] for s in local.manifest["shards"]]
    assert cli(["verify", uri]) == 0

    shutil.rmtree(mirrors)  # training on another machine: only the URI is shared
    assert cli(["train", "--cache", uri, "--output", str(tmp_path / "student"), "--epochs", "1", "--device", "cpu",
                "--val-fraction", "0.2"]) == 0
    assert load_student(tmp_path / "student").encode(SENTENCES[:3]).shape == (3, 64)


def test_a_run_killed_mid_way_resumes_on_another_machine_from_what_reached_s3(endpoint, mirrors, teacher, tmp_path, monkeypatch):
    corpus = write_lines(tmp_path / "corpus.txt", SENTENCES)
    uri = _uri(endpoint, "resume")
    config = PrecomputeConfig(teacher=teacher, inputs=[InputSpec(corpus)], output=uri, shard_size=20, device="cpu")
    record_shard_writes(monkeypatch, local_engine, crash_after=2)
    with pytest.raises(KeyboardInterrupt):
        precompute(config)
    objects = _objects(uri)
    assert "plan.json" in objects and "manifest.json" not in objects
    assert sorted(n for n in objects if n.startswith("shards/")) == ["shards/part-00000.parquet", "shards/part-00001.parquet"]
    first_two = {n: objects[n].mtime_ns for n in ("shards/part-00000.parquet", "shards/part-00001.parquet")}

    shutil.rmtree(mirrors)  # another machine: no local state at all
    record_shard_writes(monkeypatch, local_engine)  # no crash this time
    manifest = precompute(config)
    assert manifest["total_rows"] == len(SENTENCES) and manifest["run"]["resumed_shards"] == 2
    objects = _objects(uri)
    assert {n: objects[n].mtime_ns for n in first_two} == first_two  # not recomputed, not uploaded again
    assert "plan.json" not in objects and verify_cache(uri) == []


def test_verify_reads_the_remote_bytes_not_a_mirror(endpoint, mirrors, teacher, tmp_path):
    uri = _uri(endpoint, "corrupt")
    precompute(PrecomputeConfig(teacher=teacher, inputs=[InputSpec(write_lines(tmp_path / "c.txt", SENTENCES))],
                                output=uri, device="cpu"))
    open_cache(uri)  # a good mirror exists locally
    fs, base = pafs.FileSystem.from_uri(uri)
    shard = f"{base}/shards/part-00000.parquet"
    with fs.open_input_stream(shard) as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    with fs.open_output_stream(shard) as f:
        f.write(bytes(data))
    assert [p.file for p in verify_cache(uri)] == ["shards/part-00000.parquet"]
