"""Cache rows streamed in bounded memory, as length-grouped padded batches.

The cache is read one Parquet row group at a time. One scan before training learns what the run needs
from every row (the held-out split, the token ids in use, that every vector is finite). Each epoch reads
the row groups in a shuffled order into a shuffle buffer, permutes the buffer, sorts groups of
GROUP_BATCHES batches by length (little padding) and serves their batches in a shuffled order. Memory
holds the buffer and the row groups read ahead, not the cache; what it keeps per row is one bit (the
held-out split). A cache smaller than the buffer is shuffled whole.
"""

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from distilcache.cache_format import Cache, CacheError
from distilcache.cache_format.reader import vector_array
from distilcache.cache_format.split import split_masks
from distilcache.student.model import PaddedBatch, pad_rows, padded_positions

GROUP_BATCHES = 50  # batches whose rows are sorted by length together: little padding, still shuffled
READ_THREADS = 2  # threads decoding row groups while the student trains
READ_AHEAD = 4  # row groups read ahead of the one in use
MAX_GROUP_ROWS = 1 << 20  # the largest row group read whole (the writer's are ROW_GROUP_ROWS)
COLUMNS = ["id", "token_ids", "weights", "vector"]
T = TypeVar("T")


@dataclass
class CacheRows:
    """A block of cache rows: token_ids / weights of row i are values[offsets[i]:offsets[i+1]]; vectors[i] is its
    teacher vector."""

    ids: pa.Array  # strings
    offsets: np.ndarray  # int64, (rows + 1,), from 0
    token_ids: np.ndarray  # int32
    weights: np.ndarray  # float32
    vectors: np.ndarray  # (rows, dim), the cache's dtype
    # read only for a token-state loss: (tokens, k) float16 aligned with token_ids (zeros for a row without them),
    # and per row whether it has them
    states: np.ndarray | None = None
    has_states: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, members: np.ndarray) -> "CacheRows":
        """Rows `members`, in that order, as a block of their own."""
        lengths = self.lengths[members]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.repeat(self.offsets[members] - offsets[:-1], lengths) + np.arange(offsets[-1])
        held = self.states is not None
        return CacheRows(self.ids.take(pa.array(members, pa.int64())), offsets, self.token_ids[flat], self.weights[flat],
                         self.vectors[members], self.states[flat] if held else None, self.has_states[members] if held else None)

    @staticmethod
    def concat(blocks: list["CacheRows"]) -> "CacheRows":
        starts = np.cumsum([0] + [int(b.offsets[-1]) for b in blocks])
        offsets = np.concatenate([[0]] + [b.offsets[1:] + start for b, start in zip(blocks, starts)]).astype(np.int64)
        held = blocks[0].states is not None
        return CacheRows(pa.concat_arrays([b.ids for b in blocks]), offsets, np.concatenate([b.token_ids for b in blocks]),
                         np.concatenate([b.weights for b in blocks]), np.concatenate([b.vectors for b in blocks]),
                         np.concatenate([b.states for b in blocks]) if held else None,
                         np.concatenate([b.has_states for b in blocks]) if held else None)


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group of a shard: the unit read and shuffled."""

    path: Path
    index: int
    rows: int


def _flat_list(array: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    offsets = array.offsets.to_numpy().astype(np.int64)
    values = array.values.to_numpy()[offsets[0] : offsets[-1]]
    return offsets - offsets[0], values


def row_groups(cache: Cache) -> list[RowGroup]:
    """Every row group of the cache in row order, each checked to be small enough to read whole."""
    groups = []
    for path in cache.shard_paths:
        metadata = pq.ParquetFile(path, memory_map=True).metadata
        for index in range(metadata.num_row_groups):
            rows = metadata.row_group(index).num_rows
            if not 0 <= rows <= MAX_GROUP_ROWS:
                raise CacheError(f"{path}: row group {index} declares {rows} rows, over the {MAX_GROUP_ROWS} read at once")
            groups.append(RowGroup(path, index, rows))
    return groups


def read_rows(group: RowGroup, dim: int, states_dim: int = 0) -> CacheRows:
    """The training columns of one row group (nothing is re-tokenised); with states_dim, the token states too."""
    columns = COLUMNS + (["token_states"] if states_dim else [])
    # one thread per row group: the read-ahead threads are the parallelism, and pyarrow's own would contend with them
    table = pq.ParquetFile(group.path, memory_map=True).read_row_group(group.index, columns=columns, use_threads=False)
    if table.num_rows != group.rows:
        raise CacheError(f"{group.path}: row group {group.index} holds {table.num_rows} rows, its metadata {group.rows}")
    offsets, token_ids = _flat_list(table["token_ids"].combine_chunks())
    weight_offsets, weights = _flat_list(table["weights"].combine_chunks())
    if not np.array_equal(offsets, weight_offsets):
        raise CacheError(f"{group.path}: row group {group.index}: token_ids and weights are not aligned")
    rows = CacheRows(table["id"].combine_chunks(), offsets, token_ids.astype(np.int32), weights.astype(np.float32),
                     vector_array(table["vector"], dim))
    if states_dim:
        rows.states, rows.has_states = _token_states(table["token_states"].combine_chunks(), rows.lengths, states_dim, group)
    return rows


def _token_states(column: pa.ListArray, lengths: np.ndarray, k: int, group: RowGroup) -> tuple[np.ndarray, np.ndarray]:
    """The column as one (tokens, k) array aligned with token_ids (zeros for a row without states), and which rows have them."""
    has = column.is_valid().to_numpy(zero_copy_only=False)
    counts = pc.list_value_length(column).fill_null(0).to_numpy()
    if not np.array_equal(counts[has], lengths[has]):
        raise CacheError(f"{group.path}: row group {group.index}: a row's token_states and token_ids differ in length")
    values = pc.list_flatten(column).flatten().to_numpy(zero_copy_only=False).reshape(-1, k)
    states = np.zeros((int(lengths.sum()), k), dtype=np.float16)
    states[np.repeat(has, lengths)] = values
    return states, has


@dataclass
class CacheScan:
    """What training needs to know of every row before its first step."""

    groups: list[RowGroup]
    train: list[np.ndarray]  # per row group, packed bits: does row i train
    held_out: list[np.ndarray]  # per row group, packed bits: is row i held out (neither, for a held-out row's variant)
    train_rows: int
    held_out_rows: int
    token_ids: np.ndarray  # the token ids the rows use, sorted
    states_dim: int = 0  # k when batches carry the rows' token states (a token-state loss), else 0

    def members(self, group: int, held_out: bool) -> np.ndarray:
        """The positions in the group of its held-out rows, or of its training rows."""
        bits = (self.held_out if held_out else self.train)[group]
        return np.flatnonzero(np.unpackbits(bits, count=self.groups[group].rows))


def scan_cache(cache: Cache, val_fraction: float, vocab_size: int, token_states: bool = False) -> CacheScan:
    """Read every row group once: the id-hash held-out split, the token ids in use (each checked to be one of
    the tokenizer's), and a refusal naming the rows whose teacher vector is not finite (a NaN computed
    before the manifest was written passes every checksum)."""
    groups = row_groups(cache)
    train, held_out, used = [], [], np.zeros(vocab_size, dtype=bool)
    bad_ids: list[str] = []
    bad = train_rows = held_out_rows = 0
    with tqdm(total=cache.num_rows, desc="scanning cache", unit=" rows", mininterval=1) as bar:
        for group, rows in zip(groups, read_ahead(range(len(groups)), lambda g: read_rows(groups[g], cache.dim))):
            if len(rows.token_ids) and not (0 <= rows.token_ids.min() and rows.token_ids.max() < vocab_size):
                raise CacheError(f"{group.path}: row group {group.index} holds token ids outside the tokenizer's "
                                 f"0..{vocab_size - 1}")
            used[rows.token_ids] = True
            train_mask, held_out_mask = split_masks(rows.ids.to_pylist(), val_fraction, cache.augmented)
            train.append(np.packbits(train_mask))
            held_out.append(np.packbits(held_out_mask))
            train_rows += int(train_mask.sum())
            held_out_rows += int(held_out_mask.sum())
            finite = np.isfinite(rows.vectors).all(axis=1)
            if not finite.all():
                bad += int((~finite).sum())
                bad_ids += rows.ids.filter(pa.array(~finite)).to_pylist()[: 5 - len(bad_ids)]
            bar.update(len(rows))
    if bad:
        raise CacheError(f"{cache.path}: {bad} row(s) have a non-finite teacher vector, e.g. ids {bad_ids}; "
                         "`distilcache verify` lists the first of each shard")
    return CacheScan(groups, train, held_out, train_rows, held_out_rows, np.flatnonzero(used), cache.token_states if token_states else 0)


@dataclass
class Batch:
    inputs: PaddedBatch
    teacher_vectors: torch.Tensor  # in the cache's dtype: made float32 where it is used (half the bytes to a GPU)
    source_ids: pa.Array  # the ids of the buffer the rows come from
    members: np.ndarray  # the rows' positions there
    token_states: torch.Tensor | None = None  # (batch, tokens, k) float16, aligned with inputs.token_ids
    state_mask: torch.Tensor | None = None  # (batch, tokens) bool: the positions with a teacher state

    def __len__(self) -> int:
        return len(self.members)

    @property
    def ids(self) -> pa.Array:
        """The rows' ids (to name them in an error: taken only when asked for)."""
        return self.source_ids.take(pa.array(self.members, pa.int64()))


