"""Load a teacher from a local Hugging Face directory, and describe it without loading it."""

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from distilcache import hf_local
from distilcache.cache_format.errors import ConfigError
from distilcache.cache_format.hashing import sha256_file
from distilcache.devices import autocast
from distilcache.teacher.pooling import pool
from distilcache.teacher.prepare import Batch

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")


class TeacherError(ConfigError):
    """--teacher is not a directory distilcache can run."""


def _config(teacher_dir: Path) -> dict[str, Any]:
    config_path = teacher_dir / "config.json"
    if not config_path.is_file():
        raise TeacherError(f"{teacher_dir}: no config.json; --teacher must be a local Hugging Face model directory")
    return json.loads(config_path.read_text(encoding="utf-8"))


def describe_teacher(teacher_dir: Path, name: str | None = None) -> dict[str, Any]:
    """Identity of a teacher: architecture, sizes and sha256 of the files that determine its outputs
    (config, weights, tokenizer). `name` defaults to the directory's name."""
    teacher_dir = Path(teacher_dir)
    config = _config(teacher_dir)
    hf_local.check_no_shipped_code(teacher_dir)  # before any work, not when the tokenizer loads
    weight_files = sorted({p for pattern in WEIGHT_PATTERNS for p in teacher_dir.glob(pattern)})
    if not weight_files:
        raise TeacherError(f"{teacher_dir}: no weight files (*.safetensors or pytorch_model*.bin)")
    tokenizer_files = sorted(p for p in teacher_dir.iterdir() if p.name in hf_local.TOKENIZER_FILES)
    files = {p.name: sha256_file(p) for p in [teacher_dir / "config.json", *weight_files, *tokenizer_files]}
    return {
        "name": name or teacher_dir.resolve().name,
        "architecture": (config.get("architectures") or [config.get("model_type", "unknown")])[0],
        "model_type": config.get("model_type"),
        "hidden_size": config.get("hidden_size"),
        "num_layers": config.get("num_hidden_layers"),
        "max_position_embeddings": config.get("max_position_embeddings"),
        "files": files,
    }


def load_tokenizer(teacher_dir: Path) -> PreTrainedTokenizerBase:
    tokenizer = hf_local.load_tokenizer(teacher_dir)
    if not tokenizer.is_fast:
        raise TeacherError(f"{teacher_dir}: its tokenizer has no fast (Rust) version, which IDF pooling needs for offsets")
    return tokenizer


def load_model(teacher_dir: Path, device: torch.device) -> torch.nn.Module:
    model = hf_local.load_model(teacher_dir)
    if getattr(model, "pooler", None) is not None:  # BERT's [CLS] dense layer runs on every forward; nothing here reads it
        model.pooler = None
    return model.to(device).eval()


def forward_layer(model: torch.nn.Module, inputs: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
    """Hidden states of `layer` (-1 = last; 0 = embeddings, as in hidden_states)."""
    if layer == -1:
        return model(**inputs).last_hidden_state
    return model(**inputs, output_hidden_states=True).hidden_states[layer]


def pooled_vectors(model: torch.nn.Module, batches: Iterable[Batch], num_rows: int, device: torch.device, precision: str,
                   layer: int, normalize: bool, on_batch: Callable[[int], None] | None = None,
                   on_states: Callable[[Batch, torch.Tensor], None] | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """The teacher's pooled sentence vectors (num_rows, hidden) of prepared rows, in row order; call
    under torch.inference_mode(). on_batch gets each batch's size (progress bars), on_states each batch
    with its token states (batch, tokens, hidden). A row in no batch (a repeated input, filled in later)
    reads zeros, or keeps what `out` (float32 (num_rows, hidden): written into and returned) held."""
    vectors = np.zeros((num_rows, model.config.hidden_size), dtype=np.float32) if out is None else out
    for batch in batches:
        inputs = {"input_ids": torch.from_numpy(batch.input_ids).to(device, non_blocking=True),
                  "attention_mask": torch.from_numpy(batch.attention_mask).to(device, non_blocking=True)}
        with autocast(device, precision):
            hidden = forward_layer(model, inputs, layer)
        if on_states is not None:
            on_states(batch, hidden)
        vectors[batch.rows] = pool(hidden, torch.from_numpy(batch.weights).to(device, non_blocking=True), normalize).cpu().numpy()
        if on_batch is not None:
            on_batch(len(batch.rows))
    return vectors
