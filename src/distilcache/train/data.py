"""Cache rows as flat numpy arrays, and length-grouped padded batches of them."""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from distilcache.cache_format import Cache, CacheError
from distilcache.cache_format.reader import vector_array
from distilcache.student.model import PaddedBatch, pad_rows

GROUP_BATCHES = 50  # batches whose rows are sorted by length together: little padding, still shuffled


@dataclass
class CacheRows:
    """token_ids / weights of row i are values[offsets[i]:offsets[i+1]]; vectors[i] is its teacher vector."""

    ids: list[str]
    offsets: np.ndarray  # int64, (rows + 1,)
    token_ids: np.ndarray  # int32
    weights: np.ndarray  # float32
    vectors: np.ndarray  # (rows, dim), the cache's dtype

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def nonfinite(self, chunk: int = 1 << 16) -> np.ndarray:
        """Indices of the rows whose teacher vector holds a NaN or an infinity (in chunks: no full-size mask)."""
        return np.concatenate([start + np.flatnonzero(~np.isfinite(self.vectors[start : start + chunk]).all(axis=1))
                               for start in range(0, len(self), chunk)] or [np.zeros(0, dtype=np.int64)])


def _flat_list(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    array = column.combine_chunks()
    offsets = array.offsets.to_numpy().astype(np.int64)
    values = array.values.to_numpy()[offsets[0] : offsets[-1]]
    return offsets - offsets[0], values


def load_rows(cache: Cache) -> CacheRows:
    """Read the training columns once (shards are memory-mapped; nothing is re-tokenised)."""
    table = cache.table(["id", "token_ids", "weights", "vector"])
    offsets, token_ids = _flat_list(table["token_ids"])
    weight_offsets, weights = _flat_list(table["weights"])
    if not np.array_equal(offsets, weight_offsets):
        raise CacheError(f"{cache.path}: token_ids and weights are not aligned")
    vectors = vector_array(table["vector"], cache.dim)
    return CacheRows(table["id"].to_pylist(), offsets, token_ids.astype(np.int32), weights.astype(np.float32), vectors)


def length_grouped(indices: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Cut indices into batches of similar length. With rng: shuffle rows, sort within groups of
    GROUP_BATCHES batches, shuffle the batch order. Without: plain length order (evaluation)."""
    if rng is None:
        ordered = indices[np.argsort(lengths[indices], kind="stable")]
        return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    shuffled = rng.permutation(indices)
    group = batch_size * GROUP_BATCHES
    batches = []
    for start in range(0, len(shuffled), group):
        members = shuffled[start : start + group]
        members = members[np.argsort(lengths[members], kind="stable")]
        batches += [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def iter_batches(rows: CacheRows, batches: list[np.ndarray], pad_id: int) -> Iterator[tuple[np.ndarray, PaddedBatch, torch.Tensor]]:
    """(the batch's row indices, padded inputs, float32 teacher vectors) per batch."""
    lengths = rows.lengths
    for members in batches:
        teacher_vectors = torch.from_numpy(rows.vectors[members].astype(np.float32))
        yield members, pad_rows(rows.token_ids, rows.weights, rows.offsets[members], lengths[members], pad_id), teacher_vectors
