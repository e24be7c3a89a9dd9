"""Runs that cannot produce their result fail clearly and early, and lose nothing: half-written students,
concurrent training, non-finite losses, nonsense options, stale exports, long lines, inputs that change
under a run, another precision on resume, and the command line's own errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_teacher, record_shard_writes, recombined_sentences, write_lines
from distilcache import verify_cache
from distilcache.cache_format import CacheError, CacheLock, CacheMismatchError
from distilcache.cache_format.errors import ConfigError, DataFileError
from distilcache.cache_format.hashing import sha256_file
from distilcache.cli import main as cli
from distilcache.precompute import InputSpec, PoolingConfig, PrecomputeConfig, precompute
from distilcache.precompute import local_engine
from distilcache.student import load_student
from distilcache.train import TrainConfig, train
from distilcache.train import loop as loop_module
from distilcache.train.loop import TrainingError
from distilcache.student.directory import StudentError

SENTENCES = recombined_sentences(160, seed=13)
HELPER = Path(__file__).with_name("kill_helper.py")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("refusals")
    teacher = make_teacher(root / "teacher", texts=SENTENCES)
    corpus = write_lines(root / "corpus.txt", SENTENCES)
    precompute(PrecomputeConfig(teacher=teacher, inputs=[InputSpec(corpus)], output=root / "cache", device="cpu", shard_size=60))
    return {"root": root, "teacher": teacher, "corpus": corpus, "cache": root / "cache"}


@pytest.fixture
def cache(world, tmp_path) -> Path:
    return Path(shutil.copytree(world["cache"], tmp_path / "cache"))


def _config(world: dict, output: Path, **options) -> TrainConfig:
    defaults = {"cache": world["cache"], "epochs": 1, "batch_size": 32, "val_fraction": 0.2, "device": "cpu"}
    return TrainConfig(output=output, **(defaults | options))


def _edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text(encoding="utf-8"))
    change(value)
    path.write_text(json.dumps(value), encoding="utf-8")


# ---------------------------------------------------------------- 5, 6: students are written whole, by one run


def test_a_run_killed_while_saving_leaves_a_student_that_is_refused_until_resumed(world, tmp_path):
    out = tmp_path / "s"
    args = ["train", "--cache", str(world["cache"]), "--output", str(out), "--epochs", "3", "--batch-size", "32",
            "--val-fraction", "0.2", "--device", "cpu"]
    killed = subprocess.run([sys.executable, str(HELPER), "student-rename", "2", *args], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]  # killed with one file of the second student in place
    with pytest.raises(StudentError, match="half-written"):
        load_student(out)
    resumed = subprocess.run([sys.executable, "-m", "distilcache.cli", *args, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert np.isfinite(load_student(out).encode(SENTENCES[:4])).all()


def test_a_second_training_run_into_the_same_directory_is_refused(world, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    with CacheLock(out):
        with pytest.raises(CacheError, match=rf"{out} is being written by another process \(pid {os.getpid()}"):
            train(_config(world, out))
    assert not (out / "distilcache_student.json").exists()


# ---------------------------------------------------------------- 7: runs that cannot give a student fail loudly


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--patience", "0", "--patience must be >= 1"),
    ("--temperature", "0", "--temperature must be > 0"),
    ("--grad-clip", "-1", "--grad-clip must be >= 0"),
    ("--layers", "0", "--layers must be >= 1"),
    ("--seed", "-1", "--seed must be >= 0"),
    ("--lr", "nan", "--lr must be a finite number"),
])
def test_nonsense_training_options_are_refused_before_any_work(world, tmp_path, capsys, flag, value, message):
    out = tmp_path / "s"
    assert cli(["train", "--cache", str(world["cache"]), "--output", str(out), flag, value]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def _poison_one_vector(cache: Path) -> str:
    """Set one cached vector to NaN, fixing the checksums as a careless exporter would."""
    path = cache / "shards/part-00001.parquet"
    table = pq.read_table(path)
    vectors = np.stack(table["vector"].to_numpy(zero_copy_only=False)).astype(np.float16)
    vectors[7, 3] = np.nan
    index = table.schema.get_field_index("vector")
    table = table.set_column(index, table.schema.field(index),
                             pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), type=table.schema.field(index).type))
    pq.write_table(table, path, compression="zstd")
    _edit_json(cache / "manifest.json", lambda m: m["shards"][1].update(sha256=sha256_file(path), bytes=path.stat().st_size))
    return table["id"][7].as_py()


def test_a_nan_in_one_cached_vector_fails_verify_and_train_naming_the_row(cache, tmp_path, capsys):
    row_id = _poison_one_vector(cache)
    problems = [str(p) for p in verify_cache(cache)]
    assert problems == [f"shards/part-00001.parquet: row 7 (id {row_id!r}) has a non-finite vector (NaN or infinity; "
                        "1 such row(s) in row group 0)"]
    assert cli(["train", "--cache", str(cache), "--output", str(tmp_path / "s"), "--epochs", "1", "--device", "cpu"]) == 2
    assert row_id in capsys.readouterr().err
    assert not (tmp_path / "s" / "distilcache_student.json").exists()


def test_a_loss_that_turns_non_finite_stops_training_naming_the_epoch_and_rows(world, tmp_path):
    with pytest.raises(TrainingError, match=r"epoch 1: the training loss is nan on the batch of rows \['corpus:"):
        train(_config(world, tmp_path / "s", lr=1e30, embedding_lr_scale=1, grad_clip=0))
    assert not (tmp_path / "s" / "distilcache_student.json").exists()


# ---------------------------------------------------------------- 9, 10: batch sizes, stale exports


def test_batch_sizes_below_one_are_refused_everywhere(world, tmp_path, capsys):
    train(_config(world, tmp_path / "s"))
    student = load_student(tmp_path / "s")
    for size in (0, -1):
        with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
            student.encode(SENTENCES[:3], batch_size=size)
    texts = write_lines(tmp_path / "t.txt", SENTENCES[:3])
    assert cli(["encode", "--model", str(tmp_path / "s"), "--input", str(texts), "--output", str(tmp_path / "v.parquet"),
                "--batch-size", "-1"]) == 2
    assert not (tmp_path / "v.parquet").exists()
    assert cli(["evaluate", "--model", str(tmp_path / "s"), "--teacher-cache", str(world["cache"]), "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1" in capsys.readouterr().err


def test_encode_names_what_is_not_a_text(world, tmp_path):
    train(_config(world, tmp_path / "s"))
    student = load_student(tmp_path / "s")
    for bad, message in ((None, "got NoneType"), (5, "got int"), (["ok", 3], r"texts\[1\] is int")):
        with pytest.raises(TypeError, match=message):
            student.encode(bad)


def test_a_stale_onnx_export_is_refused_after_resume_trains_more(world, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "s"
    real_write_log = loop_module._write_log

    def stop_after_epoch_one(output, history):
        real_write_log(output, history)
        raise KeyboardInterrupt("killed after epoch 1")

    monkeypatch.setattr(loop_module, "_write_log", stop_after_epoch_one)
    with pytest.raises(KeyboardInterrupt):
        train(_config(world, out, epochs=3))
    assert cli(["export-onnx", str(out)]) == 0
    load_student(out, backend="onnx")  # fresh: accepted
    monkeypatch.setattr(loop_module, "_write_log", real_write_log)
    summary = train(_config(world, out, epochs=3, resume=True))
    assert summary["best_epoch"] > 1  # the student changed after the export
    with pytest.raises(StudentError, match="exported from other weights"):
        load_student(out, backend="onnx")
    assert cli(["export-onnx", str(out)]) == 0
    load_student(out, backend="onnx")


# ---------------------------------------------------------------- 12, 13, 14: long lines, changing inputs, precision


def test_one_long_line_costs_no_more_memory_than_its_kept_part(world):
    """A 5 MB line: the tokenizer would keep every overflow window of it (about 200 bytes per byte)."""
    script = f"""
