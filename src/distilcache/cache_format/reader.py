"""Open a finished cache: the manifest plus its rows as memory-mapped Arrow."""

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from distilcache.cache_format.errors import CacheVerifyError, Problem
from distilcache.cache_format.hashing import sha256_json
from distilcache.cache_format.layout import MANIFEST_FILE
from distilcache.cache_format.manifest import read_manifest
from distilcache.cache_format.paths import resolve_inside
from distilcache.cache_format.remote import Remote, is_remote
from distilcache.cache_format.verify import name_problems, verify_cache


def vector_array(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A fixed_size_list vector column as one (rows, dim) array in its stored dtype."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), dim)


@dataclass(frozen=True)
class Cache:
    """A complete cache. Every path it hands out comes from a manifest name checked to stay inside it."""

    path: Path
    manifest: dict[str, Any]

    def _inside(self, name: str, field: str) -> Path:
        return resolve_inside(self.path, name, field)

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def identity(self) -> dict[str, str]:
        """What a student records of the cache it learnt from: the fingerprint and a hash of the shard list."""
        return {"fingerprint": self.fingerprint, "rows_sha256": sha256_json(self.manifest["shards"])}

    @property
    def teacher(self) -> dict[str, Any]:
        """name, architecture, model_type, hidden_size, num_layers, max_position_embeddings, files."""
        return dict(self.manifest["teacher"])

    @property
    def pooling(self) -> dict[str, Any]:
        """How the teacher's vectors were pooled: mode, layer, smoothing, max_length, normalize."""
        return dict(self.manifest["pooling"])

    @property
    def seed_layers(self) -> list[int] | None:
        """The teacher layers stored in seed/ (precompute --export-seed-layers), or None."""
        seed = self.manifest.get("seed")
        return list(seed["layers"]) if seed else None

    @property
    def augmented(self) -> bool:
        """Whether the cache holds variants of its rows (precompute --augment): the held-out split then
        follows each variant's source (cache_format/split.py)."""
        return self.manifest.get("augment") is not None

    @property
    def dim(self) -> int:
        return self.manifest["vector"]["dim"]

    @property
    def dtype(self) -> str:
        return self.manifest["vector"]["dtype"]

    @property
    def num_rows(self) -> int:
        return self.manifest["total_rows"]

    @property
    def shard_paths(self) -> list[Path]:
        return [self._inside(entry["file"], f"shards[{i}].file") for i, entry in enumerate(self.manifest["shards"])]

    @property
    def tokenizer_dir(self) -> Path:
        return self._inside(self.manifest["tokenizer"]["dir"], "tokenizer.dir")

    @property
    def student_tokenizer_dir(self) -> Path:
        """The tokenizer that made the token_ids column: the teacher's, or an extended one."""
        student = self.manifest.get("student_tokenizer")
        return self._inside(student["dir"], "student_tokenizer.dir") if student else self.tokenizer_dir

    @property
    def student_tokenizer_files(self) -> list[Path]:
        """The files of that tokenizer the manifest vouches for (a student copies these and nothing else)."""
        section = "student_tokenizer" if self.manifest.get("student_tokenizer") else "tokenizer"
        return [self._inside(name, f"{section}.files") for name in self.manifest[section]["files"]]

    @property
    def seed_dir(self) -> Path | None:
        """The teacher's seed layers (precompute --export-seed-layers), or None."""
        seed = self.manifest.get("seed")
        return self._inside(seed["dir"], "seed.dir") if seed else None

    @property
    def token_vectors_path(self) -> Path | None:
        """The teacher's static token vectors, or None."""
        entry = self.manifest.get("token_vectors")
        return self._inside(entry["file"], "token_vectors.file") if entry else None

    @property
    def token_states(self) -> int:
        """k when the rows hold the teacher's token states in k dimensions (precompute --token-states), else 0."""
        entry = self.manifest.get("token_states")
        return entry["dim"] if entry else 0

    @property
    def token_projection_path(self) -> Path | None:
        """The projection of the token states (cache_format/token_states.py), or None."""
        entry = self.manifest.get("token_states")
        return self._inside(entry["file"], "token_states.file") if entry else None

    @property
    def idf_path(self) -> Path | None:
        """The IDF table (IDF pooling only), or None."""
        entry = self.manifest["idf"]
        return self._inside(entry["file"], "idf.file") if entry else None

    @cached_property
    def dataset(self) -> ds.Dataset:
        """A lazy pyarrow dataset over the shards, in row order."""
        return ds.dataset([str(p) for p in self.shard_paths], format="parquet")

    def table(self, columns: list[str] | None = None) -> pa.Table:
        """All rows; files are memory-mapped, so only the columns asked for are read."""
        tables = [pq.read_table(p, columns=columns, memory_map=True) for p in self.shard_paths]
        return pa.concat_tables(tables) if tables else self.dataset.schema.empty_table()

    def iter_batches(self, columns: list[str] | None = None, batch_size: int = 8192) -> Iterator[pa.RecordBatch]:
        """Stream rows in order without holding the whole cache in memory."""
        for path in self.shard_paths:
            yield from pq.ParquetFile(path, memory_map=True).iter_batches(batch_size=batch_size, columns=columns)

    def vectors(self, dtype: str = "float32") -> np.ndarray:
        """The teacher vectors as one (num_rows, dim) array."""
        return vector_array(self.table(["vector"])["vector"], self.dim).astype(dtype, copy=False)

    def idf(self) -> pa.Table:
        return pq.read_table(self.idf_path)


def open_cache(path: str | Path, verify: bool = True) -> Cache:
    """Open a complete cache. verify=True checks every checksum first (reads every byte once, decodes
    none: `verify_cache` also checks the rows);
    verify=False trusts the checksums and only reads what is asked for (the manifest's names are
    checked either way). A URI (s3://...) is pulled into its local mirror first (unchanged files
    are not fetched again)."""
    if is_remote(path):
        remote = Remote.parse(path)
        path = remote.mirror()
        remote.pull(path)
    path = Path(path)
    manifest = read_manifest(path)
    if verify:
        problems = verify_cache(path, check_rows=False)
    else:
        try:
            problems = name_problems(manifest)
        except (KeyError, TypeError, AttributeError) as exc:
            problems = [Problem(MANIFEST_FILE, f"missing or malformed field {exc}")]
    if problems:
        raise CacheVerifyError(str(path), problems)
    return Cache(path=path, manifest=manifest)
