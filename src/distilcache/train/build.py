"""A new student, and what it starts from: the cache's token vectors (BiLSTM) or seed layers (transformer)."""

from pathlib import Path
from typing import Any

import numpy as np
import torch

from distilcache import hf_local
from distilcache.student.model import BiLSTMEncoder, StudentConfig, StudentModel, TransformerEncoder


def principal_components(vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA to dim: (reduced, basis, mean) with vectors ~ reduced @ basis + mean, basis (dim, width) orthonormal."""
    mean = vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
    basis = vt[:dim]
    return ((vectors - mean) @ basis.T).astype(np.float32), basis.astype(np.float32), mean.astype(np.float32)


def build_student(config: StudentConfig, seed_dir: Path | None = None, token_vectors: np.ndarray | None = None) -> StudentModel:
    """A new student. With seed_dir, a transformer starts from the teacher layers stored there; with
    token_vectors (vocabulary x teacher dim), a BiLSTM's embedding starts from the teacher's static
    vectors, PCA-reduced when its embedding_dim is smaller."""
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
        if config.vocab_size > encoder.model.config.vocab_size:  # tokens the student tokenizer added
            encoder.model.resize_token_embeddings(config.vocab_size)
        return StudentModel(config, encoder)
    raise ValueError(f"unknown student kind {config.kind!r}; expected bilstm or transformer")


def _start_from_token_vectors(model: StudentModel, token_vectors: np.ndarray) -> None:
    config, embedding = model.config, model.encoder.embedding
    if token_vectors.shape[0] != config.vocab_size or token_vectors.shape[1] < config.embedding_dim:
        raise ValueError(f"token vectors {token_vectors.shape} do not fit the embedding {tuple(embedding.weight.shape)}")
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
