import functools
import logging

import jieba

jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading at INFO on its own handler

# Recorded in manifests: a different segmenter gives different words, hence different weights.
SEGMENTER = {"name": "jieba", "version": jieba.__version__, "mode": "precise", "hmm": True}

# jieba splits a text with this pattern first and cuts every piece on its own, so a text's words
# are the concatenation of its pieces' words. Pieces repeat (in English, a piece is about a word),
# so cutting each distinct piece once gives exactly jieba's words at a fraction of the cost.
_PIECES = jieba.re_han_default


def pieces(text: str) -> list[str]:
    """The pieces jieba cuts independently; they concatenate to `text`."""
    return [piece for piece in _PIECES.split(text) if piece]


@functools.lru_cache(maxsize=1 << 18)
def segment_piece(piece: str) -> tuple[str, ...]:
    # jieba's dictionary never changes in this package (no user words), so a memo cannot go stale
    return tuple(jieba.cut(piece, cut_all=False, HMM=True))


def segment(text: str) -> list[str]:
    """jieba precise-mode words (the same as jieba.lcut(text)); their concatenation is always `text`."""
    return [word for piece in pieces(text) for word in segment_piece(piece)]
