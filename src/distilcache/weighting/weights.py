"""Per-character and per-token weights (the LTD-BERT rule)."""

from collections.abc import Sequence

import numpy as np

from distilcache.weighting.idf import IdfTable


def char_weights(text: str, idf: IdfTable, smoothing: float) -> np.ndarray:
    """Each character of word w gets idf(w) / len(w), plus `smoothing`; whitespace gets nothing."""
    weights = np.asarray(idf.char_idf(text), dtype=np.float64).reshape(-1) + smoothing
    weights[[char.isspace() for char in text]] = 0.0
    return weights


def token_weights(char_w: np.ndarray, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """Weight of each kept token = sum of the character weights its offset span covers,
    normalised to sum 1. Characters no token covers (stripped, truncated) count for nothing.
    Tokens with empty spans get 0 unless every span is empty, then weights are uniform."""
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    return spans_weights(np.asarray(char_w, dtype=np.float64), spans, np.array([len(spans)]))


def spans_weights(char_w: np.ndarray, spans: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """token_weights for many texts in one pass: char_w holds their character weights end to end,
    spans (tokens, 2) their tokens' character spans counted from the start of char_w, and the first
    counts[0] spans belong to text 0, the next counts[1] to text 1, and so on.
    Each span is summed on its own, so a text's weights do not depend on the texts beside it."""
    rows = np.repeat(np.arange(len(counts)), counts)
    padded = np.append(char_w, 0.0)  # reduceat needs every index, an end included, inside the array
    sums = np.add.reduceat(padded, spans.reshape(-1))[0::2] if len(spans) else np.zeros(0)
    raw = np.where(spans[:, 1] > spans[:, 0], sums, 0.0)  # reduceat reads an empty span as one element
    totals = np.bincount(rows, weights=raw, minlength=len(counts))
    uniform = 1.0 / np.maximum(counts, 1)
    weights = np.where(totals[rows] > 0, raw / np.where(totals > 0, totals, 1.0)[rows], uniform[rows])
    return weights.astype(np.float32)
