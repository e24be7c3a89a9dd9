"""Atomic writes: every file appears under its final name complete, or not at all."""

import errno
import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from distilcache.cache_format.errors import CacheError
from distilcache.cache_format.hashing import sha256_file
from distilcache.cache_format.layout import CACHE_NAMES, LOCK_FILE, PARTITIONS_DIR, SHARDS_DIR, TMP_PREFIX, shard_name

ROW_GROUP_ROWS = 8192  # small enough to stream, large enough for zstd to work well
# float vectors (and token states) barely compress and a dictionary of float16 values never overflows, so zstd and a dictionary
# made them the slowest column to read (benchmarks/training_stream.py): stored plain
PLAIN_COLUMNS = ("vector", "token_states")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_path(path: Path) -> Path:
    # the pid keeps concurrent writers (partitions planning the same files) out of each other's temp files
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")


def move_into_place(tmp: Path, path: Path) -> None:
    """fsync a finished temp file and rename it into place."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """write(tmp), then move_into_place; a failed write leaves no temp file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        write(tmp)
        move_into_place(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _leaf_path(field: pa.Field) -> str:
    """The Parquet column a field's values are stored in (a list's under <name>.list.element, a list of lists' under
    <name>.list.element.list.element: pyarrow's default compliant nesting), which is what per-column options name."""
    path, kind = field.name, field.type
    while pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind):
        path, kind = f"{path}.list.element", kind.value_type
    return path


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    leaves = {field.name: _leaf_path(field) for field in table.schema}
    compression = {leaf: "none" if name in PLAIN_COLUMNS else "zstd" for name, leaf in leaves.items()}
    dictionary = [leaf for name, leaf in leaves.items() if name not in PLAIN_COLUMNS]
    write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression=compression, use_dictionary=dictionary,
                                                  row_group_size=ROW_GROUP_ROWS))


def write_text_atomic(text: str, path: Path) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(value: Any, path: Path) -> None:
    write_text_atomic(json.dumps(value, indent=2, ensure_ascii=False) + "\n", path)


def write_shard(cache_dir: Path, index: int, table: pa.Table) -> None:
    """Write shard `index` atomically. It is hashed once, when the manifest is written (shard_entry): a shard
    written by an earlier run or another partition has to be read then anyway."""
    write_parquet_atomic(table, cache_dir / shard_name(index))


def shard_entry(cache_dir: Path, index: int, rows: int) -> dict[str, Any]:
    name = shard_name(index)
    path = cache_dir / name
    return {"file": name, "rows": rows, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


# where this tool writes temp names, and which: write_atomic's ".tmp-<pid>-<file>" beside each file it
# writes, and the folders precompute builds as ".tmp-<pid>-<folder>" before renaming them into place
# (".tmp-seed": seed layers before the pid was in the name)
_TMP_NAMES = {
    "": re.compile(rf"{re.escape(TMP_PREFIX)}(\d+-)?({'|'.join(map(re.escape, CACHE_NAMES))})"),
    SHARDS_DIR: re.compile(rf"{re.escape(TMP_PREFIX)}\d+-part-\d+\.parquet"),
    PARTITIONS_DIR: re.compile(rf"{re.escape(TMP_PREFIX)}\d+-part-\d+\.json"),
}


def is_own_tmp_name(name: str, folder: str = "") -> bool:
    """name, found in the cache's `folder` ("" for the top), is one of the temp names this tool writes there."""
    pattern = _TMP_NAMES.get(folder)
    return pattern is not None and pattern.fullmatch(name) is not None


def remove_stale_tmp_files(cache_dir: Path, shards: Container[int] | None = None) -> list[Path]:
    """Delete the temp files and folders a killed writer of this tool left behind (they are never taken as
    data): only names of its own pattern, only where it writes them, never following a symbolic link.
    With `shards`, only the temp files of those shard indices."""
    removed = []
    for folder in _TMP_NAMES:
        where = cache_dir / folder
        if where.is_symlink() or not where.is_dir():
            continue
        for path in sorted(where.iterdir()):
            if not is_own_tmp_name(path.name, folder) or path.is_symlink():
                continue
            if shards is not None and _shard_index(path) not in shards:
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
    return removed


def _shard_index(tmp: Path) -> int | None:
    match = re.search(r"part-(\d+)\.parquet$", tmp.name)
    return int(match.group(1)) if match else None


class CacheLock:
    """An exclusive OS lock on a cache directory (or on one partition of it, by name); the kernel
    drops it when the process dies."""

    def __init__(self, cache_dir: Path, name: str = LOCK_FILE):
        self.path = cache_dir / name
        self._fd: int | None = None

    def __enter__(self) -> "CacheLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise CacheError(
                    f"{self.path.parent} is being written by another process (pid {holder}, lock {self.path.name}); "
                    "wait for it to finish or write to another directory"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
