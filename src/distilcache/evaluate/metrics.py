"""Similarity agreement and retrieval agreement (faiss), on the paired cosines and Spearman of pairs.py."""

import faiss
import numpy as np

from distilcache.pairs import normalized, paired_cosine, spearman


def _neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """The k nearest rows of each row by cosine (inner product of unit vectors), itself excluded."""
    unit = np.ascontiguousarray(normalized(vectors))
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    _, found = index.search(unit, k + 1)
    own = np.arange(len(unit))[:, None]
    return np.array([row[row != own[i]][:k] for i, row in enumerate(found)])


def recall_at_k(student: np.ndarray, teacher: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's k teacher neighbours that are among its k student neighbours."""
    if len(teacher) <= k:
        raise ValueError(f"recall@{k} needs more than {k} rows, got {len(teacher)}")
    ours, theirs = _neighbours(student, k), _neighbours(teacher, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ours, theirs)]))


def similarity_agreement(student: np.ndarray, teacher: np.ndarray, pairs: int = 5000, seed: int = 0) -> float:
    """Spearman x100 between the student's and the teacher's cosine similarity of the same random row pairs:
    an STS score whose gold labels are the teacher's own judgements, so it needs no labelled set."""
    if len(teacher) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, len(teacher), size=(2, pairs))
    keep = first != second
    first, second = first[keep], second[keep]
    return spearman(paired_cosine(student[first], student[second]), paired_cosine(teacher[first], teacher[second]))