def _batch(rows: CacheRows, lengths: np.ndarray, members: np.ndarray, pad_id: int) -> Batch:
    """The batch of rows[members]; lengths: rows.lengths (computed once per buffer, not per batch)."""
    inputs = pad_rows(rows.token_ids, rows.weights, rows.offsets[members], lengths[members], pad_id)
    batch = Batch(inputs, torch.from_numpy(rows.vectors[members]), rows.ids, members)
    if rows.states is not None:  # padded as pad_rows pads the tokens
        inside, taken = padded_positions(rows.offsets[members], lengths[members])
        states = np.zeros((*inside.shape, rows.states.shape[1]), dtype=np.float16)
        states[inside] = rows.states[taken]
        batch.token_states = torch.from_numpy(states)
        batch.state_mask = torch.from_numpy(inside & rows.has_states[members][:, None])
    return batch


def _by_length(members: np.ndarray, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    members = members[np.argsort(np.maximum(lengths[members], 1), kind="stable")]
    return [members[i : i + batch_size] for i in range(0, len(members), batch_size)]


def read_ahead(groups: Iterable[int], read: Callable[[int], T]) -> Iterator[T]:
    """read(group) for each group, in order, READ_AHEAD groups ahead on READ_THREADS threads (Parquet decoding
    runs without the GIL)."""
    with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="distilcache-read") as pool:
        pending: deque[Future[T]] = deque()
        try:
            for group in groups:
                pending.append(pool.submit(read, group))
                if len(pending) > READ_AHEAD:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # left early (an error): wait for no more than the reads already running
            for future in pending:
                future.cancel()


