"""Caches and students from someone else are untrusted input: each test performs an attack for real.

No shipped code runs (even with "y" on stdin), no name in a manifest, a student's JSON or an object
store leads outside its directory, nothing outside the tool's own files is deleted, and declared sizes
are checked before anything is allocated.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_teacher, recombined_sentences, write_lines
from distilcache import open_cache, verify_cache
from distilcache.cache_format import CacheError, CacheVerifyError
from distilcache.cache_format.hashing import sha256_file
from distilcache.hf_local import ShippedCodeError
from distilcache.precompute import InputSpec, PrecomputeConfig, precompute
from distilcache.student import load_student
from distilcache.train import TrainConfig, train
from distilcache.student.directory import StudentError

SENTENCES = recombined_sentences(120, seed=11)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("untrusted")
    teacher = make_teacher(root / "teacher", texts=SENTENCES)
    corpus = write_lines(root / "corpus.txt", SENTENCES)
    cache = root / "cache"
    precompute(PrecomputeConfig(teacher=teacher, inputs=[InputSpec(corpus)], output=cache, device="cpu", shard_size=50,
                                export_seed_layers=1))
    students = {}
    for kind in ("bilstm", "transformer"):
        students[kind] = root / kind
        train(TrainConfig(cache=cache, output=students[kind], student=kind, epochs=1, batch_size=32, val_fraction=0.2,
                          device="cpu", **({"init": "random", "hidden": 32} if kind == "transformer" else {})))
    return {"root": root, "teacher": teacher, "corpus": corpus, "cache": cache, **students}


@pytest.fixture
def cache(world, tmp_path) -> Path:
    """A private copy of the cache, which the test may tamper with."""
    return Path(shutil.copytree(world["cache"], tmp_path / "cache"))


def _student(world: dict, kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(world[kind], tmp_path / kind))


def _edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text(encoding="utf-8"))
    change(value)
    path.write_text(json.dumps(value), encoding="utf-8")


def _rehash_student(directory: Path, extra: tuple[str, ...] = ()) -> None:
    """What an attacker does after changing a student's files: record their new checksums."""
    def update(info):
        for name in [*info["files"], *extra]:
            info["files"][name] = sha256_file(directory / name)

    _edit_json(directory / "distilcache_student.json", update)


def _plant_code(directory: Path, marker: Path) -> None:
    """A module that leaves a marker file when it is imported, and classes transformers could load from it."""
    (directory / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertModel, BertTokenizerFast\n"
        "class EvilConfig(BertConfig):\n    pass\n"
        "class EvilModel(BertModel):\n    config_class = EvilConfig\n"
        "class EvilTokenizer(BertTokenizerFast):\n    pass\n",
        encoding="utf-8",
    )


