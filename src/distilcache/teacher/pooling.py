"""Pooling as one weighted sum: every mode is a weight per token position of the teacher input
(prepare.position_weights, made with the batches on the CPU side)."""

import torch


def pool(hidden: torch.Tensor, weights: torch.Tensor, normalize: bool) -> torch.Tensor:
    """sum_i w_i * h_i in float32; padding positions carry weight 0."""
    # one batched matrix product: einsum's route to it copies the states first, the costliest step of a cheap teacher's batch
    vectors = torch.bmm(weights.unsqueeze(1), hidden.float()).squeeze(1)
    return torch.nn.functional.normalize(vectors, dim=-1) if normalize else vectors
