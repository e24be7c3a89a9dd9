"""Teacher-side augmentation (`precompute --augment K`): after each row, K variants of its text, which
the teacher encodes like any row. The teacher runs once anyway, so more (text, vector) pairs cost
teacher forwards, not labels; students see sentences shaped unlike the corpus's.

A variant is one of: word dropout, a deleted span, a crop, a local shuffle of the words, the row joined
after the row before it, or words replaced by words of the teacher's vocabulary (so students meet, with
the teacher's vectors, words the corpus never holds). Words are jieba's (so Chinese and English alike).
What a variant is depends only on the seed, the row's id, k and the teacher's vocabulary, so every
engine, partition and resume makes the same. Rows with a target (parallel text) get no variants: the
two sides could not be cut alike."""

import functools
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from distilcache.cache_format.hashing import sha256_json
from distilcache.cache_format.split import VARIANT_IDS, variant_id
from distilcache.inputs import Record
from distilcache.precompute.config import AUGMENT_OPERATIONS, PrecomputeConfig
from distilcache.weighting.segment import segment

DROP_PROBABILITY = 0.15  # word dropout
REPLACE_PROBABILITY = 0.15  # word replacement
SPAN_SHARE = (0.1, 0.3)  # span deletion: the share of the words deleted
CROP_SHARE = (0.5, 0.9)  # crop: the share of the words kept
SHUFFLE_DISTANCE = 3.0  # local shuffle: a word moves past fewer than this many others
MIN_WORDS = {"word_dropout": 2, "span_deletion": 3, "crop": 4, "local_shuffle": 3, "word_replacement": 1}
_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_WORD = re.compile(r"[^\W\d_]+")  # letters only: digits and punctuation are never replaced, nor replacements


def _script(word: str) -> str:
    """A word is replaced by one of the same script: CJK, ASCII letters, or any other letters."""
    return "cjk" if _CJK.search(word) else "ascii" if word.isascii() else "other"


def replacement_words(vocabulary: Iterable[str], special: Iterable[str]) -> dict[str, list[str]]:
    """The whole words of a teacher's vocabulary, by script: WordPiece tokens that are not '##' pieces, and
    SentencePiece pieces that start a word ('▁'), stripped; letters only, specials aside."""
    tokens = sorted(set(vocabulary) - set(special))
    sentencepiece = sum(t.startswith("\u2581") for t in tokens) > len(tokens) // 10
    words: dict[str, list[str]] = {"cjk": [], "ascii": [], "other": []}
    for token in tokens:
        if sentencepiece:
            if not token.startswith("\u2581"):
                continue
            token = token[1:]
        elif token.startswith("##"):
            continue
        if _WORD.fullmatch(token):
            words[_script(token)].append(token)
    return words


@dataclass(frozen=True)
class Augmenter:
    copies: int
    seed: int
    operations: tuple[str, ...] = AUGMENT_OPERATIONS
    words: dict[str, list[str]] = field(default_factory=lambda: {"cjk": [], "ascii": [], "other": []})  # word_replacement's

    def describe(self) -> dict[str, Any]:
        """The manifest's entry."""
        entry = {"copies": self.copies, "seed": self.seed, "operations": list(self.operations), "words": "jieba", "ids": VARIANT_IDS}
        if "word_replacement" in self.operations:
            entry["replacement_words"] = {"source": "the teacher's vocabulary", "count": sum(map(len, self.words.values())),
                                          "sha256": sha256_json(self.words)}
        return entry

    def variant_count(self, record: Record) -> int:
        return 0 if record.target_text is not None else self.copies

    def records(self, records: Iterable[Record]) -> Iterator[Record]:
        """Every record, each followed by its variants."""
        previous: str | None = None
        for record in records:
            yield record
            for k in range(1, self.variant_count(record) + 1):
                rng = random.Random(f"{self.seed}\0{record.id}\0{k}")  # a str seed draws the same in every process
                yield Record(variant_id(record.id, k), self.variant(record.text, previous, rng), record.file)
            if record.target_text is None:
                previous = record.text

    def variant(self, text: str, previous: str | None, rng: random.Random) -> str:
        """One variant of text, drawn by rng among the operations its length allows (join needs a previous
        row; a text no operation applies to is its own variant)."""
        words = _words(text)
        replaceable = [i for i, w in enumerate(words) if _WORD.fullmatch(w.text) and self.words.get(_script(w.text))]
        allowed = [name for name in self.operations if len(words) >= MIN_WORDS.get(name, 0)
                   and (name != "join" or previous is not None) and (name != "word_replacement" or replaceable)]
        if not allowed:
            return text
        operation = rng.choice(allowed)
        n = len(words)
        if operation == "join":
            return _joined(previous, text)
        if operation == "word_replacement":
            chosen = [i for i in replaceable if rng.random() < REPLACE_PROBABILITY] or [rng.choice(replaceable)]
            for i in chosen:
                words[i] = _Word(rng.choice(self.words[_script(words[i].text)]), words[i].spaced)
            return _render(words)
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


def augmenter_for(config: PrecomputeConfig) -> Augmenter | None:
    """The run's augmenter (None without --augment); the replacement words come from the teacher's tokenizer."""
    if config.augment == 0:
        return None
    replacing = "word_replacement" in config.augment_operations
    words = _teacher_words(str(config.teacher)) if replacing else {"cjk": [], "ascii": [], "other": []}
    return Augmenter(config.augment, config.augment_seed, tuple(config.augment_operations), words)


@functools.lru_cache(maxsize=2)
def _teacher_words(teacher: str) -> dict[str, list[str]]:
    """The teacher vocabulary's replacement words, read once per run (the plan, the read pass and the teacher
    pass each build the augmenter)."""
    from distilcache.teacher.model import load_tokenizer  # transformers: only when words are replaced

    tokenizer = load_tokenizer(teacher)
    return replacement_words(tokenizer.get_vocab(), tokenizer.all_special_tokens)


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
