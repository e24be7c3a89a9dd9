"""Faults injected for real: SIGKILL at chosen points, a second writer, a full or read-only disk."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_teacher, recombined_sentences, write_lines
from distilcache import open_cache, verify_cache
from distilcache.cache_format import CacheLock

HELPER = Path(__file__).with_name("kill_helper.py")
LINES = recombined_sentences(3000, seed=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("faults")
    teacher = make_teacher(root / "teacher", texts=LINES)
    corpus = write_lines(root / "corpus.txt", LINES)
    reference = root / "reference"
    assert _precompute(teacher, corpus, reference, "none").returncode == 0
    return {"root": root, "teacher": teacher, "corpus": corpus, "reference": reference}


def _precompute(teacher: Path, corpus: Path, out: Path, point: str, count: int = 0) -> subprocess.CompletedProcess:
    args = ["precompute", "--teacher", str(teacher), "--input", str(corpus), "--output", str(out),
            "--device", "cpu", "--shard-size", "500"]
    return subprocess.run([sys.executable, str(HELPER), point, str(count), *args], capture_output=True, text=True, timeout=300)


def _shard_times(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((cache / "shards").glob("part-*.parquet"))}


@pytest.mark.parametrize(("point", "count", "finished_shards"), [
    ("idf", 1500, 0),  # during the IDF pass
    ("mid-shard", 2, 2),  # half-way through writing shard 2
    ("after-rename", 5, 6),  # the last shard is in place, the manifest is not
    ("manifest", 0, 6),  # the manifest's temp file is written, not renamed
])
def test_sigkill_then_rerun_equals_an_uninterrupted_run(setup, tmp_path, point, count, finished_shards):
    out = tmp_path / "cache"
    killed = _precompute(setup["teacher"], setup["corpus"], out, point, count)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (out / "manifest.json").exists()
    before = _shard_times(out) if (out / "shards").exists() else {}
    assert len(before) == finished_shards
    if point == "mid-shard":
        assert len(list((out / "shards").glob(".tmp-*-part-00002.parquet"))) == 1  # half-written, never taken as a shard

    rerun = _precompute(setup["teacher"], setup["corpus"], out, "none")  # the killed run's lock is stale
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = _shard_times(out)
    assert {name: after[name] for name in before} == before  # finished shards were not recomputed
    assert verify_cache(out) == []
    reference = setup["reference"]
    assert sorted(after) == sorted(_shard_times(reference))
    for name in after:  # pyarrow writes no timestamp into Parquet: the files are byte-identical
        assert (out / "shards" / name).read_bytes() == (reference / "shards" / name).read_bytes()
    mine, theirs = open_cache(out).manifest, open_cache(reference).manifest
    assert mine["fingerprint"] == theirs["fingerprint"] and mine["shards"] == theirs["shards"]


def test_a_second_writer_process_is_refused_with_a_clear_message(setup, tmp_path):
    out = tmp_path / "cache"
    out.mkdir()
    with CacheLock(out):
        second = _precompute(setup["teacher"], setup["corpus"], out, "none")
    assert second.returncode == 2
    assert f"{out} is being written by another process (pid {os.getpid()}, lock .lock)" in second.stderr


def _mount_tmpfs(path: Path, size: int) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.fixture
def disk(tmp_path):
    """A real 4 MB tmpfs; needs the right to mount (root with CAP_SYS_ADMIN, as here and in CI)."""
    path = tmp_path / "disk"
    if shutil.which("mount") is None or not _mount_tmpfs(path, 4 << 20):
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    yield path
    subprocess.run(["umount", str(path)], check=True)


def _leave_free(disk: Path, free: int) -> None:
    """Fill the disk with ballast until `free` bytes are left."""
    stats = os.statvfs(disk)
    (disk / "ballast").write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - free))


def test_too_little_space_fails_before_the_teacher_runs(setup, disk):
    _leave_free(disk, 200 << 10)
    result = _precompute(setup["teacher"], setup["corpus"], disk / "cache", "none")
    assert result.returncode == 2
    assert "3000 rows need at least 0.4 MB for their vectors, only" in result.stderr
    assert not list((disk / "cache" / "shards").glob("*"))


def test_a_disk_filling_up_mid_run_fails_clearly_and_the_rerun_resumes(setup, disk):
    out = disk / "cache"
    assert _precompute(setup["teacher"], setup["corpus"], out, "after-rename", 1).returncode == -9
    # the 4 shards left need at least 4 x 500 x 64 x 2 bytes of vectors (what precompute checks first), really
    # about 100 kB each: room for two or three of them
    _leave_free(disk, 300 << 10)
    full = _precompute(setup["teacher"], setup["corpus"], out, "none")
    assert full.returncode == 2, full.stderr[-2000:]
    assert "No space left on device" in full.stderr and "rerun the same command to resume" in full.stderr
    kept = _shard_times(out)
    assert 2 < len(kept) < 6 and not list((out / "shards").glob(".tmp-*"))

    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    readonly = _precompute(setup["teacher"], setup["corpus"], out, "none")
    assert readonly.returncode == 2 and "Read-only file system" in readonly.stderr

    subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
    (disk / "ballast").unlink()
    resumed = _precompute(setup["teacher"], setup["corpus"], out, "none")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert {k: v for k, v in _shard_times(out).items() if k in kept} == kept
    assert open_cache(out).manifest["shards"] == open_cache(setup["reference"]).manifest["shards"]
