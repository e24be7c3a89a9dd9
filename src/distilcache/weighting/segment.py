import functools
import logging
import re

import jieba
import rjieba

jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading at INFO on its own handler

# Recorded in manifests: a different segmenter gives different words, hence different weights.
SEGMENTER = {"name": "jieba", "version": jieba.__version__, "mode": "precise", "hmm": True}

# jieba splits a text with this pattern first and cuts every piece on its own, so a text's words
# are the concatenation of its pieces' words. Pieces repeat (in English, a piece is about a word),
# so cutting each distinct piece once gives exactly jieba's words at a fraction of the cost.
_PIECES = jieba.re_han_default
# jieba's Han characters: a piece of these alone is cut by the dictionary route and the HMM, nothing else
_HAN_ONLY = re.compile("[\u4E00-\u9FD5]+")
_NEVER_IN_A_PIECE = "\uE000"  # a private-use character: a dictionary entry under it never matches a Han piece


def pieces(text: str) -> list[str]:
    """The pieces jieba cuts independently; they concatenate to `text`."""
    return [piece for piece in _PIECES.split(text) if piece]


@functools.lru_cache(maxsize=1 << 18)
def segment_piece(piece: str) -> tuple[str, ...]:
    # jieba's dictionary never changes in this package (no user words), so a memo cannot go stale
    if _HAN_ONLY.fullmatch(piece):
        return _cut_han(piece)
    if _PIECES.fullmatch(piece) and _dictionary().keys().isdisjoint(piece):
        return _run_words(piece)  # no dictionary word starts anywhere in it: jieba's route is one run of single characters
    return tuple(jieba.cut(piece, cut_all=False, HMM=True))


def segment(text: str) -> list[str]:
    """jieba precise-mode words (the same as jieba.lcut(text)); their concatenation is always `text`."""
    return [word for piece in pieces(text) for word in segment_piece(piece)]


def _dictionary() -> dict[str, int]:
    """jieba's words and their prefixes with each one's frequency (0 for a prefix that is no word)."""
    jieba.dt.check_initialized()
    return jieba.dt.FREQ


@functools.cache
def _router() -> rjieba.Jieba:
    """jieba's dictionary in jieba-rs, which finds the same best route through it in Rust (jieba's own Python
    search costs most of a Chinese text's weighting): every word with a frequency, and jieba's total."""
    router, dictionary = rjieba.Jieba.empty(), _dictionary()
    for word, count in dictionary.items():
        if count:  # the others are prefixes jieba keeps for its search, not words
            router.add_word(word, count, None)
    # jieba's total also counts the first of a word listed twice in its dictionary; the route's log-probabilities
    # divide by the total, so jieba-rs gets the same one
    rest = jieba.dt.total - sum(dictionary.values())
    if rest > 0:
        router.add_word(_NEVER_IN_A_PIECE, rest, None)
    return router


def _cut_han(piece: str) -> tuple[str, ...]:
    """jieba's precise cut of a piece of Han characters: the dictionary's most probable route, with each run of
    single characters that is not itself a dictionary word handed to jieba's HMM, as jieba does."""
    words: list[str] = []
    run = ""
    for word in _router().cut(piece, False):
        if len(word) == 1:
            run += word
            continue
        if run:
            words += _run_words(run)
            run = ""
        words.append(word)
    if run:
        words += _run_words(run)
    return tuple(words)


@functools.lru_cache(maxsize=1 << 16)
def _run_words(run: str) -> tuple[str, ...]:
    if len(run) == 1 or _dictionary().get(run):
        return tuple(run)
    return tuple(jieba.finalseg.cut(run))
