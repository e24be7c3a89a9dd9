"""Check a cache against its manifest: names, checksums, schema, row counts, finite vectors, unknown files.

A cache may come from someone else, so its manifest is untrusted: every name in it must stay inside
the cache (`paths.resolve_inside`) and the cache holds no symbolic links.
"""

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distilcache.cache_format.errors import CacheError, Problem
from distilcache.cache_format.hashing import sha256_file
from distilcache.cache_format.layout import LOCK_FILE, MANIFEST_FILE, PARTITIONS_DIR, PLAN_FILE, TMP_PREFIX
from distilcache.cache_format.manifest import may_lack_target_text, read_manifest
from distilcache.cache_format.paths import resolve_inside, safe_relative, symlinks_under
from distilcache.cache_format.remote import Remote, is_remote
from distilcache.cache_format.schema import shard_schema

# sections whose files live in a folder of their own: {"dir": ..., "files": {"<dir>/<name>": sha256}}
DIR_SECTIONS = ("tokenizer", "student_tokenizer", "seed")
# sections naming one file: {"file": ..., "sha256": ...}
FILE_SECTIONS = ("idf", "rejected", "card", "token_vectors", "token_states")


def named_files(manifest: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(field, name, sha256) of every file the manifest vouches for, the field saying where it is named."""
    for index, entry in enumerate(manifest["shards"]):
        yield f"shards[{index}].file", entry["file"], entry["sha256"]
    for section in FILE_SECTIONS:
        if manifest.get(section):  # idf: only IDF pooling; card, token_vectors: not in every version
            yield f"{section}.file", manifest[section]["file"], manifest[section]["sha256"]
    for section in DIR_SECTIONS:
        if manifest.get(section):
            for name, sha256 in manifest[section]["files"].items():
                yield f"{section}.files", name, sha256


def name_problems(manifest: dict[str, Any]) -> list[Problem]:
    """What is wrong with the manifest's names, without reading any other file: a name that is not a plain
    relative path, a folder's file outside its folder, a file named twice."""
    problems, seen = [], {}
    for section in DIR_SECTIONS:
        entry = manifest.get(section)
        if not entry:
            continue
        try:
            folder = safe_relative(entry["dir"], f"{section}.dir")
        except CacheError as exc:
            problems.append(Problem(MANIFEST_FILE, str(exc)))
            continue
        outside = [name for name in entry["files"] if not (isinstance(name, str) and name.startswith(f"{folder}/"))]
        if outside:
            problems.append(Problem(MANIFEST_FILE, f"{section}.files: {outside[0]!r} is not inside {section}.dir {folder!r}"))
    for field, name, _ in named_files(manifest):
        try:
            safe_relative(name, field)
        except CacheError as exc:
            problems.append(Problem(MANIFEST_FILE, str(exc)))
            continue
        if name in seen:
            problems.append(Problem(MANIFEST_FILE, f"{field}: {name!r} is named twice (also as {seen[name]})"))
        seen.setdefault(name, field)
    return problems


def _check_file(cache_dir: Path, field: str, name: str, sha256: str) -> Problem | None:
    try:
        path = resolve_inside(cache_dir, name, field)
    except CacheError as exc:
        return Problem(MANIFEST_FILE, str(exc))
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
    expected = shard_schema(manifest["vector"]["dim"], manifest["vector"]["dtype"], _states_dim(manifest), manifest["format_version"])
    actual = parquet.schema_arrow
    if "target_text" not in actual.names and may_lack_target_text(manifest):
        expected = expected.remove(expected.get_field_index("target_text"))
    if [(f.name, f.type) for f in actual] != [(f.name, f.type) for f in expected]:
        problems.append(Problem(name, f"schema differs from cache-format v{manifest['format_version']}: {actual} != {expected}"))
    return problems


def _states_dim(manifest: dict[str, Any]) -> int:
    return manifest["token_states"]["dim"] if manifest.get("token_states") else 0


def _token_state_problems(cache_dir: Path, name: str) -> list[Problem]:
    """A row's token states, when it has them, are one finite state per token of token_ids."""
    parquet = pq.ParquetFile(cache_dir / name)
    row = 0
    for group in range(parquet.metadata.num_row_groups):
        table = parquet.read_row_group(group, columns=["id", "token_ids", "token_states"])
        states = table["token_states"].combine_chunks()
        held = pc.is_valid(states)
        counts, tokens = pc.list_value_length(states), pc.list_value_length(table["token_ids"].combine_chunks())
        wrong = pc.and_(held, pc.not_equal(counts, tokens)).to_numpy(zero_copy_only=False)
        if wrong.any():
            first = int(np.flatnonzero(wrong)[0])
            return [Problem(name, f"row {row + first} (id {table['id'][first].as_py()!r}) has "
                                  f"{counts[first].as_py()} token states for {tokens[first].as_py()} tokens")]
        values = states.filter(held).flatten().flatten().to_numpy(zero_copy_only=False)
        if not np.isfinite(values).all():
            return [Problem(name, f"row group {group} holds non-finite token states (NaN or infinity)")]
        row += len(table)
    return []


def _nonfinite_vectors(cache_dir: Path, name: str) -> list[Problem]:
    """A NaN or infinite teacher vector would turn every training loss into NaN: name its first row."""
    parquet = pq.ParquetFile(cache_dir / name)
    row = 0
    for group in range(parquet.metadata.num_row_groups):
        column = parquet.read_row_group(group, columns=["vector"])["vector"].combine_chunks()
        values = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if len(bad):
            ids = parquet.read_row_group(group, columns=["id"])["id"]
            return [Problem(name, f"row {row + int(bad[0])} (id {ids[int(bad[0])].as_py()!r}) has a non-finite vector "
                                  f"(NaN or infinity; {len(bad)} such row(s) in row group {group})")]
        row += len(column)
    return []


def _check_rejected(cache_dir: Path, manifest: dict[str, Any]) -> list[Problem]:
    """rejected.jsonl: UTF-8, one line per counted rejection."""
    entry = manifest["rejected"]
    lines = 0
    with open(cache_dir / entry["file"], "rb") as f:
        for lines, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return [Problem(entry["file"], f"line {lines} is not UTF-8 ({exc.reason} at byte {exc.start})")]
    if lines != entry["count"]:
        return [Problem(entry["file"], f"{lines} lines, manifest counts {entry['count']}")]
    return []


def _run_file(name: str) -> bool:
    """Files of this tool's own runs, not data: the lock, and the plan and partial manifests a run killed
    after writing the manifest did not get to remove (precompute removes them on its next run)."""
    return name.rsplit("/", 1)[-1].startswith(LOCK_FILE) or name == PLAN_FILE or name.startswith(f"{PARTITIONS_DIR}/")


def _unknown_files(cache_dir: Path, known: set[str]) -> list[Problem]:
    problems = [Problem(p.relative_to(cache_dir).as_posix(), "symbolic link: a cache holds plain files only")
                for p in symlinks_under(cache_dir)]
    for path in sorted(cache_dir.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        name = path.relative_to(cache_dir).as_posix()
        if name in known or name == MANIFEST_FILE or _run_file(name):
            continue
        reason = "temp file left by an interrupted write" if path.name.startswith(TMP_PREFIX) else "not listed in the manifest"
        problems.append(Problem(name, f"unknown file: {reason}"))
    return problems


def _check_dirs(cache_dir: Path, manifest: dict[str, Any]) -> list[Problem]:
    problems = []
    for section in DIR_SECTIONS:
        if manifest.get(section):
            try:
                if not resolve_inside(cache_dir, manifest[section]["dir"], f"{section}.dir").is_dir():
                    problems.append(Problem(manifest[section]["dir"], "missing folder"))
            except CacheError as exc:
                problems.append(Problem(MANIFEST_FILE, str(exc)))
    return problems


def _check_rows(cache_dir: Path, manifest: dict[str, Any]) -> list[Problem]:
    """Every row read: unique, non-null ids and finite vectors."""
    seen: set[str] = set()
    for entry in manifest["shards"]:
        if problems := _nonfinite_vectors(cache_dir, entry["file"]):
            return problems
        if _states_dim(manifest) and (problems := _token_state_problems(cache_dir, entry["file"])):
            return problems
        ids = pq.read_table(cache_dir / entry["file"], columns=["id"])["id"]
        for value in ids.to_pylist():
            if value in seen:
                return [Problem(entry["file"], f"duplicate id {value!r}")]
            seen.add(value)
        if pc.any(pc.is_null(ids)).as_py():
            return [Problem(entry["file"], "null id")]
    return []


def verify_cache(cache_dir: str | Path, check_rows: bool = True) -> list[Problem]:
    """All problems found in the cache; an empty list means it matches its manifest. check_rows also
    decodes every row (unique ids, finite vectors), which costs more than the checksums. A URI
    (s3://...) is downloaded whole into a fresh temporary directory: the remote bytes are checked,
    not a mirror's."""
    if is_remote(cache_dir):
        with tempfile.TemporaryDirectory(prefix="distilcache-verify-") as tmp:
            Remote.parse(str(cache_dir)).pull(Path(tmp))
            return verify_cache(Path(tmp), check_rows)
    cache_dir = Path(cache_dir)
    try:
        manifest = read_manifest(cache_dir)
    except CacheError as exc:
        return [Problem(MANIFEST_FILE, str(exc))]

    try:
        problems = name_problems(manifest) + _check_dirs(cache_dir, manifest)
        if problems:  # names that leave the cache are never opened
            return problems + _unknown_files(cache_dir, set())
        files = list(named_files(manifest))
        problems = [p for field, name, sha in files if (p := _check_file(cache_dir, field, name, sha))]
        broken = {p.file for p in problems}
        for entry in manifest["shards"]:
            if entry["file"] not in broken:
                problems += _check_shard(cache_dir, entry, manifest)
        shard_rows = sum(entry["rows"] for entry in manifest["shards"])
        if shard_rows != manifest["total_rows"]:
            problems.append(Problem(MANIFEST_FILE, f"total_rows {manifest['total_rows']} != sum of shard rows {shard_rows}"))
        if manifest["rejected"]["file"] not in broken:
            problems += _check_rejected(cache_dir, manifest)
        problems += _unknown_files(cache_dir, {name for _, name, _ in files})
        if check_rows and not problems:
            problems += _check_rows(cache_dir, manifest)
    except (KeyError, TypeError, AttributeError) as exc:
        problems = [Problem(MANIFEST_FILE, f"missing or malformed field {exc}")]
    return problems
