"""A student's embedding table may hold only the pieces its cache used (a SentencePiece teacher has 250k):
vocabulary.safetensors lists the tokenizer id of each table row. A piece the table lacks is read as the table's
pieces that spell it, and as the unknown token only where they cannot."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from distilcache.weighting.tokens import positions_within, starts_of

VOCABULARY_FILE = "vocabulary.safetensors"  # absent: the table holds the whole tokenizer, row i is token id i
_KEY = "token_ids"


def lookup_table(table_ids: np.ndarray, tokenizer_size: int, unknown_row: int) -> np.ndarray:
    """Tokenizer id -> table row; an id the table lacks gets unknown_row."""
    lookup = np.full(tokenizer_size, unknown_row, dtype=np.int64)
    lookup[table_ids] = np.arange(len(table_ids))
    return lookup


def unknown_row(table_ids: np.ndarray, unk_id: int | None, fallback_row: int) -> int:
    """The table row of the unknown token, fallback_row when the table has none."""
    rows = np.flatnonzero(table_ids == unk_id) if unk_id is not None else []
    return int(rows[0]) if len(rows) else fallback_row


@dataclass
class TableRows:
    """Texts as rows of the embedding table, end to end: text i's are rows[starts[i]:starts[i] + counts[i]]."""

    rows: np.ndarray  # int64
    weights: np.ndarray  # float32 aligned with rows; each text's sum to 1
    counts: np.ndarray  # int64, rows per text

    @property
    def starts(self) -> np.ndarray:
        return starts_of(self.counts)


class PieceReader:
    """Reads tokenizer ids as rows of a table that holds only some of the tokenizer's pieces. A piece it lacks is
    spelled with the table's pieces, the longest that fits first, from the left, as WordPiece splits a word
    ("▁1943" as "▁19" "43"): a year, a name or a rare word the cache never held still reads as its parts, which the
    student learned, not as one unknown token that two different years or names would share. A piece the table
    cannot spell whole reads as the unknown token."""

    def __init__(self, table_ids: np.ndarray, tokenizer: Any, fallback_row: int):
        self.table_ids = table_ids
        self.unknown_row = unknown_row(table_ids, tokenizer.unk_token_id, fallback_row)
        self.lookup = lookup_table(table_ids, len(tokenizer), self.unknown_row)
        self.held = np.zeros(len(tokenizer), dtype=bool)
        self.held[table_ids] = True
        self._tokenizer = tokenizer
        specials = set(tokenizer.all_special_ids)
        pieces = tokenizer.convert_ids_to_tokens(table_ids.tolist())
        self._row_of = {piece: row for row, (token_id, piece) in enumerate(zip(table_ids.tolist(), pieces))
                        if token_id not in specials}
        self._longest = max(map(len, self._row_of), default=0)  # no longer candidate can match
        # WordPiece marks a piece inside a word ("##"); a SentencePiece piece marks the start of a word instead ("▁")
        self._continuation = getattr(tokenizer.backend_tokenizer.model, "continuing_subword_prefix", None) or ""
        self._spelled: dict[int, list[int]] = {}

    def spell(self, token_id: int) -> list[int]:
        """The table rows that spell the piece token_id (its own row when the table holds it)."""
        if self.held[token_id]:
            return [int(self.lookup[token_id])]
        if token_id not in self._spelled:
            self._spelled[token_id] = self._spell(self._tokenizer.convert_ids_to_tokens(token_id))
        return self._spelled[token_id]

    def _spell(self, piece: str) -> list[int]:
        marker = self._continuation if self._continuation and piece.startswith(self._continuation) else ""
        body, rows, at = piece[len(marker):], [], 0
        while at < len(body):
            prefix = marker if at == 0 else self._continuation
            for end in range(min(len(body), at + self._longest), at, -1):
                row = self._row_of.get(prefix + body[at:end])
                if row is not None:
                    rows.append(row)
                    at = end
                    break
            else:
                return [self.unknown_row]
        return rows or [self.unknown_row]

    def spread(self, table: torch.Tensor) -> torch.Tensor:
        """The table as one row per tokenizer id: a held piece's own row, a lacking piece the mean of the rows that
        spell it (what a model that reads one row per piece can come closest to)."""
        rows = table[torch.from_numpy(self.lookup)].clone()
        missing = np.flatnonzero(~self.held)
        parts = [self.spell(int(token_id)) for token_id in missing]
        sizes = np.array([len(p) for p in parts], dtype=np.int64)
        owner = torch.from_numpy(np.repeat(np.arange(len(missing)), sizes))
        flat = torch.tensor([row for p in parts for row in p], dtype=torch.long)
        sums = torch.zeros(len(missing), table.shape[1], dtype=table.dtype).index_add_(0, owner, table[flat])
        rows[torch.from_numpy(missing)] = sums / torch.from_numpy(sizes).to(table.dtype)[:, None]
        return rows

    def read(self, token_ids: np.ndarray, weights: np.ndarray, counts: np.ndarray, limit: int) -> TableRows:
        """The texts' tokens (flat, counts per text) as table rows; a text keeps at most max(its count, limit) rows.
        A spelled piece's weight is shared by its parts (under uniform weights too: a long name spelled in many
        short pieces weighs what its one piece did, not what many words would)."""
        token_ids, counts = np.asarray(token_ids, dtype=np.int64), np.asarray(counts, dtype=np.int64)
        missing = np.flatnonzero(~self.held[token_ids])
        if len(missing) == 0:
            return TableRows(self.lookup[token_ids], np.asarray(weights, dtype=np.float32), counts)
        parts = [self.spell(int(token_ids[i])) for i in missing]
        sizes = np.ones(len(token_ids), dtype=np.int64)
        sizes[missing] = [len(p) for p in parts]
        rows = np.repeat(self.lookup[token_ids], sizes)
        firsts = np.cumsum(sizes) - sizes
        for first, spelled in zip(firsts[missing], parts):
            rows[first : first + len(spelled)] = spelled
        text = np.repeat(np.repeat(np.arange(len(counts)), counts), sizes)
        shares = np.repeat(np.asarray(weights, dtype=np.float64) / sizes, sizes)
        kept = positions_within(np.bincount(text, minlength=len(counts))) < np.maximum(counts, limit)[text]
        rows, text, shares = rows[kept], text[kept], shares[kept]
        new_counts = np.bincount(text, minlength=len(counts)).astype(np.int64)
        if not kept.all():  # a text cut to the limit weighs 1 again
            sums = np.bincount(text, weights=shares, minlength=len(counts))
            shares = shares / np.where(sums > 0, sums, 1.0)[text]
        return TableRows(rows, shares.astype(np.float32), new_counts)


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
