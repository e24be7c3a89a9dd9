"""`distilcache idf`: the IDF table of a corpus, computed once before a partitioned precompute,
itself splittable into partitions whose tables merge into the same table."""

import re
from pathlib import Path

import pyarrow.parquet as pq
from tqdm.auto import tqdm

from distilcache.cache_format import write_parquet_atomic
from distilcache.cache_format.errors import ConfigError, DataFileError
from distilcache.inputs import InputSpec, Record, iter_corpus
from distilcache.precompute.workers import WorkerGroup, worker_group
from distilcache.weighting import IdfTable

_PARTITION_KEY = b"distilcache.partition"  # "I/N" in a partial table's schema metadata
CHUNK_ROWS = 4096  # rows per task: large enough that a chunk's table costs little to send back


class IdfCounter:
    """add_document as an IdfTable's, with the segmentation in a WorkerGroup's processes when given one: the reader
    stays in this process (one pass, one validating reader), the documents go out in chunks (those with the same key
    together, to the worker the key names), each chunk comes back as its own table, and the tables add up into the one
    a single pass counts (document frequencies of disjoint sets add)."""

    def __init__(self, group: WorkerGroup | None):
        self.table = IdfTable()
        self._group = group
        self._chunk: list[str] = []
        self._key = 0

    def add_document(self, text: str, key: int) -> None:
        if self._group is None:
            self.table.add_document(text)
            return
        if key != self._key and self._chunk:
            self._send()
        self._key = key
        self._chunk.append(text)

    def result(self) -> IdfTable:
        if self._group is not None:
            if self._chunk:
                self._send()
            while self._group.pending:
                self.table.add_table(self._group.oldest())
        return self.table

    def _send(self) -> None:
        assert self._group is not None
        self._group.submit(self._key, IdfTable.from_texts, self._chunk)
        self._chunk = []
        while self._group.pending > 2 * self._group.size:  # every process busy, memory bounded
            self.table.add_table(self._group.oldest())


def compute_idf(specs: list[InputSpec], num_partitions: int = 1, partition: int = 0, keep_first_duplicate: bool = False,
                progress: bool = True, workers: int = 1) -> IdfTable:
    """Document frequencies over the accepted rows (those precompute keeps) whose position in the
    corpus is partition mod num_partitions; a row's target text counts as a document of its own."""
    if num_partitions < 1 or not 0 <= partition < num_partitions:
        raise ConfigError(f"--partition must be in 0..{num_partitions - 1} and --num-partitions >= 1, "
                          f"got {partition} of {num_partitions}")
    records = (item for item in iter_corpus(specs, keep_first_duplicate) if isinstance(item, Record))
    with worker_group(workers) as group:
        counter = IdfCounter(group)
        for position, record in enumerate(tqdm(records, desc="IDF", unit=" rows", mininterval=1, disable=not progress)):
            if position % num_partitions == partition:
                for document in record.documents:
                    counter.add_document(document, position // CHUNK_ROWS)
        return counter.result()


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
