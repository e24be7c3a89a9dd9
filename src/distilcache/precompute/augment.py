"""Teacher-side augmentation (`precompute --augment K`): after each row, K variants of its text, which
the teacher encodes like any row. The teacher runs once anyway, so more (text, vector) pairs cost
teacher forwards, not labels; students see sentences shaped unlike the corpus's.

A variant is one of: word dropout, a deleted span, a crop, a local shuffle of the words, or the row
joined after the row before it. Words are jieba's (so Chinese and English alike). What a variant is
depends only on the seed, the row's id and k, so every engine, partition and resume makes the same.
Rows with a target (parallel text) get no variants: the two sides could not be cut alike."""

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from distilcache.cache_format.split import VARIANT_IDS, variant_id
from distilcache.inputs import Record
from distilcache.weighting.segment import segment

OPERATIONS = ("word_dropout", "span_deletion", "crop", "local_shuffle", "join")
DROP_PROBABILITY = 0.15  # word dropout
SPAN_SHARE = (0.1, 0.3)  # span deletion: the share of the words deleted
CROP_SHARE = (0.5, 0.9)  # crop: the share of the words kept
SHUFFLE_DISTANCE = 3.0  # local shuffle: a word moves past fewer than this many others
MIN_WORDS = {"word_dropout": 2, "span_deletion": 3, "crop": 4, "local_shuffle": 3}


def describe(copies: int, seed: int) -> dict[str, Any] | None:
    """The manifest's entry: None without variants, so caches made before augmentation compare equal."""
    if copies == 0:
        return None
    return {"copies": copies, "seed": seed, "operations": list(OPERATIONS), "words": "jieba", "ids": VARIANT_IDS}


def variant_count(record: Record, copies: int) -> int:
    return 0 if record.target_text is not None else copies


def with_variants(records: Iterable[Record], copies: int, seed: int) -> Iterator[Record]:
    """Every record, each followed by its variants."""
    previous: str | None = None
    for record in records:
        yield record
        for k in range(1, variant_count(record, copies) + 1):
            rng = random.Random(f"{seed}\0{record.id}\0{k}")  # a str seed draws the same in every process
            yield Record(variant_id(record.id, k), variant(record.text, previous, rng), record.file)
        if record.target_text is None:
            previous = record.text


@dataclass(frozen=True)
class _Word:
    text: str
    spaced: bool  # whitespace touched it in the source: it keeps a space to a neighbour that also had one


def _words(text: str) -> list[_Word]:
    tokens = segment(text)
    words = []
    for i, token in enumerate(tokens):
        if token.isspace():
            continue
        before = i > 0 and tokens[i - 1].isspace()
        after = i + 1 < len(tokens) and tokens[i + 1].isspace()
        words.append(_Word(token, before or after))
    return words


def _render(words: list[_Word]) -> str:
    out = []
    for i, word in enumerate(words):
        if i and word.spaced and words[i - 1].spaced:
            out.append(" ")
        out.append(word.text)
    return "".join(out)


def _joined(first: str, second: str) -> str:
    """Two texts as one: a space between them unless the first ends in a CJK character or mark."""
    return first + ("" if first and ord(first[-1]) >= 0x2E80 else " ") + second


def variant(text: str, previous: str | None, rng: random.Random) -> str:
    """One variant of text, drawn by rng among the operations its length allows (join needs a previous
    row; a one-word first row is its own variant)."""
    words = _words(text)
    allowed = [name for name in OPERATIONS if len(words) >= MIN_WORDS.get(name, 0)]
    if previous is None:
        allowed.remove("join")
    if not allowed:
        return text
    operation = rng.choice(allowed)
    n = len(words)
    if operation == "join":
        return _joined(previous, text)
    if operation == "word_dropout":
        kept = [w for w in words if rng.random() >= DROP_PROBABILITY]
        return _render(kept or [rng.choice(words)])
    if operation == "span_deletion":
        length = max(1, round(n * rng.uniform(*SPAN_SHARE)))
        start = rng.randrange(n - length + 1)
        return _render(words[:start] + words[start + length :])
    if operation == "crop":
        length = max(2, round(n * rng.uniform(*CROP_SHARE)))
        start = rng.randrange(n - length + 1)
        return _render(words[start : start + length])
    keys = [i + rng.uniform(0, SHUFFLE_DISTANCE) for i in range(n)]  # local_shuffle
    return _render([w for _, w in sorted(zip(keys, words), key=lambda pair: pair[0])])
