"""Check a cache against its manifest: checksums, schema, row counts, unknown files."""

import tempfile
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from distilcache.cache_format.errors import CacheError, Problem
from distilcache.cache_format.hashing import sha256_file
from distilcache.cache_format.layout import LOCK_FILE, MANIFEST_FILE, TMP_PREFIX
from distilcache.cache_format.manifest import read_manifest
from distilcache.cache_format.remote import Remote, is_remote
from distilcache.cache_format.schema import shard_schema


def listed_files(manifest: dict[str, Any]) -> dict[str, str]:
    """Every file the manifest vouches for, relative path -> sha256."""
    files = {entry["file"]: entry["sha256"] for entry in manifest["shards"]}
    if manifest["idf"] is not None:  # only IDF pooling has a table
        files[manifest["idf"]["file"]] = manifest["idf"]["sha256"]
    files[manifest["rejected"]["file"]] = manifest["rejected"]["sha256"]
    files.update(manifest["tokenizer"]["files"])
    if manifest.get("student_tokenizer"):
        files.update(manifest["student_tokenizer"]["files"])
    if manifest.get("seed"):  # the teacher's seed layers, when precompute exported them
        files.update(manifest["seed"]["files"])
    if manifest.get("card"):  # README.md, the dataset card
        files[manifest["card"]["file"]] = manifest["card"]["sha256"]
    if manifest.get("token_vectors"):
        files[manifest["token_vectors"]["file"]] = manifest["token_vectors"]["sha256"]
    return files


def _check_file(cache_dir: Path, name: str, sha256: str) -> Problem | None:
    path = cache_dir / name
    if not path.is_file():
        return Problem(name, "missing")
    actual = sha256_file(path)
    if actual != sha256:
        return Problem(name, f"sha256 mismatch (manifest {sha256[:12]}…, file {actual[:12]}…): corrupted or replaced")
    return None


def _check_shard(cache_dir: Path, entry: dict[str, Any], manifest: dict[str, Any]) -> list[Problem]:
    name = entry["file"]
    try:
        parquet = pq.ParquetFile(cache_dir / name)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        return [Problem(name, f"not a readable Parquet file ({exc})")]
    problems = []
    if parquet.metadata.num_rows != entry["rows"]:
        problems.append(Problem(name, f"has {parquet.metadata.num_rows} rows, manifest says {entry['rows']}"))
    expected = shard_schema(manifest["vector"]["dim"], manifest["vector"]["dtype"])
    actual = parquet.schema_arrow
    if "target_text" not in actual.names and manifest.get("student_vocab") is None:
        # a cache made before parallel text existed: v1 without the (then always null) column
        expected = expected.remove(expected.get_field_index("target_text"))
    if [(f.name, f.type) for f in actual] != [(f.name, f.type) for f in expected]:
        problems.append(Problem(name, f"schema differs from cache-format v1: {actual} != {expected}"))
    return problems


def _unknown_files(cache_dir: Path, known: set[str]) -> list[Problem]:
    problems = []
    for path in sorted(cache_dir.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(cache_dir).as_posix()
        if name in known or name == MANIFEST_FILE or path.name.startswith(LOCK_FILE):
            continue
        reason = "temp file left by an interrupted write" if path.name.startswith(TMP_PREFIX) else "not listed in the manifest"
        problems.append(Problem(name, f"unknown file: {reason}"))
    return problems


def _check_unique_ids(cache_dir: Path, manifest: dict[str, Any]) -> list[Problem]:
    seen: set[str] = set()
    for entry in manifest["shards"]:
        ids = pq.read_table(cache_dir / entry["file"], columns=["id"])["id"]
        for value in ids.to_pylist():
            if value in seen:
                return [Problem(entry["file"], f"duplicate id {value!r}")]
            seen.add(value)
        if pc.any(pc.is_null(ids)).as_py():
            return [Problem(entry["file"], "null id")]
    return []


def verify_cache(cache_dir: str | Path, check_ids: bool = True) -> list[Problem]:
    """All problems found in the cache; an empty list means it matches its manifest. A URI
    (s3://...) is downloaded whole into a fresh temporary directory: the remote bytes are checked,
    not a mirror's."""
    if is_remote(cache_dir):
        with tempfile.TemporaryDirectory(prefix="distilcache-verify-") as tmp:
            Remote.parse(str(cache_dir)).pull(Path(tmp))
            return verify_cache(Path(tmp), check_ids)
    cache_dir = Path(cache_dir)
    try:
        manifest = read_manifest(cache_dir)
    except CacheError as exc:
        return [Problem(MANIFEST_FILE, str(exc))]
    except (KeyError, TypeError) as exc:
        return [Problem(MANIFEST_FILE, f"missing field {exc}")]

    try:
        files = listed_files(manifest)
        problems = [p for name, sha in files.items() if (p := _check_file(cache_dir, name, sha))]
        broken = {p.file for p in problems}
        for entry in manifest["shards"]:
            if entry["file"] not in broken:
                problems += _check_shard(cache_dir, entry, manifest)
        shard_rows = sum(entry["rows"] for entry in manifest["shards"])
        if shard_rows != manifest["total_rows"]:
            problems.append(Problem(MANIFEST_FILE, f"total_rows {manifest['total_rows']} != sum of shard rows {shard_rows}"))
        rejected_path = cache_dir / manifest["rejected"]["file"]
        if manifest["rejected"]["file"] not in broken and rejected_path.is_file():
            lines = sum(1 for _ in rejected_path.open(encoding="utf-8"))
            if lines != manifest["rejected"]["count"]:
                problems.append(Problem(manifest["rejected"]["file"], f"{lines} lines, manifest counts {manifest['rejected']['count']}"))
        problems += _unknown_files(cache_dir, set(files))
        if check_ids and not problems:
            problems += _check_unique_ids(cache_dir, manifest)
    except (KeyError, TypeError) as exc:
        problems = [Problem(MANIFEST_FILE, f"missing or malformed field {exc}")]
    return problems
