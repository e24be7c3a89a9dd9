"""CPU-side work for one window of rows: tokenise with offsets, weight tokens, cut into length-sorted batches.

A row has two sides: what the teacher encodes (its target text when it has one, else its text) and
what the student reads (always its text, through the student tokenizer when the cache has one).

Rows are kept as a few flat arrays, never one object each: a window's rows cross between processes as
those arrays, and a shard's columns are made from them. Plain numpy, no torch: the processes that
prepare windows import this module and what it needs, nothing heavier.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from distilcache.inputs import Record
from distilcache.teacher.config import PoolingConfig
from distilcache.weighting import IdfTable
from distilcache.weighting.tokens import Tokenizer, weighted_batch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Ragged:
    """Rows of different lengths laid end to end: row i is values[offsets[i]:offsets[i + 1]]."""

    values: np.ndarray
    offsets: np.ndarray  # int64, one more than the rows, from 0

    @classmethod
    def from_lengths(cls, values: np.ndarray, lengths: np.ndarray) -> "Ragged":
        return cls(values, np.concatenate(([0], np.cumsum(lengths, dtype=np.int64))))

    @classmethod
    def from_rows(cls, rows: list[np.ndarray], dtype: type) -> "Ragged":
        values = np.concatenate(rows).astype(dtype, copy=False) if rows else np.zeros(0, dtype=dtype)
        return cls.from_lengths(values, np.array([len(row) for row in rows], dtype=np.int64))

    @classmethod
    def concat(cls, parts: list["Ragged"]) -> "Ragged":
        starts = np.cumsum([0] + [len(part.values) for part in parts[:-1]])
        offsets = np.concatenate([[0], *(part.offsets[1:] + start for part, start in zip(parts, starts))])
        return cls(np.concatenate([part.values for part in parts]), offsets.astype(np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> np.ndarray:
        return self.values[self.offsets[row] : self.offsets[row + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, rows: np.ndarray) -> "Ragged":
        """The rows at the indices `rows`, in that order."""
        lengths = self.lengths[rows]
        taken = Ragged.from_lengths(self.values[:0], lengths)
        gather = np.repeat(self.offsets[:-1][rows] - taken.offsets[:-1], lengths) + np.arange(taken.offsets[-1])
        return Ragged(self.values[gather], taken.offsets)

    def replaced(self, rows: np.ndarray, other: "Ragged") -> "Ragged":
        """These rows with row rows[j] replaced by other's row j."""
        index = np.arange(len(self))
        index[rows] = len(self) + np.arange(len(rows))
        return Ragged.concat([self, other]).take(index)


@dataclass
class PreparedRows:
    """A window's (or a shard's) rows: row i of every field is record i's."""

    records: list[Record]  # empty where the rows were prepared elsewhere: their owner keeps them
    input_ids: Ragged  # int32, the teacher's input, with special tokens
    position_weights: Ragged  # float32 pooling weights aligned with input_ids
    token_ids: Ragged  # int32 student tokens of text, without special tokens
    weights: Ragged  # float32 student weights aligned with token_ids, each row's sum 1 (empty when no token is left)
    truncated: np.ndarray  # bool: the teacher's input or the student's tokens were cut to max_length
    # int64 positions in input_ids of token_ids, when the teacher read exactly those tokens (no target text, the
    # same pieces after any prefix); else empty. Only computed when asked for (token states)
    state_positions: Ragged

    def __len__(self) -> int:
        return len(self.truncated)

    @classmethod
    def concat(cls, parts: list["PreparedRows"]) -> "PreparedRows":
        return cls([record for part in parts for record in part.records],
                   *(Ragged.concat([getattr(part, name) for part in parts]) for name in ("input_ids", "position_weights",
                                                                                        "token_ids", "weights")),
                   np.concatenate([part.truncated for part in parts]), Ragged.concat([part.state_positions for part in parts]))


@dataclass
class Batch:
    rows: np.ndarray  # int64 indices into the window's rows
    input_ids: np.ndarray  # int64 (batch, tokens)
    attention_mask: np.ndarray  # int64 (batch, tokens)
    weights: np.ndarray  # float32 (batch, tokens) pooling weights


