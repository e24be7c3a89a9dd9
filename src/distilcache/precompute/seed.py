"""Seed layers: the teacher's embeddings and K evenly spaced layers, saved inside the cache so a
transformer student can start from them without the teacher ever being loaded again."""

import copy
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from distilcache.cache_format.hashing import sha256_file

SEED_DIR = "seed"


def seed_layer_indices(num_layers: int, keep: int) -> list[int]:
    """DistilBERT's choice generalised: layers 0, L/K, 2L/K, ... (K = L/2 gives one layer in two)."""
    if not 1 <= keep <= num_layers:
        raise ValueError(f"--export-seed-layers must be between 1 and the teacher's {num_layers} layers, got {keep}")
    return [i * num_layers // keep for i in range(keep)]


def export_seed_layers(model: nn.Module, keep: int, cache_dir: Path) -> None:
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(model).__name__} has no encoder.layer list (a BERT-family encoder); cannot export seed layers")
    indices = seed_layer_indices(len(layers), keep)
    seed = copy.deepcopy(model).float().cpu()
    seed.encoder.layer = nn.ModuleList(seed.encoder.layer[i] for i in indices)
    seed.config.num_hidden_layers = keep
    seed.config.distilcache_seed_layers = indices  # recorded in config.json: which teacher layers these are
    tmp = cache_dir / f".tmp-{SEED_DIR}"
    shutil.rmtree(tmp, ignore_errors=True)
    seed.save_pretrained(str(tmp))
    tmp.rename(cache_dir / SEED_DIR)


def seed_entry(cache_dir: Path, keep: int, num_layers: int) -> dict[str, Any]:
    files = {f"{SEED_DIR}/{p.name}": sha256_file(p) for p in sorted((cache_dir / SEED_DIR).iterdir())}
    return {"dir": SEED_DIR, "layers": seed_layer_indices(num_layers, keep), "teacher_layers": num_layers, "files": files}