def _ask_for_own_tokenizer(tokenizer_config: dict) -> None:
    """A tokenizer class transformers does not know, and where to find it: transformers would ask whether
    to run the shipped code (and run it on "y")."""
    tokenizer_config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil.EvilTokenizer", None]})


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The command line in a fresh process, answering "y" to any prompt (as `yes |` in a script would)."""
    return subprocess.run([sys.executable, "-m", "distilcache.cli", *args], input="y\n" * 50, capture_output=True,
                          text=True, timeout=300, cwd=cwd)


# ---------------------------------------------------------------- 1. no shipped code runs


def test_a_student_whose_tokenizer_ships_code_is_refused_even_with_y_on_stdin(world, tmp_path):
    student = _student(world, "bilstm", tmp_path)
    marker = tmp_path / "ran"
    _plant_code(student, marker)
    _edit_json(student / "tokenizer_config.json", _ask_for_own_tokenizer)
    _rehash_student(student)
    texts = write_lines(tmp_path / "texts.txt", SENTENCES[:3])
    result = _run(["encode", "--model", str(student), "--input", str(texts), "--output", str(tmp_path / "v.parquet")])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "evil.py" in result.stderr and "never runs code" in result.stderr
    assert not marker.exists() and not (tmp_path / "v.parquet").exists()


def test_a_transformer_student_whose_config_names_its_own_code_is_refused(world, tmp_path):
    student = _student(world, "transformer", tmp_path)
    marker = tmp_path / "ran"
    # a model type transformers does not know: it would ask whether to run the shipped classes instead
    _edit_json(student / "config.json", lambda c: c.update(model_type="evil-bert",
                                                           auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}))
    _rehash_student(student)
    with pytest.raises(ShippedCodeError, match=r"config\.json: its auto_map asks to run code"):
        load_student(student)
    _plant_code(student, marker)
    loader = f"from distilcache import load_student; load_student({str(student)!r})"
    result = subprocess.run([sys.executable, "-c", loader], input="y\n" * 50, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "ShippedCodeError" in result.stderr
    assert not marker.exists()


def test_a_cache_whose_tokenizer_ships_code_trains_no_student_and_spreads_nothing(cache, tmp_path):
    marker = tmp_path / "ran"
    _plant_code(cache / "tokenizer", marker)
    _edit_json(cache / "tokenizer" / "tokenizer_config.json", _ask_for_own_tokenizer)

    def vouch(manifest):  # the attacker lists the files with their checksums, so verify passes
        for name in ("tokenizer/tokenizer_config.json", "tokenizer/evil.py"):
            manifest["tokenizer"]["files"][name] = sha256_file(cache / name)

    _edit_json(cache / "manifest.json", vouch)
    assert verify_cache(cache) == []
    result = _run(["train", "--cache", str(cache), "--output", str(tmp_path / "s"), "--epochs", "1", "--device", "cpu"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "tokenizer/evil.py" in result.stderr
    assert not marker.exists() and not (tmp_path / "s" / "evil.py").exists()


def test_a_student_copies_only_the_tokenizer_files_the_format_names(cache, tmp_path):
    (cache / "tokenizer" / "notes.txt").write_text("not a tokenizer file")
    _edit_json(cache / "manifest.json", lambda m: m["tokenizer"]["files"].update({"tokenizer/notes.txt": sha256_file(cache / "tokenizer/notes.txt")}))
    train(TrainConfig(cache=cache, output=tmp_path / "s", epochs=1, batch_size=32, val_fraction=0.2, device="cpu"))
    assert not (tmp_path / "s" / "notes.txt").exists()
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(json.loads((tmp_path / "s" / "distilcache_student.json").read_text())["files"])


def test_a_teacher_that_ships_code_is_refused_before_any_work(world, tmp_path):
    teacher = Path(shutil.copytree(world["teacher"], tmp_path / "teacher"))
    _plant_code(teacher, tmp_path / "ran")
    with pytest.raises(ShippedCodeError, match=r"evil\.py"):
        precompute(PrecomputeConfig(teacher=teacher, inputs=[InputSpec(world["corpus"])], output=tmp_path / "out", device="cpu"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "ran").exists()


# ---------------------------------------------------------------- 2. nothing outside the tool's own files is deleted


def test_precompute_into_a_project_directory_deletes_nothing(world, tmp_path):
    project = tmp_path / "project"
    (project / ".tmp-build").mkdir(parents=True)
    (project / ".tmp-build" / "keep.txt").write_text("mine")
    (project / ".tmp-123-notes.txt").write_text("mine too")
    (project / "README.md").write_text("a project")
    before = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    with pytest.raises(CacheError, match="not empty and holds no distilcache plan or manifest"):
        precompute(PrecomputeConfig(teacher=world["teacher"], inputs=[InputSpec(world["corpus"])], output=project, device="cpu"))
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*")) == before


@pytest.mark.parametrize("link_name", [".tmp-123-tokenizer", "shards/.tmp-123-part-00000.parquet"])
def test_a_temp_named_symlink_inside_a_cache_never_empties_its_target(world, cache, tmp_path, link_name):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "data.txt").write_text("keep me")
    (cache / link_name).symlink_to(target, target_is_directory=True)
    with pytest.raises(CacheError, match="symbolic link"):
        precompute(PrecomputeConfig(teacher=world["teacher"], inputs=[InputSpec(world["corpus"])], output=cache, device="cpu",
                                    shard_size=50, export_seed_layers=1))
    assert (target / "data.txt").read_text() == "keep me"
    assert (cache / link_name).is_symlink()


# ---------------------------------------------------------------- 3. no manifest name leaves the cache


def test_a_shard_named_outside_the_cache_is_refused_without_reading_it(cache, tmp_path):
    shutil.move(cache / "shards/part-00000.parquet", tmp_path / "outside.parquet")
    _edit_json(cache / "manifest.json", lambda m: m["shards"][0].update(file="../outside.parquet"))
    problems = verify_cache(cache)
    assert any("shards[0].file: '../outside.parquet' is not a plain relative name" in str(p) for p in problems)
    for verify in (True, False):
        with pytest.raises(CacheVerifyError, match=r"shards\[0\]\.file"):
            open_cache(cache, verify=verify)


def test_verify_is_no_oracle_for_files_elsewhere(cache, tmp_path):
    private = tmp_path / "private.key"
    private.write_text("secret")
    _edit_json(cache / "manifest.json", lambda m: m["idf"].update(file=str(private)))
    problems = [str(p) for p in verify_cache(cache)]
    assert any("idf.file" in p and "not a plain relative name" in p for p in problems)
    assert not any(sha256_file(private)[:12] in p or "missing" in p for p in problems)


def test_a_tokenizer_dir_outside_the_cache_is_never_copied_into_a_student(cache, tmp_path):
    private = Path(shutil.copytree(cache / "tokenizer", tmp_path / "private"))
    (private / "secret.txt").write_text("private model notes")
    shutil.rmtree(cache / "tokenizer")

    def point_outside(manifest):
        manifest["tokenizer"]["dir"] = "../private"
        manifest["tokenizer"]["files"] = {f"../private/{p.name}": sha256_file(p) for p in private.iterdir()}

    _edit_json(cache / "manifest.json", point_outside)
    assert any("tokenizer.dir" in str(p) for p in verify_cache(cache))
    with pytest.raises(CacheVerifyError, match=r"tokenizer\.dir: '\.\./private'"):
        train(TrainConfig(cache=cache, output=tmp_path / "s", epochs=1, batch_size=32, val_fraction=0.2, device="cpu"))
    assert not (tmp_path / "s" / "secret.txt").exists()


def test_a_symlink_anywhere_in_a_cache_fails_verify(cache, tmp_path):
    shutil.move(cache / "shards/part-00001.parquet", tmp_path / "elsewhere.parquet")
    (cache / "shards/part-00001.parquet").symlink_to(tmp_path / "elsewhere.parquet")
    problems = {str(p) for p in verify_cache(cache)}
    assert "shards/part-00001.parquet: symbolic link: a cache holds plain files only" in problems
    assert any("shards[1].file: 'shards/part-00001.parquet' leads outside" in p for p in problems)
    with pytest.raises(CacheVerifyError, match="symbolic link"):
        open_cache(cache)


def test_a_seed_named_outside_the_cache_is_refused(cache, tmp_path):
    shutil.move(cache / "seed", tmp_path / "seed")
    _edit_json(cache / "manifest.json", lambda m: m["seed"].update(
        dir=str(tmp_path / "seed"), files={str(tmp_path / "seed" / k.split("/")[1]): v for k, v in m["seed"]["files"].items()}))
    problems = [str(p) for p in verify_cache(cache)]
    assert any("seed.dir" in p and "not a plain relative name" in p for p in problems)


def test_a_shard_listed_twice_is_refused_even_without_checksums(cache):
    _edit_json(cache / "manifest.json", lambda m: (m["shards"].append(m["shards"][0]), m.update(total_rows=m["total_rows"] + 50)))
    with pytest.raises(CacheVerifyError, match="named twice"):
        open_cache(cache, verify=False)


# ---------------------------------------------------------------- 8. declared sizes are checked before allocating


def test_a_student_json_declaring_a_huge_embedding_is_refused_before_allocating(world, tmp_path):
    student = _student(world, "bilstm", tmp_path)
    _edit_json(student / "distilcache_student.json", lambda i: i["student"].update(vocab_size=10**9, embedding_dim=10**4))
    with pytest.raises(StudentError, match=r"encoder\.embedding\.weight of shape \(1000000000, 10000\)"):
        load_student(student)


def test_a_transformer_config_declaring_other_sizes_than_its_weights_is_refused(world, tmp_path):
    student = _student(world, "transformer", tmp_path)
    _edit_json(student / "config.json", lambda c: c.update(intermediate_size=10**7, vocab_size=10**8))
    _rehash_student(student)
    with pytest.raises(StudentError, match="the configuration declares encoder.model"):
        load_student(student)


def test_a_student_json_with_unknown_or_mistyped_fields_is_a_clear_error(world, tmp_path):
    student = _student(world, "bilstm", tmp_path)
    _edit_json(student / "distilcache_student.json", lambda i: i["student"].update(hidden_size="big"))
    with pytest.raises(StudentError, match="hidden_size must be a int"):
        load_student(student)


def test_a_student_json_with_special_tokens_outside_its_table_is_refused(world, tmp_path):
    student = _student(world, "transformer", tmp_path)
    _edit_json(student / "distilcache_student.json", lambda i: i["student"].update(end_id=10**6))
    with pytest.raises(StudentError, match="start_id and end_id must both be token ids"):
        load_student(student)


def test_a_student_file_named_outside_its_directory_is_refused(world, tmp_path):
    student = _student(world, "bilstm", tmp_path)
    (tmp_path / "secret.txt").write_text("secret")
    _edit_json(student / "distilcache_student.json", lambda i: i["files"].update({"../secret.txt": "0" * 64}))
    with pytest.raises(StudentError, match="not a plain file name"):
        load_student(student)


# ---------------------------------------------------------------- 4. object-store keys stay inside the mirror


def test_an_object_key_with_dot_dot_is_refused_and_nothing_is_written_outside_the_mirror(world, tmp_path, monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DISTILCACHE_MIRRORS", str(tmp_path / "mirrors"))
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
        s3.create_bucket(Bucket="bucket")
        for path in sorted(p for p in world["cache"].rglob("*") if p.is_file()):
            s3.put_object(Bucket="bucket", Key=f"caches/c/{path.relative_to(world['cache']).as_posix()}", Body=path.read_bytes())
        s3.put_object(Bucket="bucket", Key="caches/c/../../../escaped.txt", Body=b"written outside the mirror")
        uri = f"s3://bucket/caches/c?endpoint_override={host}:{port}&scheme=http&region=us-east-1"
        with pytest.raises(CacheError, match=r"object key .*\.\./\.\./\.\./escaped\.txt"):
            open_cache(uri)
        assert not any(p.name == "escaped.txt" for p in tmp_path.rglob("*"))
    finally:
        server.stop()
