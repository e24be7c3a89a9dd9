"""Student models: an encoder over teacher token ids, the teacher's weighted pooling, a projection to its dim,
and the padded batches they read."""

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, BertConfig

from distilcache import hf_local

_MAX_SIZE = 1 << 31  # any size field; the real check is against the weights files (student/directory.py checks them)


@dataclass
class StudentConfig:
    kind: str  # "bilstm" | "transformer"
    vocab_size: int
    output_dim: int  # the teacher's dim
    pad_id: int
    hidden_size: int  # bilstm: per direction; transformer: model width
    num_layers: int
    embedding_dim: int = 256  # bilstm only
    concat_embeddings: bool = False  # bilstm only: pool [embedding; LSTM states] instead of the states alone
    num_heads: int = 4  # transformer only
    max_positions: int = 512  # transformer only
    dropout: float = 0.1
    attention_pooling: bool = False  # learn a per-token score that reweights the given (IDF) weights
    # the table rows of the pieces the encoder reads before and after the text's pieces, as the teacher read
    # them ([CLS] and [SEP], or <s> and </s>); they weigh 0 in pooling. -1: none (the pieces alone)
    start_id: int = -1
    end_id: int = -1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "StudentConfig":
        """From a student's JSON (untrusted): known fields only, each of its type and in range."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}")
        for name, value in values.items():
            kind = known[name].type
            if not isinstance(value, (int, float) if kind is float else kind) or (kind in (int, float) and isinstance(value, bool)):
                raise ValueError(f"{name} must be a {kind.__name__}, got {value!r}")
        config = cls(**values)
        if config.kind not in ("bilstm", "transformer"):
            raise ValueError(f"kind must be bilstm or transformer, got {config.kind!r}")
        sizes = ("vocab_size", "output_dim", "hidden_size", "num_layers", "embedding_dim", "num_heads", "max_positions")
        for name in sizes:
            if not 1 <= getattr(config, name) <= _MAX_SIZE:
                raise ValueError(f"{name} must be between 1 and {_MAX_SIZE}, got {getattr(config, name)}")
        if not 0 <= config.pad_id < config.vocab_size or not 0 <= config.dropout < 1:
            raise ValueError(f"pad_id must be a token id and dropout in [0, 1), got {config.pad_id} and {config.dropout}")
        ends = (config.start_id, config.end_id)
        if (ends[0] < 0) != (ends[1] < 0) or not -1 <= min(ends) <= max(ends) < config.vocab_size:
            raise ValueError(f"start_id and end_id must both be token ids or both -1, got {config.start_id} and {config.end_id}")
        return config

    @property
    def brackets(self) -> bool:
        return self.start_id >= 0


@dataclass
class PaddedBatch:
    token_ids: torch.Tensor  # (batch, tokens) long, padded with pad_id
    lengths: torch.Tensor  # (batch,) long, >= 1
    weights: torch.Tensor  # (batch, tokens) float, 0 on padding, rows sum to 1

    def to(self, device: torch.device) -> "PaddedBatch":
        return PaddedBatch(*(t.to(device, non_blocking=True) for t in (self.token_ids, self.lengths, self.weights)))


def padded_positions(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where rows of counts[i] values from starts[i] sit when padded to the longest (at least one position):
    (inside, taken): inside[i, t] says position t holds a value, taken the flat indices of those values in order."""
    positions = np.arange(max(int(counts.max(initial=0)), 1))
    inside = positions[None, :] < counts[:, None]
    return inside, (starts[:, None] + positions[None, :])[inside]


def pad_rows(token_ids: np.ndarray, weights: np.ndarray, starts: np.ndarray, counts: np.ndarray, pad_id: int) -> PaddedBatch:
    """Row i is token_ids[starts[i] : starts[i] + counts[i]] (weights alike), padded with pad_id.
    A row without tokens is read as one pad token of weight 1, so it still gets a finite vector."""
    starts, counts = np.asarray(starts, dtype=np.int64), np.asarray(counts, dtype=np.int64)
    lengths = np.maximum(counts, 1)
    inside, taken = padded_positions(starts, counts)
    padded_ids = np.full(inside.shape, pad_id, dtype=np.int64)
    padded_ids[inside] = token_ids[taken]
    padded_weights = np.zeros(inside.shape, dtype=np.float32)
    padded_weights[inside] = weights[taken]
    padded_weights[counts == 0, 0] = 1.0
    return PaddedBatch(torch.from_numpy(padded_ids), torch.from_numpy(lengths), torch.from_numpy(padded_weights))


