"""Seed layers: the teacher's embeddings and K of its layers, saved inside the cache so a
transformer student can start from them without the teacher ever being loaded again."""

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distilcache import hf_local
from distilcache.cache_format.errors import ConfigError
from distilcache.cache_format.hashing import sha256_file
from distilcache.cache_format.layout import SEED_DIR, TMP_PREFIX
from distilcache.cache_format.seed import seed_layer_indices


def export_seed_layers(model: nn.Module, keep: int, cache_dir: Path, token_ids: np.ndarray | None = None) -> None:
    """Save the teacher's embeddings and `keep` of its layers as a Hugging Face model in cache_dir/seed; with
    token_ids (a large vocabulary), only those rows of the token embedding, listed in the seed's config."""
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(f"{type(model).__name__} has no encoder.layer list (a BERT-family encoder); cannot export seed layers")
    indices = seed_layer_indices(len(layers), keep)
    seed = copy.deepcopy(model).float().cpu()
    seed.encoder.layer = nn.ModuleList(seed.encoder.layer[i] for i in indices)
    seed.config.num_hidden_layers = keep
    seed.config.distilcache_seed_layers = indices  # recorded in config.json: which teacher layers these are
    if token_ids is not None:
        rows = seed.get_input_embeddings().weight.data[torch.as_tensor(token_ids, dtype=torch.long)].clone()
        seed.set_input_embeddings(nn.Embedding.from_pretrained(rows, freeze=False))
        seed.config.vocab_size = len(token_ids)
        seed.config.distilcache_seed_token_ids = [int(i) for i in token_ids]  # the tokenizer id of each embedding row
    tmp = cache_dir / f"{TMP_PREFIX}{os.getpid()}-{SEED_DIR}"
    shutil.rmtree(tmp, ignore_errors=True)
    hf_local.save_model(seed, tmp)
    tmp.rename(cache_dir / SEED_DIR)


def seed_entry(cache_dir: Path, num_layers: int) -> dict[str, Any]:
    """The manifest entry, with the layers read from the exported seed itself: a cache resumed by a
    later version whose rule picks other layers still records the ones it holds."""
    files = {f"{SEED_DIR}/{p.name}": sha256_file(p) for p in sorted((cache_dir / SEED_DIR).iterdir())}
    config = json.loads((cache_dir / SEED_DIR / "config.json").read_text(encoding="utf-8"))
    vocabulary = "used" if "distilcache_seed_token_ids" in config else "all"
    return {"dir": SEED_DIR, "layers": config["distilcache_seed_layers"], "teacher_layers": num_layers, "vocabulary": vocabulary,
            "files": files}
