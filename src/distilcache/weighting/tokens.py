"""Texts -> tokenizer tokens with their LTD-BERT weights: what precompute stores and students encode."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from distilcache.weighting.idf import IdfTable
from distilcache.weighting.weights import char_weights, token_weights

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
    # the Rust tokenizer itself: what tokenizer(...) runs, without converting every field to Python
    # lists (about a tenth of the weighting time)
    backend = tokenizer.backend_tokenizer
    backend.no_padding()
    backend.enable_truncation(max_length)
    result = []
    for text, encoding in zip(texts, backend.encode_batch(texts)):
        content_positions = np.flatnonzero(~np.asarray(encoding.special_tokens_mask, dtype=bool))
        if idf is not None:
            offsets = [encoding.offsets[i] for i in content_positions]
            weights = token_weights(char_weights(text, idf, smoothing), offsets)
        else:
            weights = np.full(len(content_positions), 1.0 / max(len(content_positions), 1), dtype=np.float32)
        result.append(
            WeightedTokens(
                input_ids=encoding.ids,
                content_positions=content_positions,
                token_ids=np.asarray(encoding.ids, dtype=np.int32)[content_positions],
                weights=weights,
                truncated=len(encoding.overflowing) > 0,
            )
        )
    return result
