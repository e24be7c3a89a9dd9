import logging

import jieba

jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading at INFO on its own handler

# Recorded in manifests: a different segmenter gives different words, hence different weights.
SEGMENTER = {"name": "jieba", "version": jieba.__version__, "mode": "precise", "hmm": True}


def segment(text: str) -> list[str]:
    """jieba precise-mode words; their concatenation is always `text` itself."""
    return jieba.lcut(text, cut_all=False, HMM=True)