import resource
from transformers import AutoTokenizer
from distilcache.weighting import IdfTable, weighted_tokens
tokenizer = AutoTokenizer.from_pretrained({str(world['teacher'])!r})
text = "hotel service park " * (5_000_000 // 19)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
(tokens,) = weighted_tokens([text], tokenizer, 64, IdfTable.from_texts(["hotel park"]), 0.1)
grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(grown_mb, tokens.truncated, len(tokens.token_ids))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    grown_mb, truncated, tokens = result.stdout.split()
    assert float(grown_mb) < 100 and truncated == "True" and int(tokens) == 62


def test_an_input_that_changes_during_precompute_gives_no_cache(world, tmp_path, monkeypatch):
    corpus = write_lines(tmp_path / "corpus.txt", SENTENCES)
    real_run_teacher = local_engine.run_teacher

    def while_another_process_appends(config, plan, idf, out, group):
        with open(corpus, "a", encoding="utf-8") as f:
            f.write("a line written while precompute ran\n")
        return real_run_teacher(config, plan, idf, out, group)

    monkeypatch.setattr(local_engine, "run_teacher", while_another_process_appends)
    with pytest.raises(CacheError, match=rf"input changed while precompute ran: {corpus}"):
        precompute(PrecomputeConfig(teacher=world["teacher"], inputs=[InputSpec(corpus)], output=tmp_path / "c", device="cpu"))
    assert not (tmp_path / "c" / "manifest.json").exists()


def _interrupted_after_one_shard(world, out: Path, monkeypatch) -> PrecomputeConfig:
    """A precompute killed after writing its first shard: plan.json and that shard are left."""
    config = PrecomputeConfig(teacher=world["teacher"], inputs=[InputSpec(world["corpus"])], output=out, device="cpu", shard_size=60)
    record_shard_writes(monkeypatch, local_engine, crash_after=1)
    with pytest.raises(KeyboardInterrupt):
        precompute(config)
    return config


def test_resuming_in_another_precision_is_refused_naming_it(world, tmp_path, monkeypatch):
    out = tmp_path / "c"
    config = _interrupted_after_one_shard(world, out, monkeypatch)
    assert json.loads((out / "plan.json").read_text())["precision"] == "fp32"
    with pytest.raises(CacheMismatchError, match="precision: cache has 'fp32', this run has 'bf16'"):
        precompute(PrecomputeConfig(**(vars(config) | {"precision": "bf16"})))


def test_a_cache_half_made_in_an_earlier_format_is_not_resumed(world, tmp_path, monkeypatch):
    out = tmp_path / "c"
    config = _interrupted_after_one_shard(world, out, monkeypatch)
    plan = json.loads((out / "plan.json").read_text())
    (out / "plan.json").write_text(json.dumps(plan | {"format_version": 1}))  # what an earlier distilcache planned
    with pytest.raises(CacheError, match=r"plan\.json was planned in cache format 1, this distilcache writes 2"):
        precompute(config)


# ---------------------------------------------------------------- low: checked first, named clearly


@pytest.mark.parametrize(("options", "message"), [
    ({"pooling": PoolingConfig(layer=9)}, "--layer 9 is out of range: the teacher has 2 layers"),
    ({"pooling": PoolingConfig(smoothing=float("nan"))}, "--smoothing must be a finite number"),
    ({"device": "meta"}, "--device meta: distilcache runs on cpu, cuda or mps"),
    ({"device": "nonsense"}, "is not a device"),
])
def test_bad_precompute_options_are_found_before_reading_the_inputs(world, tmp_path, options, message):
    out = tmp_path / "c"
    with pytest.raises(ConfigError, match=message):
        precompute(PrecomputeConfig(teacher=world["teacher"], inputs=[InputSpec(world["corpus"])], output=out, **options))
    assert not (out / "plan.json").exists() and not (out / "rejected.jsonl").exists()


def test_cuda_asked_for_where_there_is_none_is_refused_before_any_work(world, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no CUDA device is available"):
        precompute(PrecomputeConfig(teacher=world["teacher"], inputs=[InputSpec(world["corpus"])], output=tmp_path / "c", device="cuda"))
    assert not (tmp_path / "c").exists()


def test_idf_partitions_out_of_range_or_merged_twice_are_refused(world, tmp_path, capsys):
    corpus = str(world["corpus"])
    assert cli(["idf", "--input", corpus, "--num-partitions", "2", "--partition", "5", "--output", str(tmp_path / "x.parquet")]) == 2
    assert cli(["idf", "--input", corpus, "--num-partitions", "0", "--output", str(tmp_path / "x.parquet")]) == 2
    assert not (tmp_path / "x.parquet").exists()
    parts = [tmp_path / f"p{i}.parquet" for i in range(2)]
    for i, part in enumerate(parts):
        assert cli(["idf", "--input", corpus, "--num-partitions", "2", "--partition", str(i), "--output", str(part)]) == 0
    capsys.readouterr()
    assert cli(["idf", "--merge", str(parts[0]), str(parts[0]), "--output", str(tmp_path / "m.parquet")]) == 2
    assert "more than once" in capsys.readouterr().err
    shutil.copy(parts[0], tmp_path / "copy.parquet")
    assert cli(["idf", "--merge", str(parts[0]), str(tmp_path / "copy.parquet"), "--output", str(tmp_path / "m.parquet")]) == 2
    assert "missing: ['1/2']" in capsys.readouterr().err
    assert cli(["idf", "--merge", *map(str, parts), "--output", str(tmp_path / "m.parquet")]) == 0


def test_a_corrupt_idf_table_is_named(world, tmp_path, capsys):
    (tmp_path / "idf.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataFileError, match=rf"{tmp_path / 'idf.parquet'}: not a readable IDF table"):
        precompute(PrecomputeConfig(teacher=world["teacher"], inputs=[InputSpec(world["corpus"])], output=tmp_path / "c",
                                    idf_file=tmp_path / "idf.parquet", device="cpu"))


def test_training_on_a_cache_without_rows_is_a_clear_error(world, tmp_path):
    empty = write_lines(tmp_path / "empty.txt", ["", "   "])
    precompute(PrecomputeConfig(teacher=world["teacher"], inputs=[InputSpec(empty)], output=tmp_path / "c", device="cpu"))
    with pytest.raises(CacheError, match="holds no rows"):
        train(_config(world, tmp_path / "s", cache=tmp_path / "c"))


def test_verify_names_a_rejected_file_that_is_not_utf8(cache):
    (cache / "rejected.jsonl").write_bytes(b"\xff\xfe not utf-8\n")
    _edit_json(cache / "manifest.json", lambda m: m["rejected"].update(sha256=sha256_file(cache / "rejected.jsonl"), count=1))
    assert [str(p) for p in verify_cache(cache)] == ["rejected.jsonl: line 1 is not UTF-8 (invalid start byte at byte 0)"]


def test_inspect_names_a_field_a_foreign_manifest_lacks(cache, capsys):
    _edit_json(cache / "manifest.json", lambda m: m["teacher"].pop("name"))
    assert cli(["inspect", str(cache)]) == 2
    assert "manifest.json: missing or malformed field 'name'" in capsys.readouterr().err
    _edit_json(cache / "manifest.json", lambda m: m.pop("shards"))
    assert cli(["inspect", str(cache)]) == 2
    assert "field 'shards' is missing" in capsys.readouterr().err


def test_a_cache_whose_run_was_killed_after_its_manifest_still_opens_and_trains(world, cache, tmp_path):
    (cache / "plan.json").write_text(json.dumps({"format": "distilcache-cache"}))  # what the kill left behind
    assert verify_cache(cache) == []
    train(_config(world, tmp_path / "s", cache=cache))
    assert (tmp_path / "s" / "distilcache_student.json").exists()


def test_user_errors_are_one_line_with_a_traceback_under_v_and_bugs_are_not_hidden(world, tmp_path, capsys, monkeypatch):
    args = ["train", "--cache", str(tmp_path / "nowhere"), "--output", str(tmp_path / "s")]
    assert cli(args) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert cli(["-v", *args]) == 2
    assert "Traceback" in capsys.readouterr().err

    def bug(args):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr("distilcache.cli._cmd_verify", bug)
    with pytest.raises(ValueError, match="a bug"):
        cli(["verify", str(world["cache"])])


def _mount_tmpfs(path: Path, size: int) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


def test_training_onto_a_full_disk_fails_clearly_and_resumes(world, tmp_path):
    disk = tmp_path / "disk"
    if shutil.which("mount") is None or not _mount_tmpfs(disk, 3 << 20):
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        out = disk / "s"
        args = ["train", "--cache", str(world["cache"]), "--output", str(out), "--epochs", "2", "--device", "cpu", "--val-fraction", "0.2"]
        (disk / "ballast").write_bytes(b"\0" * ((3 << 20) - (600 << 10)))
        full = subprocess.run([sys.executable, "-m", "distilcache.cli", *args], capture_output=True, text=True, timeout=300)
        assert full.returncode == 2, full.stderr[-2000:]
        assert "cannot write into" in full.stderr and "No space left on device" in full.stderr and "--resume" in full.stderr
        assert not list(out.glob(".tmp-*"))
        (disk / "ballast").unlink()
        resumed = subprocess.run([sys.executable, "-m", "distilcache.cli", *args, *(["--resume"] if (out / "checkpoint.pt").exists() else [])],
                                 capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    finally:
        subprocess.run(["umount", str(disk)], check=False)
