"""Pooling as one weighted sum: every mode is a weight per token position of the teacher input."""

import numpy as np
import torch


def position_weights(mode: str, lengths: np.ndarray, content: np.ndarray, content_weights: np.ndarray,
                     counts: np.ndarray) -> np.ndarray:
    """Weights over every input position (special tokens included) of rows laid end to end: lengths[i] positions
    for row i, content marks its non-special tokens (counts[i] of them), content_weights are their weights.

    idf:  the IDF weights on content tokens, 0 on special tokens;
    mean: the attention-masked mean over every position (the sentence-transformers convention);
    cls:  all weight on the first position.
    A row left with no content token (say, only zero-width characters) falls back to the mean,
    so it still gets a finite vector.
    """
    row = np.repeat(np.arange(len(lengths)), lengths)
    if mode == "cls":
        weights = np.zeros(len(row), dtype=np.float32)
        weights[(np.cumsum(lengths) - lengths)[lengths > 0]] = 1.0
        return weights
    weights = (1.0 / np.maximum(lengths, 1))[row].astype(np.float32)
    if mode == "idf":
        weights[counts[row] > 0] = 0.0
        weights[content] = content_weights
    return weights


def pool(hidden: torch.Tensor, weights: torch.Tensor, normalize: bool) -> torch.Tensor:
    """sum_i w_i * h_i in float32; padding positions carry weight 0."""
    # one batched matrix product: einsum's route to it copies the states first, the costliest step of a cheap teacher's batch
    vectors = torch.bmm(weights.unsqueeze(1), hidden.float()).squeeze(1)
    return torch.nn.functional.normalize(vectors, dim=-1) if normalize else vectors
