"""What every engine of the teacher pass shares: which shards are still to do, how a window becomes
teacher batches, a shard's table, the run's description, and the files made from the teacher besides the
shards (token vectors, seed layers)."""

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import transformers

from distilcache.cache_format import (
    STUDENT_TOKENIZER_DIR,
    TOKENIZER_DIR,
    CacheError,
    shard_name,
    shard_schema,
    vector_type,
    write_parquet_atomic,
)
from distilcache.cache_format.errors import ConfigError
from distilcache.cache_format.layout import SEED_DIR, TOKEN_VECTORS_FILE
from distilcache.precompute.config import PrecomputeConfig
from distilcache.precompute.partitions import own_shards
from distilcache.precompute.preparation import Preparation, expected_rows
from distilcache.precompute.seed import export_seed_layers
from distilcache.precompute.token_vectors import compute_token_vectors, coverage, token_vectors_table, used_token_ids
from distilcache.teacher.model import load_tokenizer
from distilcache.teacher.prepare import PreparedRows, Ragged
from distilcache.weighting import IdfTable

log = logging.getLogger(__name__)


def completed_shards(out: Path, plan: dict[str, Any]) -> set[int]:
    done = set()
    for index in range(plan["num_shards"]):
        path = out / shard_name(index)
        if path.exists():
            rows = pq.ParquetFile(path).metadata.num_rows
            if rows != expected_rows(plan, index):
                raise CacheError(f"{path}: {rows} rows, the plan expects {expected_rows(plan, index)}; delete the file to recompute it")
            done.add(index)
    return done


def shard_table(rows: PreparedRows, vectors: np.ndarray, dim: int, dtype: str, states: list[np.ndarray | None] | None = None,
                states_dim: int = 0) -> pa.Table:
    """A shard's rows; with states (precompute --token-states), each row's (tokens, states_dim) token states or None."""
    stored = vectors.astype(dtype)
    bad = np.flatnonzero(~np.isfinite(stored).all(axis=1))
    if len(bad):
        raise ConfigError(f"non-finite vectors for ids {[rows.records[i].id for i in bad[:5]]}; with --dtype float16 use --dtype float32")

    def ragged(column: Ragged, value_type: pa.DataType) -> pa.Array:
        return pa.ListArray.from_arrays(pa.array(column.offsets.astype(np.int32)), pa.array(column.values, type=value_type))

    columns = {} if states is None else {"token_states": _states_column(rows, states, states_dim)}
    return pa.table(
        {
            "id": pa.array([r.id for r in rows.records], pa.string()),
            "text": pa.array([r.text for r in rows.records], pa.string()),
            "target_text": pa.array([r.target_text for r in rows.records], pa.string()),
            "token_ids": ragged(rows.token_ids, pa.int32()),
            "weights": ragged(rows.weights, pa.float32()),
            "truncated": pa.array(rows.truncated, pa.bool_()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(stored.reshape(-1)), type=vector_type(dim, dtype)),
        }
        | columns,
        schema=shard_schema(dim, dtype, states_dim if states is not None else 0),
    )


def _states_column(rows: PreparedRows, states: list[np.ndarray | None], k: int) -> pa.Array:
    present = [s for s in states if s is not None]
    values = np.concatenate(present) if present else np.zeros((0, k), dtype=np.float16)
    if not np.isfinite(values).all():
        bad = [rows.records[i].id for i, s in enumerate(states) if s is not None and not np.isfinite(s).all()]
        raise ConfigError(f"token states overflow float16 for ids {bad[:5]}")
    offsets = np.concatenate(([0], np.cumsum([0 if s is None else len(s) for s in states]))).astype(np.int32)
    inner = pa.FixedSizeListArray.from_arrays(pa.array(values.astype(np.float16).reshape(-1)), k)
    return pa.ListArray.from_arrays(pa.array(offsets), inner, mask=pa.array([s is None for s in states]))


