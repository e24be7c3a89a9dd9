"""Labelled sentence pairs, sentence1<TAB>sentence2<TAB>score: the similarity sets evaluate scores students
on and the pairs finetune trains on, and the paired cosines and rank correlation both score them with. A header naming the three
columns is optional; a bad line is an error naming the file and the line."""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distilcache.cache_format.errors import DataFileError

COLUMNS = ("sentence1", "sentence2", "score")


@dataclass
class StsPairs:
    name: str
    sentence1: list[str]
    sentence2: list[str]
    scores: np.ndarray


def read_sts(path: Path) -> StsPairs:
    """The pairs of a TSV file: with a header naming sentence1, sentence2 and score (other columns are
    ignored), or without one, those three columns in that order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataFileError(f"{path}: not UTF-8 ({error.reason} at byte {error.start})") from None
    header = lines[0].split("\t") if lines else []
    if set(COLUMNS) <= set(header):
        columns, first_line = [header.index(c) for c in COLUMNS], 2
    elif any(c in header for c in COLUMNS):
        raise DataFileError(f"{path}: the header must name sentence1, sentence2 and score (tab-separated), got {header}")
    else:
        columns, first_line = [0, 1, 2], 1
    width = max(columns) + 1
    first, second, scores = [], [], []
    for number, line in enumerate(lines[first_line - 1:], start=first_line):
        fields = line.split("\t")
        if len(fields) < width:
            raise DataFileError(f"{path} line {number}: expected {width} tab-separated fields "
                                f"({', '.join(COLUMNS)}), got {len(fields)}")
        a, b, score = (fields[i] for i in columns)
        try:
            value = float(score)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataFileError(f"{path} line {number}: the score {score!r} is not a finite number")
        first.append(a)
        second.append(b)
        scores.append(value)
    if not scores:
        raise DataFileError(f"{path}: no pairs")
    return StsPairs(f"{path.parent.name}/{path.stem}", first, second, np.array(scores))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(sorted_values)) + 1, [len(values)]))
    for start, end in zip(bounds[:-1], bounds[1:]):
        ranks[order[start:end]] = (start + end - 1) / 2
    return ranks


def spearman(predicted: np.ndarray, gold: np.ndarray) -> float:
    """Spearman's rank correlation x100 (nan when either side is constant)."""
    a, b = _ranks(np.asarray(predicted, dtype=np.float64)), _ranks(np.asarray(gold, dtype=np.float64))
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float(100 * (a * b).sum() / denominator) if denominator > 0 else float("nan")


def normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (normalized(a) * normalized(b)).sum(axis=1)


def pairs_spearman(encode: Callable[[list[str]], np.ndarray], pairs: StsPairs) -> float:
    """Spearman x100 of the cosine of each pair's vectors against the scores."""
    return spearman(paired_cosine(encode(pairs.sentence1), encode(pairs.sentence2)), pairs.scores)