def _kept_rows(scan: CacheScan, order: np.ndarray, held_out: bool, dim: int,
               transform: Callable[[CacheRows], CacheRows]) -> Iterator[CacheRows]:
    """The training (or held-out) rows of the row groups in `order`."""
    def read(group: int) -> CacheRows:
        rows = read_rows(scan.groups[group], dim, scan.states_dim)
        return transform(rows.take(scan.members(group, held_out)))

    return read_ahead(order, read)


def training_batches(scan: CacheScan, dim: int, transform: Callable[[CacheRows], CacheRows], batch_size: int,
                     buffer_rows: int, rng: np.random.Generator, pad_id: int) -> Iterator[Batch]:
    """One epoch of training batches. Row groups come in a shuffled order; once the buffer holds buffer_rows,
    it is permuted and its whole groups of GROUP_BATCHES batches (fewer if the buffer is smaller) are served,
    each sorted by length, their batches in a shuffled order; the rest waits for the next fill. So every
    batch but the epoch's last is full, and an epoch is ceil(train_rows / batch_size) batches. Everything
    random comes from rng."""
    capacity = max(buffer_rows, batch_size)
    group_rows = min(batch_size * GROUP_BATCHES, capacity // batch_size * batch_size)
    waiting: list[CacheRows] = []
    held = 0
    for rows in _kept_rows(scan, rng.permutation(len(scan.groups)), False, dim, transform):
        waiting.append(rows)
        held += len(rows)
        if held < capacity:
            continue
        buffer = CacheRows.concat(waiting)
        shuffled = rng.permutation(len(buffer))
        whole = len(buffer) // group_rows * group_rows
        waiting = [buffer.take(shuffled[whole:])]  # before serving: the blocks are freed while the buffer is used
        held = len(waiting[0])
        yield from _serve(buffer, shuffled[:whole], group_rows, batch_size, rng, pad_id)
    if held:
        buffer = CacheRows.concat(waiting)
        waiting.clear()
        yield from _serve(buffer, rng.permutation(len(buffer)), group_rows, batch_size, rng, pad_id)


def _serve(buffer: CacheRows, shuffled: np.ndarray, group_rows: int, batch_size: int, rng: np.random.Generator,
           pad_id: int) -> Iterator[Batch]:
    lengths = buffer.lengths
    batches = [batch for start in range(0, len(shuffled), group_rows)
               for batch in _by_length(shuffled[start : start + group_rows], lengths, batch_size)]
    for i in rng.permutation(len(batches)):
        yield _batch(buffer, lengths, batches[i], pad_id)


def held_out_batches(scan: CacheScan, dim: int, transform: Callable[[CacheRows], CacheRows], batch_size: int,
                     buffer_rows: int, pad_id: int) -> Iterator[Batch]:
    """The held-out rows in row order, a buffer at a time, each buffer's batches sorted by length."""
    def serve(waiting: list[CacheRows]) -> Iterator[Batch]:
        buffer = CacheRows.concat(waiting)
        waiting.clear()  # the blocks are freed while the buffer is used
        lengths = buffer.lengths
        return (_batch(buffer, lengths, members, pad_id) for members in _by_length(np.arange(len(buffer)), lengths, batch_size))

    waiting: list[CacheRows] = []
    for rows in _kept_rows(scan, np.arange(len(scan.groups)), True, dim, transform):
        waiting.append(rows)
        if sum(map(len, waiting)) >= buffer_rows:
            yield from serve(waiting)
    if waiting:
        yield from serve(waiting)
