"""Losses against the cached teacher vectors."""

import torch
import torch.nn.functional as F

from distilcache.train.config import LOSSES


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str, mse_weight: float = 0.5) -> torch.Tensor:
    """Per row against its own teacher vector. cosine: mean (1 - cos); mse: mean squared error per
    dimension; mix: (1-w)*cosine + w*mse."""
    cosine = (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    if kind == "cosine":
        return cosine
    mse = F.mse_loss(student, teacher)
    if kind == "mse":
        return mse
    if kind == "mix":
        return (1 - mse_weight) * cosine + mse_weight * mse
    raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")


def similarity_matrix_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                           queue: torch.Tensor | None = None) -> torch.Tensor:
    """Relative similarity within the batch: for each row, the KL divergence from the teacher's
    softmax over its cosine similarities to the batch (divided by the temperature) to the student's.
    queue: unit teacher vectors of earlier rows, more columns for both softmaxes (the student's row against
    them as the teacher's is: the student learns the teacher's space, so they serve both)."""
    def log_probabilities(vectors: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(vectors, dim=-1)
        keys = unit if queue is None else torch.cat([unit, queue.to(unit.dtype)])
        return F.log_softmax(unit @ keys.T / temperature, dim=-1)

    return F.kl_div(log_probabilities(student), log_probabilities(teacher), log_target=True, reduction="batchmean")


class TeacherQueue:
    """The unit teacher vectors of the last `size` training rows, newest first: rows beyond the batch for the
    similarity-matrix loss to compare each row with (MoCo's queue, holding targets that never go stale)."""

    def __init__(self, size: int, dim: int, device: torch.device):
        self.size = size
        self.vectors = torch.zeros(0, dim, device=device)

    def restore(self, vectors: torch.Tensor) -> None:
        """Go on from a checkpoint's queue, checked against this one's size and dim."""
        if vectors.dim() != 2 or vectors.shape[0] > self.size or vectors.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"the checkpoint's similarity queue has shape {tuple(vectors.shape)}, not at most "
                             f"({self.size}, {self.vectors.shape[1]})")
        self.vectors = vectors.float().to(self.vectors.device)

    def push(self, teacher: torch.Tensor) -> None:
        """Add a batch's teacher vectors; the oldest beyond size leave."""
        self.vectors = torch.cat([F.normalize(teacher.detach().float(), dim=-1), self.vectors])[: self.size]


def token_state_loss(outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor,
                     components: torch.Tensor) -> torch.Tensor:
    """Each token's output (batch, tokens, dim) in the cache's projection coordinates, (output - mean) @ components.T,
    against the teacher's projected state there (batch, tokens, k), over the tokens where mask is true: the summed
    squared error over the targets' summed squared norm (1 for a student that outputs the mean; 0 without tokens)."""
    predicted = (outputs[mask].float() - mean) @ components.T
    target = targets[mask].float()
    return (predicted - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-12)


def matryoshka_loss(student: torch.Tensor, teacher: torch.Tensor, dims: tuple[int, ...], temperature: float) -> torch.Tensor:
    """The teacher's vectors are not Matryoshka: each prefix of the student's (its first k dimensions,
    re-normalised) learns the teacher's full similarity structure. The mean over dims of the
    similarity-matrix loss of student[:, :k] against the teacher."""
    return sum(similarity_matrix_loss(student[:, :k], teacher, temperature) for k in dims) / len(dims)


def cosent_loss(cosines: torch.Tensor, labels: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """CoSENT (Su 2022): log(1 + sum over pairs i, j with labels[i] > labels[j] of exp(scale * (cos_j - cos_i))).
    Only the order of the labels matters: a pair scored higher must get the higher cosine."""
    differences = scale * (cosines[None, :] - cosines[:, None])  # [i, j] = scale * (cos_j - cos_i)
    ordered = labels[:, None] > labels[None, :]
    return torch.logsumexp(torch.cat([differences.new_zeros(1), differences[ordered]]), dim=0)


def cosine_mse_loss(cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the pairs' cosines and their labels (scaled to [0, 1])."""
    return F.mse_loss(cosines, labels)
