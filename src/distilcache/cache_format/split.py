"""The held-out split of a cache's rows, by a hash of the id: the same rows whatever the seed,
student or run, and a smaller fraction always picks a subset of a larger one.

An augmented cache (precompute --augment) also holds variants of its rows, with ids
`<source id>#aug<k>`. A variant goes where its source goes, so no text the students train on is
a variant of a held-out text; the held-out rows are real rows only."""

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_VARIANT = re.compile(r"#aug([1-9][0-9]*)\Z")
VARIANT_IDS = "<source id>#aug<k>"  # how the manifest describes them


def variant_id(source_id: str, k: int) -> str:
    """The id of the k-th (1-based) variant of a row."""
    return f"{source_id}#aug{k}"


def is_variant_id(row_id: str) -> bool:
    return _VARIANT.search(row_id) is not None


def source_id(row_id: str) -> str:
    """The id of the row a variant was made from (the id itself for a row that is not a variant)."""
    match = _VARIANT.search(row_id)
    return row_id if match is None else row_id[: match.start()]


def id_scores(ids: Sequence[str]) -> np.ndarray:
    """A uniform number in [0, 1) per id."""
    return np.array([int.from_bytes(hashlib.sha256(i.encode("utf-8")).digest()[:8], "big") / 2**64 for i in ids])


def split_masks(ids: Sequence[str], val_fraction: float, augmented: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) masks. In an augmented cache the variants of held-out rows are in neither."""
    if not augmented:
        held_out = id_scores(ids) < val_fraction
        return ~held_out, held_out
    held_out = id_scores([source_id(i) for i in ids]) < val_fraction
    variant = np.array([is_variant_id(i) for i in ids], dtype=bool)
    return ~held_out, held_out & ~variant


def split_by_id(ids: Sequence[str], val_fraction: float, augmented: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) row indices."""
    train, held_out = split_masks(ids, val_fraction, augmented)
    return np.flatnonzero(train), np.flatnonzero(held_out)
