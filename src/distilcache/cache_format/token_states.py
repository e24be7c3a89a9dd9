"""The projection that compresses the teacher's token states (precompute --token-states k): a mean and k
principal components of the teacher's states, stored in token_projection.parquet. A state h is stored as
(h - mean) @ components.T in float16; students compare their own per-token outputs in the same coordinates.

The file: one row per component (`index` 0..k-1, largest variance first, `variance` the variance along it) and
one row for the mean (`index` -1, `variance` the total variance of the states it was fitted on), each `vector`
of the teacher's dim; the number of token states fitted on is in the schema's metadata.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distilcache.cache_format.errors import CacheError

FIT_TOKENS_KEY = b"distilcache.fit_tokens"
MAX_COMPONENTS = 1 << 12  # far above any useful k; a larger file is refused before it is read whole


@dataclass
class TokenProjection:
    mean: np.ndarray  # float32 (dim,)
    components: np.ndarray  # float32 (k, dim), orthonormal rows
    variance: np.ndarray  # float64 (k,): the fitted states' variance along each component
    total_variance: float  # the fitted states' variance over every direction
    fit_tokens: int  # how many token states the projection was fitted on

    @property
    def k(self) -> int:
        return len(self.components)

    @property
    def explained(self) -> float:
        """The share of the states' variance the k components keep."""
        return float(self.variance.sum() / self.total_variance) if self.total_variance > 0 else 1.0

    def project(self, states: np.ndarray) -> np.ndarray:
        """(n, dim) states -> (n, k) coordinates, float32."""
        return (np.asarray(states, dtype=np.float32) - self.mean) @ self.components.T

    def to_table(self) -> pa.Table:
        dim = len(self.mean)
        vectors = np.concatenate([self.mean[None, :], self.components]).astype(np.float32)
        table = pa.table({
            "index": pa.array(np.arange(-1, self.k, dtype=np.int32)),
            "variance": pa.array(np.concatenate([[self.total_variance], self.variance]).astype(np.float64)),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
        })
        return table.replace_schema_metadata({FIT_TOKENS_KEY: str(self.fit_tokens).encode()})


def read_projection(path: Path, dim: int, k: int) -> TokenProjection:
    """The projection in `path` (untrusted): k components and a mean of the teacher's dim, finite, in order."""
    metadata = pq.ParquetFile(path).metadata
    if metadata.num_rows != k + 1:
        raise CacheError(f"{path}: {metadata.num_rows} rows, expected the mean and {k} components")
    if k > MAX_COMPONENTS:
        raise CacheError(f"{path}: {k} components, more than the {MAX_COMPONENTS} a projection may have")
    table = pq.read_table(path)
    expected = {"index": pa.int32(), "variance": pa.float64(), "vector": pa.list_(pa.float32(), dim)}
    if {field.name: field.type for field in table.schema} != expected:
        raise CacheError(f"{path}: columns {table.schema.names} of types {table.schema.types}, expected {expected}")
    if table["index"].to_pylist() != list(range(-1, k)):
        raise CacheError(f"{path}: column index must run -1 (the mean), 0, ..., {k - 1}")
    vectors = table["vector"].combine_chunks().flatten().to_numpy().reshape(k + 1, dim).copy()  # writable, for torch
    variance = table["variance"].to_numpy()
    if not (np.isfinite(vectors).all() and np.isfinite(variance).all() and (variance >= 0).all()):
        raise CacheError(f"{path}: non-finite values or a negative variance")
    try:
        fit_tokens = int((table.schema.metadata or {})[FIT_TOKENS_KEY])
    except (KeyError, ValueError):
        raise CacheError(f"{path}: its schema metadata does not say how many token states it was fitted on") from None
    return TokenProjection(vectors[0], vectors[1:], variance[1:], float(variance[0]), fit_tokens)
