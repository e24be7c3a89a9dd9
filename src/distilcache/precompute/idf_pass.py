"""`distilcache idf`: the IDF table of a corpus, computed once before a partitioned precompute,
itself splittable into partitions whose tables merge into the same table."""

import multiprocessing
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import pyarrow.parquet as pq
from tqdm.auto import tqdm

from distilcache.cache_format import write_parquet_atomic
from distilcache.cache_format.errors import ConfigError, DataFileError
from distilcache.inputs import InputSpec, Record, iter_corpus
from distilcache.weighting import IdfTable

T = TypeVar("T")
_PARTITION_KEY = b"distilcache.partition"
BYTES_PER_WORKER = 4 << 20  # below this a process costs more to start than it saves  # "I/N" in a partial table's schema metadata


def compute_idf(specs: list[InputSpec], num_partitions: int = 1, partition: int = 0, keep_first_duplicate: bool = False,
                progress: bool = True) -> IdfTable:
    """Document frequencies over the accepted rows (those precompute keeps) whose position in the
    corpus is partition mod num_partitions; a row's target text counts as a document of its own."""
    if num_partitions < 1 or not 0 <= partition < num_partitions:
        raise ConfigError(f"--partition must be in 0..{num_partitions - 1} and --num-partitions >= 1, "
                          f"got {partition} of {num_partitions}")
    table = IdfTable()
    records = (item for item in iter_corpus(specs, keep_first_duplicate) if isinstance(item, Record))
    for position, record in enumerate(tqdm(records, desc="IDF", unit=" rows", mininterval=1, disable=not progress)):
        if position % num_partitions == partition:
            for document in record.documents:
                table.add_document(document)
    return table


def idf_workers(specs: list[InputSpec], workers: int) -> int:
    """Processes worth starting for the IDF pass: at most one per BYTES_PER_WORKER of input."""
    size = sum(spec.path.stat().st_size for spec in specs)
    return max(1, min(workers, size // BYTES_PER_WORKER))


def idf_in_processes(specs: list[InputSpec], workers: int, keep_first_duplicate: bool, meanwhile: Callable[[], T]) -> tuple[IdfTable, T]:
    """The IDF table counted by `workers` spawned processes, each every workers-th row (jieba is Python: one
    core each), added up: the table of one pass. Returns it with what meanwhile() returns, run here
    while they count."""
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = [pool.submit(compute_idf, specs, workers, i, keep_first_duplicate, False) for i in range(workers)]
        result = meanwhile()
        return IdfTable.merge(part.result() for part in parts), result


def write_idf(table: IdfTable, path: Path, partition: tuple[int, int] | None = None) -> None:
    """Write the table; a partial one (partition I of N) says so, for merge_idf_files to check."""
    arrow = table.to_arrow()
    if partition is not None:
        arrow = arrow.replace_schema_metadata(arrow.schema.metadata | {_PARTITION_KEY: f"{partition[0]}/{partition[1]}".encode()})
    write_parquet_atomic(arrow, path)


def merge_idf_files(paths: list[Path]) -> IdfTable:
    """Add up partial tables: each file once, and when they name their partitions, each partition of one
    set exactly once (a table counted twice would double its document frequencies)."""
    resolved = [p.resolve() for p in paths]
    twice = sorted({str(p) for p in resolved if resolved.count(p) > 1})
    if twice:
        raise ConfigError(f"--merge names {twice} more than once; each partial table counts once")
    tables = [IdfTable.load(p) for p in paths]  # first: names a file that is not a readable table
    named = [label for p in paths if (label := _partition_label(p)) is not None]
    if named:
        sizes = {label.split("/")[1] for label in named}
        expected = {f"{i}/{n}" for n in sizes for i in range(int(n))}
        if len(named) != len(paths) or len(set(named)) != len(named) or len(sizes) != 1 or set(named) != expected:
            raise DataFileError(f"--merge: the tables are partitions {sorted(named)}, not each partition of one set once "
                                f"(missing: {sorted(expected - set(named))}); files: {[str(p) for p in paths]}")
    return IdfTable.merge(tables)


def _partition_label(path: Path) -> str | None:
    label = (pq.read_schema(path).metadata or {}).get(_PARTITION_KEY, b"").decode(errors="replace")
    if not label:
        return None
    if not re.fullmatch(r"\d+/\d+", label):
        raise DataFileError(f"{path}: malformed partition label {label!r}")
    return label
