"""The student's vocabulary when the teacher's tokenizer does not cover the student's language.

A teacher that reads one language (all-MiniLM-L6-v2 knows 488 CJK characters) turns most Chinese
characters into [UNK]. A student that must read Chinese gets the teacher's tokenizer plus one added
token per CJK character of its corpus that the teacher maps to [UNK]. BERT-style tokenizers already
split CJK text into single characters, so the added tokens change ids only, never offsets, and the
LTD-BERT weights stay the same. The result is a plain Hugging Face tokenizer directory.
"""

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

RULE = "teacher tokenizer + one added token per CJK character of the texts that the teacher tokenizes as [UNK]"
# A vocabulary larger than this (a SentencePiece teacher's 250k pieces) is cut to the pieces a cache uses,
# for its token vectors and a student's embedding table: per-vocabulary work would otherwise dominate
LARGE_VOCABULARY = 1 << 16

# the CJK ideograph blocks BERT's tokenizer splits into single characters
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def count_cjk(text: str, counts: Counter) -> None:
    counts.update(c for c in text if is_cjk(c))


def uncovered_chars(counts: Counter, tokenizer: "PreTrainedTokenizerBase") -> list[str]:
    """The counted characters the tokenizer reads as its unknown token: most frequent first, ties by
    code point, so the same corpus always gives the same ids."""
    if not counts or tokenizer.unk_token_id is None:
        return []
    chars = sorted(counts, key=lambda c: (-counts[c], ord(c)))
    encoded = tokenizer(chars, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return [c for c, ids in zip(chars, encoded) if ids == [tokenizer.unk_token_id]]


def extend_tokenizer(tokenizer: "PreTrainedTokenizerBase", chars: Iterable[str]) -> "PreTrainedTokenizerBase":
    """Add the characters as tokens (ids len(tokenizer), len(tokenizer) + 1, ... in order); in place."""
    chars = list(chars)
    added = tokenizer.add_tokens(chars)
    if added != len(chars):
        raise ValueError(f"only {added} of {len(chars)} characters could be added to the tokenizer (duplicates?)")
    return tokenizer
