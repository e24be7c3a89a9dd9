"""Texts -> tokenizer tokens with their LTD-BERT weights: what precompute stores and students encode."""

from dataclasses import dataclass
from itertools import chain, repeat
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Tokenizer  # the Rust tokenizer a Hugging Face fast tokenizer wraps

from distilcache.weighting.idf import IdfTable
from distilcache.weighting.weights import spans_weights

if TYPE_CHECKING:
    from tokenizers import Encoding
    from transformers import PreTrainedTokenizerBase

# A text is cut to this many characters per token of max_length before it is tokenised: the tokenizer
# keeps every overflow window of a long text, so its memory grows with the whole text, not the kept part.
# A token covers a few characters; this leaves room for whitespace and long words.
CHARS_PER_TOKEN = 8
# the code points str.isspace() is true for: a SentencePiece piece ("▁word", or "▁" alone) covers the space
# before a word, and a space says nothing about a sentence, so it weighs nothing (WordPiece never covers one)
WHITESPACE = np.array([*range(9, 14), *range(28, 33), 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
                       0x202F, 0x205F, 0x3000], dtype=np.uint32)


@dataclass
class WeightedTokens:
    input_ids: list[int]  # with special tokens, as a teacher reads them
    content_positions: np.ndarray  # where the non-special tokens sit in input_ids
    token_ids: np.ndarray  # int32, the non-special tokens
    weights: np.ndarray  # float32 aligned with token_ids, sum 1 (empty when no token is left)
    truncated: bool


@dataclass
class WeightedBatch:
    """A batch of texts as flat arrays: text i's non-special tokens are token_ids[starts[i]:starts[i] + counts[i]]."""

    encodings: list["Encoding"]  # the tokenizer's own output, special tokens included
    input_ids: np.ndarray  # int32, every token of every encoding end to end, special tokens included
    lengths: np.ndarray  # int64, tokens per encoding, special tokens included
    content: np.ndarray  # bool over all tokens of all encodings end to end: not a special token
    token_ids: np.ndarray  # int32, the non-special tokens
    weights: np.ndarray  # float32 aligned with token_ids; each text's sum to 1
    counts: np.ndarray  # int64, non-special tokens per text
    truncated: np.ndarray  # bool per text: cut to max_length tokens (or first to max_length * CHARS_PER_TOKEN characters)

    @property
    def starts(self) -> np.ndarray:
        return starts_of(self.counts)

    def per_text(self, values: np.ndarray, content: bool = True) -> list[np.ndarray]:
        """values laid out like token_ids (content=True) or like input_ids (False), cut into one view per text."""
        return split_by_lengths(values, self.counts if content else self.lengths)

    def content_positions(self) -> list[np.ndarray]:
        """Per text, where its non-special tokens sit in its input ids."""
        return self.per_text(positions_within(self.lengths)[self.content])


def starts_of(lengths: np.ndarray) -> np.ndarray:
    """Where each of consecutive runs of lengths[0], lengths[1], ... items starts (int64)."""
    return (np.cumsum(lengths) - lengths).astype(np.int64)


def positions_within(lengths: np.ndarray) -> np.ndarray:
    """For consecutive runs of lengths[0], lengths[1], ... items: each item's position within its run."""
    return np.arange(int(np.sum(lengths))) - np.repeat(starts_of(lengths), lengths)


def split_by_lengths(values: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """values cut into consecutive views of lengths[0], lengths[1], ... items."""
    ends = np.cumsum(lengths).tolist()
    return [values[start:end] for start, end in zip([0] + ends[:-1], ends)]


def weighted_batch(
    texts: list[str], tokenizer: "PreTrainedTokenizerBase | Tokenizer", max_length: int, idf: IdfTable | None, smoothing: float,
    skip: int = 0,
) -> WeightedBatch:
    """Tokenise with offsets (truncating to max_length tokens, specials included) and weight each
    non-special token by the IDF rule; with idf=None every token of a text weighs the same. The first
    `skip` characters of every text (a teacher's input prefix, such as e5's "query: ") and whitespace
    weigh nothing, and the IDF weights come from the rest of the text alone.
    The whole batch is weighted in a few numpy calls; a text's weights do not depend on its batch. The tokenizer is a
    Hugging Face fast tokenizer or the Rust tokenizer it wraps."""
    if not texts:  # the tokenizer fails on an empty batch
        empty = np.zeros(0, dtype=np.int64)
        return WeightedBatch([], empty.astype(np.int32), empty, empty.astype(bool), empty.astype(np.int32), empty.astype(np.float32),
                             empty, empty.astype(bool))
    limit = max_length * CHARS_PER_TOKEN
    cut = np.fromiter((len(text) > limit for text in texts), dtype=bool, count=len(texts))
    if cut.any():
        texts = [text[:limit] for text in texts]
    # the Rust tokenizer itself: what tokenizer(...) runs, without converting every field to Python lists
    backend = tokenizer if isinstance(tokenizer, Tokenizer) else tokenizer.backend_tokenizer
    backend.no_padding()
    backend.enable_truncation(max_length)
    encodings = backend.encode_batch(texts)
    truncated = cut | np.fromiter((len(e.overflowing) > 0 for e in encodings), dtype=bool, count=len(encodings))
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    total = int(lengths.sum())
    ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int32, count=total)
    content = ~np.fromiter(chain.from_iterable(e.special_tokens_mask for e in encodings), dtype=bool, count=total)
    text_of_token = np.repeat(np.arange(len(texts)), lengths)
    counts = np.bincount(text_of_token[content], minlength=len(texts)).astype(np.int64)
    if idf is not None:
        text_lengths = np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts))
        char_starts = np.concatenate(([0], np.cumsum(text_lengths)))
        offsets = np.fromiter(chain.from_iterable(chain.from_iterable(e.offsets for e in encodings)), dtype=np.int64,
                              count=2 * total).reshape(-1, 2)
        spans = (offsets + char_starts[text_of_token][:, None])[content]
        values = chain.from_iterable(chain(repeat(0.0, min(skip, len(text))), idf.char_idf(text[skip:])) for text in texts)
        char_w = np.fromiter(values, dtype=np.float64, count=int(char_starts[-1])) + smoothing
        position = positions_within(text_lengths)
        codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        char_w[(position < skip) | np.isin(codes, WHITESPACE)] = 0.0
        weights = spans_weights(char_w, spans, counts)
    else:
        weights = (1.0 / np.maximum(counts, 1))[text_of_token[content]].astype(np.float32)
    return WeightedBatch(encodings, ids, lengths, content, ids[content], weights, counts, truncated)


def weighted_tokens(
    texts: list[str], tokenizer: "PreTrainedTokenizerBase", max_length: int, idf: IdfTable | None, smoothing: float,
    skip: int = 0,
) -> list[WeightedTokens]:
    """weighted_batch, one WeightedTokens per text."""
    batch = weighted_batch(texts, tokenizer, max_length, idf, smoothing, skip)
    return [WeightedTokens(input_ids=encoding.ids, content_positions=positions, token_ids=ids, weights=weights, truncated=bool(cut))
            for encoding, positions, ids, weights, cut in zip(batch.encodings, batch.content_positions(), batch.per_text(batch.token_ids),
                                                              batch.per_text(batch.weights), batch.truncated)]
