"""A student's embedding table may hold only the pieces its cache used (a SentencePiece teacher has 250k):
vocabulary.safetensors lists the tokenizer id of each table row, and any other piece reads as unknown."""

from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

VOCABULARY_FILE = "vocabulary.safetensors"  # absent: the table holds the whole tokenizer, row i is token id i
_KEY = "token_ids"


def lookup_table(table_ids: np.ndarray, tokenizer_size: int, unknown_row: int) -> np.ndarray:
    """Tokenizer id -> table row; an id the table lacks gets unknown_row."""
    lookup = np.full(tokenizer_size, unknown_row, dtype=np.int64)
    lookup[table_ids] = np.arange(len(table_ids))
    return lookup


def reading_lookup(table_ids: np.ndarray, tokenizer_size: int, unk_id: int | None, fallback_row: int) -> np.ndarray:
    """lookup_table as encode reads text: a piece the table lacks reads as the unknown token (fallback_row
    when the table has none)."""
    unk_rows = np.flatnonzero(table_ids == unk_id) if unk_id is not None else []
    return lookup_table(table_ids, tokenizer_size, int(unk_rows[0]) if len(unk_rows) else fallback_row)


def save_vocabulary(path: Path, table_ids: np.ndarray) -> None:
    save_file({_KEY: torch.from_numpy(np.asarray(table_ids, dtype=np.int64))}, str(path))


def load_vocabulary(path: Path, table_size: int, tokenizer_size: int, error: type[Exception]) -> np.ndarray:
    """The table's tokenizer ids, checked: one per row, each a distinct id of the tokenizer."""
    with safe_open(str(path), framework="pt") as f:
        if list(f.keys()) != [_KEY] or f.get_slice(_KEY).get_shape() != [table_size]:
            raise error(f"{path}: expected one tensor {_KEY!r} of {table_size} ids (the embedding table's rows)")
        table_ids = f.get_tensor(_KEY).numpy()
    if table_ids.dtype != np.int64 or (table_size and not 0 <= table_ids.min() <= table_ids.max() < tokenizer_size) \
            or len(np.unique(table_ids)) != table_size:
        raise error(f"{path}: the ids must be distinct tokenizer ids below {tokenizer_size}")
    return table_ids
