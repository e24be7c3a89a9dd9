"""Losses against the cached teacher vectors."""

import torch
import torch.nn.functional as F

LOSSES = ("cosine", "mse", "mix")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str, mse_weight: float = 0.5) -> torch.Tensor:
    """cosine: mean (1 - cos); mse: mean squared error per dimension; mix: (1-w)*cosine + w*mse."""
    cosine = (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    if kind == "cosine":
        return cosine
    mse = F.mse_loss(student, teacher)
    if kind == "mse":
        return mse
    if kind == "mix":
        return (1 - mse_weight) * cosine + mse_weight * mse
    raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")