class BiLSTMEncoder(nn.Module):
    def __init__(self, config: StudentConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_id)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_size, num_layers=config.num_layers,
                            batch_first=True, bidirectional=True,
                            dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.concat_embeddings = config.concat_embeddings
        self.output_dim = 2 * config.hidden_size + (config.embedding_dim if config.concat_embeddings else 0)

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(token_ids)
        # packing keeps padding out of the backward direction
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(embedded), lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = self.lstm(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=token_ids.shape[1])
        # the embedding beside the context: a static-vector path the LSTM only has to correct
        return torch.cat([embedded, states], dim=-1) if self.concat_embeddings else states


class TransformerEncoder(nn.Module):
    """A Hugging Face encoder (a small BERT, or the teacher's seed layers)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.output_dim = model.config.hidden_size

    @classmethod
    def fresh(cls, config: StudentConfig) -> "TransformerEncoder":
        bert = BertConfig(vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
                          num_attention_heads=config.num_heads, intermediate_size=4 * config.hidden_size,
                          max_position_embeddings=config.max_positions, pad_token_id=config.pad_id,
                          hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout)
        return cls(AutoModel.from_config(bert))

    @classmethod
    def from_config(cls, config: Any) -> "TransformerEncoder":
        """Untrained, from a Hugging Face config (on the meta device, a model of shapes only)."""
        return cls(AutoModel.from_config(config))

    @classmethod
    def load(cls, directory: Path) -> "TransformerEncoder":
        return cls(hf_local.load_model(directory, use_safetensors=True))

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(token_ids.shape[1], device=token_ids.device)[None, :] < lengths[:, None]).long()
        return self.model(input_ids=token_ids, attention_mask=mask).last_hidden_state


class StudentModel(nn.Module):
    def __init__(self, config: StudentConfig, encoder: nn.Module):
        super().__init__()
        self.config = config
        self.encoder = encoder
        # a linear map commutes with the weighted sum (weights sum to 1), so project after pooling
        self.projection = nn.Linear(encoder.output_dim, config.output_dim) if encoder.output_dim != config.output_dim else None
        self.attention = nn.Linear(encoder.output_dim, 1) if config.attention_pooling else None
        if self.attention is not None:  # zero scores: training starts from the given weights exactly
            nn.init.zeros_(self.attention.weight)
            nn.init.zeros_(self.attention.bias)

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.pool(self.token_states(token_ids, lengths), weights)

    def token_states(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The encoder's state at each of the pieces (batch, tokens, encoder dim), float32."""
        if self.config.brackets:  # the encoder reads start + pieces + end; the states kept are the pieces' own
            return self.encoder(*bracket(token_ids, lengths, self.config))[:, 1:token_ids.shape[1] + 1].float()
        return self.encoder(token_ids, lengths).float()

    def pool(self, states: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The sentence vectors (batch, output dim) of token_states."""
        if self.attention is not None:
            weights = self.attend(states, weights)
        return self.project(torch.bmm(weights.unsqueeze(1), states).squeeze(1))  # einsum would copy the states first

    def project(self, states: torch.Tensor) -> torch.Tensor:
        """States (..., encoder dim) in the teacher's space (..., output dim); per token, what pooling sums."""
        return self.projection(states) if self.projection is not None else states

    def attend(self, states: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """softmax(log weights + score(state)): the IDF weights as a prior the learned scores reweight.
        Padding keeps weight 0, and its scores (meaningless in an unpacked export) never set the maximum;
        a row of all-zero weights stays all zero."""
        scores = self.attention(states).squeeze(-1).float().masked_fill(weights <= 0, -1e4)
        scaled = weights * (scores - scores.max(dim=1, keepdim=True).values).exp()
        return scaled / scaled.sum(dim=1, keepdim=True).clamp_min(1e-12)


def bracket(token_ids: torch.Tensor, lengths: torch.Tensor, config: StudentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's pieces between the start and end pieces, padded: (ids, lengths), two positions longer."""
    pad = torch.full_like(token_ids[:, :1], config.pad_id)
    ids = torch.cat([torch.full_like(pad, config.start_id), token_ids, pad], dim=1)
    positions = torch.arange(ids.shape[1], device=ids.device)[None, :]
    return torch.where(positions == lengths[:, None] + 1, torch.full_like(ids, config.end_id), ids), lengths + 2
