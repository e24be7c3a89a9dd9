"""Texts -> tokenizer tokens with their LTD-BERT weights: what precompute stores and students encode."""

from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

from distilcache.weighting.idf import IdfTable
from distilcache.weighting.weights import spans_weights

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class WeightedTokens:
    input_ids: list[int]  # with special tokens, as a teacher reads them
    content_positions: np.ndarray  # where the non-special tokens sit in input_ids
    token_ids: np.ndarray  # int32, the non-special tokens
    weights: np.ndarray  # float32 aligned with token_ids, sum 1 (empty when no token is left)
    truncated: bool


def weighted_tokens(
    texts: list[str], tokenizer: "PreTrainedTokenizerBase", max_length: int, idf: IdfTable | None, smoothing: float
) -> list[WeightedTokens]:
    """Tokenise with offsets (truncating to max_length tokens, specials included) and weight each
    non-special token by the IDF rule; with idf=None every token weighs the same."""
    if not texts:  # the tokenizer fails on an empty batch
        return []
    # the Rust tokenizer itself: what tokenizer(...) runs, without converting every field to Python lists
    backend = tokenizer.backend_tokenizer
    backend.no_padding()
    backend.enable_truncation(max_length)
    encodings = backend.encode_batch(texts)
    # the whole batch as flat arrays, so the weighting is a few numpy calls instead of a few per text
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    total = int(lengths.sum())
    ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int32, count=total)
    content = ~np.fromiter(chain.from_iterable(e.special_tokens_mask for e in encodings), dtype=bool, count=total)
    row_starts = np.concatenate(([0], np.cumsum(lengths)))
    counts = np.add.reduceat(content, row_starts[:-1]) if total else np.zeros(len(texts), dtype=np.int64)
    counts = np.where(lengths > 0, counts, 0)  # reduceat reads an empty row as one element
    if idf is not None:
        char_values = [idf.char_idf(text) for text in texts]
        char_starts = np.concatenate(([0], np.cumsum([len(v) for v in char_values])))[:-1]
        offsets = np.fromiter(chain.from_iterable(chain.from_iterable(e.offsets for e in encodings)), dtype=np.int64,
                              count=2 * total).reshape(-1, 2)
        spans = (offsets + np.repeat(char_starts, lengths)[:, None])[content]
        char_w = np.fromiter(chain.from_iterable(char_values), dtype=np.float64, count=int(sum(map(len, char_values))))
        weights = spans_weights(char_w + smoothing, spans, counts)
    else:
        weights = [np.full(n, 1.0 / n, dtype=np.float32) if n else np.zeros(0, dtype=np.float32) for n in counts]
    result = []
    for i, encoding in enumerate(encodings):
        start, end = row_starts[i], row_starts[i + 1]
        row_content = content[start:end]
        result.append(
            WeightedTokens(
                input_ids=encoding.ids,
                content_positions=np.flatnonzero(row_content),
                token_ids=ids[start:end][row_content],
                weights=weights[i],
                truncated=len(encoding.overflowing) > 0,
            )
        )
    return result
