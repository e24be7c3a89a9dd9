"""CPU-side work for one shard: tokenise with offsets, weight tokens, cut into length-sorted batches.

A row has two sides: what the teacher encodes (its target text when it has one, else its text) and
what the student reads (always its text, through the student tokenizer when the cache has one).
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from distilcache.inputs import Record
from distilcache.teacher.config import PoolingConfig
from distilcache.teacher.pooling import position_weights
from distilcache.weighting import IdfTable
from distilcache.weighting.tokens import weighted_batch


@dataclass
class PreparedRow:
    id: str
    text: str
    target_text: str | None  # the text the teacher encoded instead of text
    input_ids: np.ndarray  # int32, the teacher's input, with special tokens
    token_ids: np.ndarray  # int32 student tokens of text, without special tokens
    weights: np.ndarray  # float32 student weights aligned with token_ids, sum 1
    position_weights: np.ndarray  # float32 pooling weights aligned with input_ids
    truncated: bool  # the teacher's input or the student's tokens were cut to max_length
    # int64 positions in input_ids of token_ids, when the teacher read exactly those tokens (no target text, the
    # same pieces after any prefix); else empty. Only computed when asked for (token states)
    state_positions: np.ndarray


@dataclass
class Batch:
    rows: list[int]  # indices into the shard's rows
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    weights: torch.Tensor  # (batch, tokens) pooling weights


def prepare_rows(
    records: list[Record], tokenizer: PreTrainedTokenizerBase, pooling: PoolingConfig, idf: IdfTable | None,
    student_tokenizer: PreTrainedTokenizerBase | None = None, align: bool = False,
) -> list[PreparedRow]:
    """Teacher inputs from the prefix and each record's target (or text) through the teacher's tokenizer;
    student tokens from its text alone through student_tokenizer (None: the teacher's, and one
    tokenisation serves both sides of a row without a target or prefix). align: find each row's
    state_positions. The rows' arrays are views of a few arrays made for all of them at once."""
    # mean and CLS pooling: students pool uniformly, so their stored weights are uniform
    weight_idf = idf if pooling.mode == "idf" else None
    teacher = weighted_batch([pooling.prefix + r.teacher_text for r in records], tokenizer, pooling.max_length,
                             weight_idf, pooling.smoothing, skip=len(pooling.prefix))
    separate_student = bool(pooling.prefix) or student_tokenizer is not None
    own = [i for i, r in enumerate(records) if r.target_text is not None or separate_student]
    token_ids, weights = teacher.per_text(teacher.token_ids), teacher.per_text(teacher.weights)
    truncated = teacher.truncated.copy()
    separate = weighted_batch([records[i].text for i in own], student_tokenizer or tokenizer, pooling.max_length,
                              weight_idf, pooling.smoothing)
    for i, ids, row_weights, cut in zip(own, separate.per_text(separate.token_ids), separate.per_text(separate.weights),
                                        separate.truncated):
        token_ids[i], weights[i] = ids, row_weights
        truncated[i] |= cut
    input_ids = teacher.per_text(teacher.input_ids, content=False)
    pooling_weights = teacher.per_text(position_weights(pooling.mode, teacher.lengths, teacher.content, teacher.weights,
                                                        teacher.counts), content=False)
    positions = [_NO_POSITIONS] * len(records)
    if align:
        content_positions = teacher.content_positions()
        positions = [_state_positions(input_ids[i], content_positions[i], token_ids[i]) if r.target_text is None else _NO_POSITIONS
                     for i, r in enumerate(records)]
    return [PreparedRow(r.id, r.text, r.target_text, input_ids[i], token_ids[i], weights[i], pooling_weights[i],
                        bool(truncated[i]), positions[i])
            for i, r in enumerate(records)]


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


def length_sorted_batches(rows: list[PreparedRow], batch_size: int, pad_id: int, only: Sequence[int] | None = None) -> Iterator[Batch]:
    """Batches of similar length (longest first, so a too-large batch fails early) to cut padding; of
    the rows at the indices `only` when given, else of every row."""
    order = sorted(range(len(rows)) if only is None else only, key=lambda i: len(rows[i].input_ids), reverse=True)
    for start in range(0, len(order), batch_size):
        members = order[start : start + batch_size]
        width = len(rows[members[0]].input_ids)
        input_ids = np.full((len(members), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(members), width), dtype=np.int64)
        weights = np.zeros((len(members), width), dtype=np.float32)
        for b, i in enumerate(members):
            n = len(rows[i].input_ids)
            input_ids[b, :n] = rows[i].input_ids
            mask[b, :n] = 1
            weights[b, :n] = rows[i].position_weights
        yield Batch(members, torch.from_numpy(input_ids), torch.from_numpy(mask), torch.from_numpy(weights))
