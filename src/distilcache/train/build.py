"""A new student, and what it starts from: the cache's token vectors (BiLSTM) or seed layers (transformer)."""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distilcache import hf_local
from distilcache.cache_format.errors import CacheError, ConfigError
from distilcache.cache_format.seed import seed_layer_indices
from distilcache.student.model import BiLSTMEncoder, StudentConfig, StudentModel, TransformerEncoder


def principal_components(vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA to dim: (reduced, basis, mean) with vectors ~ reduced @ basis + mean, basis (dim, width) orthonormal."""
    mean = vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
    basis = vt[:dim]
    return ((vectors - mean) @ basis.T).astype(np.float32), basis.astype(np.float32), mean.astype(np.float32)


def build_student(config: StudentConfig, seed_dir: Path | None = None, token_vectors: np.ndarray | None = None,
                  table_ids: np.ndarray | None = None, unk_id: int | None = None) -> StudentModel:
    """A new student. With seed_dir, a transformer starts from the teacher layers stored there, its token
    embeddings cut to the rows of table_ids (the tokenizer id of each row of the student's table; default:
    every id) and to config.num_layers of them (first, last, evenly between, as the teacher's were picked);
    with token_vectors (a row per table row x teacher dim), a BiLSTM's embedding starts from the teacher's
    static vectors, PCA-reduced when its embedding_dim is smaller."""
    if config.kind == "bilstm":
        encoder = BiLSTMEncoder(config)
        model = StudentModel(config, encoder)
        if token_vectors is not None:
            _start_from_token_vectors(model, token_vectors)
        return model
    if config.kind == "transformer":
        if seed_dir is None:
            return StudentModel(config, TransformerEncoder.fresh(config))
        encoder = TransformerEncoder.load(seed_dir)
        _keep_layers(encoder.model, config.num_layers)
        _cut_embeddings(encoder.model, np.arange(config.vocab_size) if table_ids is None else table_ids, config.pad_id, unk_id)
        return StudentModel(config, encoder)
    raise ConfigError(f"unknown student kind {config.kind!r}; expected bilstm or transformer")


def _keep_layers(model: nn.Module, keep: int) -> None:
    """Fewer layers than the seed holds: one cache exported with K layers seeds students of 1 to K layers."""
    held = len(model.encoder.layer)
    if keep > held:
        raise ConfigError(f"the cache's seed holds {held} teacher layers; a seeded student cannot have {keep}")
    picked = seed_layer_indices(held, keep)
    teacher_layers = getattr(model.config, "distilcache_seed_layers", None)
    model.encoder.layer = nn.ModuleList(model.encoder.layer[i] for i in picked)
    model.config.num_hidden_layers = keep
    if isinstance(teacher_layers, list) and len(teacher_layers) == held:
        model.config.distilcache_seed_layers = [teacher_layers[i] for i in picked]


def _cut_embeddings(model: nn.Module, table_ids: np.ndarray, pad_row: int, unk_id: int | None) -> None:
    """The seed's token embedding as the student's table: row i is token table_ids[i]. A seed of a large
    vocabulary holds only its cache's pieces (its config lists them): a token it lacks starts as [UNK].
    Otherwise ids past the seed's vocabulary (tokens the student tokenizer added) start as new rows, as
    resize_token_embeddings makes them."""
    seed_ids = getattr(model.config, "distilcache_seed_token_ids", None)
    if seed_ids is not None:
        seed_rows = _seed_rows(seed_ids, model.config.vocab_size)
        fallback = seed_rows.get(unk_id, 0)
        source = np.array([seed_rows.get(int(i), fallback) for i in table_ids], dtype=np.int64)
    else:
        source = table_ids
        if int(table_ids.max(initial=-1)) >= model.config.vocab_size:
            model.resize_token_embeddings(int(table_ids.max()) + 1)
    rows = model.get_input_embeddings().weight.data[torch.as_tensor(source, dtype=torch.long)].clone()
    model.set_input_embeddings(nn.Embedding.from_pretrained(rows, freeze=False, padding_idx=pad_row))
    model.config.vocab_size, model.config.pad_token_id = len(table_ids), pad_row


def _seed_rows(seed_ids: Any, rows: int) -> dict[int, int]:
    """Tokenizer id -> seed embedding row, from the seed's config (untrusted: checked)."""
    if not isinstance(seed_ids, list) or len(seed_ids) != rows or not all(isinstance(i, int) and i >= 0 for i in seed_ids) \
            or len(set(seed_ids)) != rows:
        raise CacheError(f"the seed's distilcache_seed_token_ids must list {rows} distinct token ids, one per embedding row")
    return {token: row for row, token in enumerate(seed_ids)}


def _start_from_token_vectors(model: StudentModel, token_vectors: np.ndarray) -> None:
    config, embedding = model.config, model.encoder.embedding
    if token_vectors.shape[0] != config.vocab_size or token_vectors.shape[1] < config.embedding_dim:
        raise ConfigError(f"token vectors {token_vectors.shape} do not fit the embedding {tuple(embedding.weight.shape)}")
    if token_vectors.shape[1] > config.embedding_dim:
        reduced, basis, mean = principal_components(token_vectors, config.embedding_dim)
    else:
        reduced, basis, mean = token_vectors, np.eye(config.embedding_dim, dtype=np.float32), np.zeros(config.embedding_dim, np.float32)
    with torch.no_grad():
        embedding.weight.copy_(torch.from_numpy(reduced))
        if config.concat_embeddings and token_vectors.shape[1] == config.output_dim:
            # start as the weighted mean of the (PCA-reconstructed) static vectors, model2vec-like;
            # the LSTM part learns from zero
            model.projection.weight.zero_()
            model.projection.weight[:, : config.embedding_dim] = torch.from_numpy(basis.T)
            model.projection.bias.copy_(torch.from_numpy(mean))


def seed_config(seed_dir: Path) -> Any:
    return hf_local.load_config(seed_dir)
