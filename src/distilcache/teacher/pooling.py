"""Pooling as one weighted sum: every mode is a weight per token position of the teacher input."""

import numpy as np
import torch


def position_weights(mode: str, num_positions: int, content_positions: np.ndarray, content_weights: np.ndarray) -> np.ndarray:
    """Weights over all input positions (special tokens included) for one row.

    idf:  the IDF weights on content tokens, 0 on special tokens;
    mean: the attention-masked mean over every position (the sentence-transformers convention);
    cls:  all weight on the first position.
    A row left with no content token (say, only zero-width characters) falls back to the mean,
    so it still gets a finite vector.
    """
    weights = np.zeros(num_positions, dtype=np.float32)
    if mode == "cls":
        weights[0] = 1.0
    elif mode == "idf" and len(content_positions) > 0:
        weights[content_positions] = content_weights
    else:
        weights[:] = 1.0 / num_positions
    return weights


def pool(hidden: torch.Tensor, weights: torch.Tensor, normalize: bool) -> torch.Tensor:
    """sum_i w_i * h_i in float32; padding positions carry weight 0."""
    # one batched matrix product: einsum's route to it copies the states first, the costliest step of a cheap teacher's batch
    vectors = torch.bmm(weights.unsqueeze(1), hidden.float()).squeeze(1)
    return torch.nn.functional.normalize(vectors, dim=-1) if normalize else vectors