def prepare_rows(
    records: list[Record], tokenizer: "PreTrainedTokenizerBase | Tokenizer", pooling: PoolingConfig, idf: IdfTable | None,
    student_tokenizer: "PreTrainedTokenizerBase | Tokenizer | None" = None, align: bool = False,
) -> PreparedRows:
    """Teacher inputs from the prefix and each record's target (or text) through the teacher's tokenizer;
    student tokens from its text alone through student_tokenizer (None: the teacher's, and one
    tokenisation serves both sides of a row without a target or prefix). align: find each row's
    state_positions."""
    # mean and CLS pooling: students pool uniformly, so their stored weights are uniform
    weight_idf = idf if pooling.mode == "idf" else None
    teacher = weighted_batch([pooling.prefix + r.teacher_text for r in records], tokenizer, pooling.max_length,
                             weight_idf, pooling.smoothing, skip=len(pooling.prefix))
    separate_student = bool(pooling.prefix) or student_tokenizer is not None
    own = np.array([i for i, r in enumerate(records) if r.target_text is not None or separate_student], dtype=np.int64)
    separate = weighted_batch([records[i].text for i in own], student_tokenizer or tokenizer, pooling.max_length,
                              weight_idf, pooling.smoothing)

    def student_side(shared: np.ndarray, own_values: np.ndarray) -> Ragged:
        """Per row, the teacher tokenisation's values, or for the rows in own their own tokenisation's."""
        return Ragged.from_lengths(shared, teacher.counts).replaced(own, Ragged.from_lengths(own_values, separate.counts))

    token_ids, weights = student_side(teacher.token_ids, separate.token_ids), student_side(teacher.weights, separate.weights)
    truncated = teacher.truncated.copy()
    truncated[own] |= separate.truncated
    input_ids = Ragged.from_lengths(teacher.input_ids, teacher.lengths)
    pooling_weights = Ragged.from_lengths(position_weights(pooling.mode, teacher.lengths, teacher.content, teacher.weights,
                                                           teacher.counts), teacher.lengths)
    positions = Ragged.from_lengths(np.zeros(0, dtype=np.int64), np.zeros(len(records), dtype=np.int64))
    if align:
        content_positions = teacher.content_positions()
        positions = Ragged.from_rows([_state_positions(input_ids[i], content_positions[i], token_ids[i]) if r.target_text is None
                                      else _NO_POSITIONS for i, r in enumerate(records)], np.int64)
    return PreparedRows(records, input_ids, pooling_weights, token_ids, weights, truncated, positions)


def position_weights(mode: str, lengths: np.ndarray, content: np.ndarray, content_weights: np.ndarray,
                     counts: np.ndarray) -> np.ndarray:
    """Weights over every input position (special tokens included) of rows laid end to end: lengths[i] positions
    for row i, content marks its non-special tokens (counts[i] of them), content_weights are their weights.

    idf:  the IDF weights on content tokens, 0 on special tokens;
    mean: the attention-masked mean over every position (the sentence-transformers convention);
    cls:  all weight on the first position.
    A row left with no content token (say, only zero-width characters) falls back to the mean,
    so it still gets a finite vector.
    """
    row = np.repeat(np.arange(len(lengths)), lengths)
    if mode == "cls":
        weights = np.zeros(len(row), dtype=np.float32)
        weights[(np.cumsum(lengths) - lengths)[lengths > 0]] = 1.0
        return weights
    weights = (1.0 / np.maximum(lengths, 1))[row].astype(np.float32)
    if mode == "idf":
        weights[counts[row] > 0] = 0.0
        weights[content] = content_weights
    return weights


_NO_POSITIONS = np.zeros(0, dtype=np.int64)


def _state_positions(input_ids: np.ndarray, content_positions: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
    """Where the student's tokens sit in the teacher's input: its last content tokens (after a prefix's), when
    they are the same pieces; else none."""
    count = len(token_ids)
    if count == 0 or count > len(content_positions):
        return _NO_POSITIONS
    positions = content_positions[len(content_positions) - count:]
    same = np.array_equal(input_ids[positions], token_ids)
    return positions.astype(np.int64) if same else _NO_POSITIONS


def length_sorted_batches(rows: PreparedRows, batch_size: int, pad_id: int, only: Sequence[int] | None = None) -> Iterator[Batch]:
    """Batches of similar length (longest first, so a too-large batch fails early) to cut padding; of
    the rows at the indices `only` when given, else of every row."""
    lengths = rows.input_ids.lengths
    chosen = np.arange(len(rows)) if only is None else np.asarray(only, dtype=np.int64)
    order = chosen[np.argsort(-lengths[chosen], kind="stable")]  # ties keep their order
    for start in range(0, len(order), batch_size):
        members = order[start : start + batch_size]
        counts = lengths[members]
        place = np.repeat(np.arange(len(members)), counts), np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        source = np.repeat(rows.input_ids.offsets[members], counts) + place[1]
        shape = (len(members), int(counts[0]))
        input_ids = np.full(shape, pad_id, dtype=np.int64)
        input_ids[place] = rows.input_ids.values[source]
        mask = np.zeros(shape, dtype=np.int64)
        mask[place] = 1
        weights = np.zeros(shape, dtype=np.float32)
        weights[place] = rows.position_weights.values[source]
        yield Batch(members, input_ids, mask, weights)
