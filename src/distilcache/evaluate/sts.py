"""Sentence-pair similarity sets: TSV with a header sentence1<TAB>sentence2<TAB>score."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distilcache.cache_format.errors import DataFileError


@dataclass
class StsPairs:
    name: str
    sentence1: list[str]
    sentence2: list[str]
    scores: np.ndarray


def read_sts(path: Path) -> StsPairs:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t") if lines else []
    try:
        columns = [header.index(c) for c in ("sentence1", "sentence2", "score")]
    except ValueError:
        raise DataFileError(f"{path}: the header must name sentence1, sentence2 and score (tab-separated), got {header}") from None
    first, second, scores = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        try:
            a, b, score = (fields[i] for i in columns)
            scores.append(float(score))
        except (IndexError, ValueError):
            raise DataFileError(f"{path} line {number}: expected {len(header)} tab-separated fields with a numeric score") from None
        first.append(a)
        second.append(b)
    if not scores:
        raise DataFileError(f"{path}: no pairs")
    return StsPairs(f"{path.parent.name}/{path.stem}", first, second, np.array(scores))