def shards_to_do(config: PrecomputeConfig, plan: dict[str, Any], out: Path) -> tuple[set[int], set[int]]:
    """(done, todo): the shards already written and this run's shards still missing."""
    done = completed_shards(out, plan)
    todo = set(own_shards(plan["num_shards"], config.num_partitions, config.partition)) - done
    if done:
        log.info("resuming: %d of %d shard(s) already written, not recomputed", len(done), plan["num_shards"])
    _check_free_space(out, sum(expected_rows(plan, i) for i in todo), plan)
    return done, todo


def _check_free_space(out: Path, rows: int, plan: dict[str, Any]) -> None:
    """Fail before the teacher runs when even the vectors alone cannot fit."""
    itemsize = 2 if plan["vector"]["dtype"] == "float16" else 4
    needed = rows * plan["vector"]["dim"] * itemsize
    free = shutil.disk_usage(out).free
    if free < needed:
        raise CacheError(f"{out}: {rows} rows need at least {needed / 1e6:.1f} MB for their vectors, only {free / 1e6:.1f} MB are free")


def describe_run(config: PrecomputeConfig, device: torch.device, precision: str, done: set[int]) -> dict[str, Any]:
    return {"device": str(device), "precision": precision, "batch_size": config.batch_size,
            "torch": torch.__version__, "transformers": transformers.__version__, "pyarrow": pa.__version__,
            "resumed_shards": len(done)}


def missing_extras(config: PrecomputeConfig, plan: dict[str, Any], out: Path, device: torch.device,
                    precision: str) -> list[Callable[[Any], None]]:
    """Exports of the files made from the teacher besides the shards that are still missing: each is
    made once, by partition 0, from the loaded teacher, after the shards (token vectors may cover only
    the pieces the shards use)."""
    extras = {}
    if config.export_seed_layers and config.partition == 0:
        extras[SEED_DIR] = lambda model: export_seed_layers(model, config.export_seed_layers, out, _cache_pieces(config, plan, out))
    if config.token_vectors and config.partition == 0:
        extras[TOKEN_VECTORS_FILE] = lambda model: _export_token_vectors(model, config, plan, out, device, precision)
    return [export for name, export in extras.items() if not (out / name).exists()]


def _cache_pieces(config: PrecomputeConfig, plan: dict[str, Any], out: Path) -> np.ndarray | None:
    """The teacher token ids the cache's rows use (and the special tokens) when the vocabulary is large
    enough to keep only those (token_vectors.coverage), else None: every token."""
    tokenizer = load_tokenizer(out / TOKENIZER_DIR)
    if coverage(tokenizer, config.partitioned) == "all":
        return None
    return used_token_ids([out / shard_name(i) for i in range(plan["num_shards"])], tokenizer)


def _export_token_vectors(model: Any, config: PrecomputeConfig, plan: dict[str, Any], out: Path, device: torch.device,
                          precision: str) -> None:
    tokenizer = load_tokenizer(out / TOKENIZER_DIR)
    pieces = _cache_pieces(config, plan, out)
    token_ids = np.arange(len(tokenizer)) if pieces is None else pieces
    vectors = compute_token_vectors(model, tokenizer, token_ids, config.pooling.layer, config.pooling.prefix, device, precision)
    write_parquet_atomic(token_vectors_table(token_ids, vectors, config.dtype), out / TOKEN_VECTORS_FILE)


def preparation_for(config: PrecomputeConfig, plan: dict[str, Any], idf: IdfTable | None, out: Path) -> Preparation:
    tokenizer = load_tokenizer(out / TOKENIZER_DIR)
    student_tokenizer = load_tokenizer(out / STUDENT_TOKENIZER_DIR).backend_tokenizer if plan["student_tokenizer"] else None
    return Preparation(tokenizer.backend_tokenizer, tokenizer.pad_token_id or 0, student_tokenizer, idf, config.pooling,
                       config.batch_size, token_states=config.token_states > 0)
