"""Per-character and per-token weights (the LTD-BERT rule)."""

from collections.abc import Sequence

import numpy as np

from distilcache.weighting.idf import IdfTable
from distilcache.weighting.segment import segment


def char_weights(text: str, idf: IdfTable, smoothing: float) -> np.ndarray:
    """Each character of word w gets idf(w) / len(w), plus `smoothing`."""
    weights = np.empty(len(text), dtype=np.float64)
    start = 0
    for word in segment(text):
        end = start + len(word)
        weights[start:end] = idf.idf(word) / len(word)
        start = end
    if start != len(text):
        raise ValueError(f"segmentation does not cover the text ({start} of {len(text)} characters): {text[:80]!r}")
    return weights + smoothing


def token_weights(char_w: np.ndarray, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """Weight of each kept token = sum of the character weights its offset span covers,
    normalised to sum 1. Characters no token covers (stripped, truncated) count for nothing.
    Tokens with empty spans get 0 unless every span is empty, then weights are uniform."""
    if len(offsets) == 0:
        return np.zeros(0, dtype=np.float32)
    cumulative = np.concatenate(([0.0], np.cumsum(char_w)))
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    raw = cumulative[spans[:, 1]] - cumulative[spans[:, 0]]
    total = raw.sum()
    if not total > 0:
        return np.full(len(raw), 1.0 / len(raw), dtype=np.float32)
    return (raw / total).astype(np.float32)
