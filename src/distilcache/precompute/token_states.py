"""precompute --token-states k: the teacher's state at every student token, compressed. The projection (a PCA of
the states) is fitted once, on the first sort window the teacher reads, and saved before any shard, so every
shard and a resumed run use the same one; then each window's states are projected as the teacher computes
them. cache_format/token_states.py holds the file format."""

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distilcache.cache_format import CacheError, write_parquet_atomic
from distilcache.cache_format.errors import ConfigError
from distilcache.cache_format.layout import TOKEN_PROJECTION_FILE
from distilcache.cache_format.token_states import TokenProjection, read_projection
from distilcache.precompute.config import PrecomputeConfig
from distilcache.precompute.preparation import PreparedWindow
from distilcache.teacher.model import pooled_vectors
from distilcache.teacher.prepare import Batch, PreparedRows

log = logging.getLogger(__name__)

METHOD = ("the teacher's state at the pooling layer at each position of token_ids in its input, minus the projection's "
          "mean, times its components (a PCA of the states of the first sort window), float16")


def _picked(batch: Batch, hidden: torch.Tensor, rows: PreparedRows) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The states at the batch's rows' state positions, stacked (n, hidden) in float32; the rows that have
    positions (indices into rows) and how many each."""
    counts = rows.state_positions.lengths[batch.rows]
    has = counts > 0
    members, counts = batch.rows[has], counts[has]
    if not len(members):
        return hidden.new_zeros((0, hidden.shape[-1]), dtype=torch.float32), members, counts
    batch_index = np.repeat(np.flatnonzero(has), counts)
    positions = rows.state_positions.take(members).values
    index = [torch.from_numpy(part).to(hidden.device) for part in (batch_index, positions)]
    return hidden[index[0], index[1]].float(), members, counts


class ProjectionFit:
    """Float64 sums of token states, from which their mean and principal components follow."""

    def __init__(self, rows: PreparedRows, dim: int):
        self.rows = rows
        self.count = 0
        self.total = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def __call__(self, batch: Batch, hidden: torch.Tensor) -> None:
        states = _picked(batch, hidden, self.rows)[0].double().cpu()
        self.count += len(states)
        self.total += states.sum(dim=0)
        self.outer += states.T @ states

    def projection(self, k: int) -> TokenProjection:
        if self.count == 0:
            raise ConfigError("--token-states: no row of the first window has token states (every row has a target text, "
                              "or the teacher reads other pieces than the student): nothing to fit the projection on")
        mean = self.total / self.count
        covariance = self.outer / self.count - torch.outer(mean, mean)
        variance, vectors = torch.linalg.eigh(covariance)  # ascending
        components = vectors.T.flip(0)[:k]
        # a component's sign is arbitrary: make its largest entry positive, so a refit gives the same file
        largest = components.abs().argmax(dim=1)
        components = components * components[torch.arange(k), largest].sign()[:, None]
        return TokenProjection(mean.float().numpy(), components.float().numpy(), variance.flip(0)[:k].clamp_min(0).numpy(),
                               float(variance.clamp_min(0).sum()), self.count)


class StateCollector:
    """Each computed row's states of one window, projected: states[i] is row i's (tokens, k) float16 array, None
    for a row without state positions or not computed here (a repeated input takes its source row's)."""

    def __init__(self, projection: TokenProjection, rows: PreparedRows, device: torch.device):
        self.rows = rows
        self.mean = torch.from_numpy(projection.mean).to(device)
        self.components = torch.from_numpy(projection.components).to(device)
        self.states: list[np.ndarray | None] = [None] * len(rows)

    def __call__(self, batch: Batch, hidden: torch.Tensor) -> None:
        states, members, counts = _picked(batch, hidden, self.rows)
        projected = ((states - self.mean) @ self.components.T).to(torch.float16).cpu().numpy()
        for member, part in zip(members, np.split(projected, np.cumsum(counts)[:-1])):
            self.states[member] = part


def row_states(rows: PreparedRows, computed: list[np.ndarray | None], sources: list[int], k: int) -> list[np.ndarray | None]:
    """A shard's token_states column: row i's states when the teacher read its tokens (a repeated input's from
    the row computed for it), an empty list for a row without tokens, else None."""
    states: list[np.ndarray | None] = []
    for positions, tokens, source in zip(rows.state_positions.lengths.tolist(), rows.token_ids.lengths.tolist(), sources):
        if positions != tokens:
            states.append(None)
        elif tokens == 0:
            states.append(np.zeros((0, k), dtype=np.float16))
        else:
            states.append(computed[source])
    return states


def token_projection(config: PrecomputeConfig, plan: dict[str, Any], out: Path, model: torch.nn.Module, first: PreparedWindow,
                     done: set[int], device: torch.device, precision: str) -> TokenProjection:
    """The cache's projection: the one saved by an earlier run, or fitted on the run's first window and saved.
    A cache with shards but no projection cannot get one that fits them."""
    path, dim, k = out / TOKEN_PROJECTION_FILE, plan["vector"]["dim"], config.token_states
    if path.exists():
        return read_projection(path, dim, k)
    if done:
        raise CacheError(f"{out} holds shards but no {TOKEN_PROJECTION_FILE} for their token states; delete {out} and rerun")
    fit = ProjectionFit(first.rows, dim)
    with torch.inference_mode():
        pooled_vectors(model, first.batches, len(first.rows), device, precision, config.pooling.layer, config.pooling.normalize,
                       on_states=fit)
    projection = fit.projection(k)
    write_parquet_atomic(projection.to_table(), path)
    log.info("token states: %d components keep %.1f%% of the variance of %d token states of the first window", k,
             100 * projection.explained, projection.fit_tokens)
    return projection
