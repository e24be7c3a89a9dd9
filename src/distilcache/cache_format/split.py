"""The held-out split of a cache's rows, by a hash of the id: the same rows whatever the seed,
student or run, and a smaller fraction always picks a subset of a larger one."""

import hashlib
from collections.abc import Sequence

import numpy as np


def id_scores(ids: Sequence[str]) -> np.ndarray:
    """A uniform number in [0, 1) per id."""
    return np.array([int.from_bytes(hashlib.sha256(i.encode("utf-8")).digest()[:8], "big") / 2**64 for i in ids])


def split_by_id(ids: Sequence[str], val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) row indices."""
    held_out = id_scores(ids) < val_fraction
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)
