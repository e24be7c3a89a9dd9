"""The training loop, top to bottom: cache -> batches -> student -> loss -> checkpoints.

Each epoch draws its order and its dropout noise from (seed, epoch) alone, so a run resumed
from the checkpoint of epoch k continues exactly as an uninterrupted run would.
"""

import errno
import io
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm

from distilcache import hf_local
from distilcache.cache_format import CacheError, CacheLock, open_cache
from distilcache.cache_format.errors import ConfigError, DistilcacheError
from distilcache.cache_format.hashing import sha256_json
from distilcache.cache_format.reader import vector_array
from distilcache.cache_format.split import split_by_id
from distilcache.cache_format.writer import write_atomic, write_text_atomic
from distilcache.devices import autocast, resolve_device, resolve_precision
from distilcache.train.data import iter_batches, length_grouped, load_rows
from distilcache.train.losses import LOSSES, distillation_loss, similarity_matrix_loss
from distilcache.train.models import StudentConfig, StudentModel, build_student, seed_config
from distilcache.train.persistence import save_student

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "summary.json"
DEFAULT_LR = {"bilstm": 2e-3, "transformer": 5e-4, "seed": 4e-4}  # seed: dev 82.4 vs 79.9 at 1e-4 (3 epochs, 54k rows)
# BiLSTM sizes a preset gives where no flag sets them, as fractions of the teacher dim. For a 384-d teacher:
# default, a 128-unit LSTM; fast, a 128-d embedding (PCA of the token vectors) and a 64-unit LSTM.
# benchmarks/ablation.py measured the candidates (variants F-K)
PRESETS: dict[str, dict[str, Fraction]] = {
    "default": {"hidden": Fraction(1, 3)},
    "fast": {"embedding_dim": Fraction(1, 3), "hidden": Fraction(1, 6)},
}


@dataclass
class TrainConfig:
    cache: Path | str  # a directory or a URI (s3://...), pulled into its local mirror
    output: Path
    student: str = "bilstm"  # bilstm | transformer
    preset: str = "default"  # default | fast: the BiLSTM sizes of PRESETS, under any size given here
    layers: int | None = None  # default: 1 (bilstm), 2 (transformer)
    hidden: int | None = None  # default: the preset's (bilstm, per direction), 256 (transformer)
    # bilstm: default the teacher dim when starting from token vectors (smaller: their PCA), else 256
    embedding_dim: int | None = None
    concat_embeddings: bool = True  # bilstm: pool [embedding; LSTM states]
    heads: int = 4  # transformer
    dropout: float = 0.1
    # auto: a bilstm starts from the cache's token vectors, a transformer from its seed layers, when present;
    # random | token-vectors (bilstm) | seed (transformer)
    init: str = "auto"
    pooling: str = "cache"  # cache: the cached per-token weights (IDF); mean: uniform weights
    # learn per-token scores that reweight those weights; default: on for a bilstm (benchmarks/ablation.py,
    # variant N vs F: STS-B dev 84.3 vs 83.4), off for a transformer (not measured)
    attention_pooling: bool | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None  # default: 2e-3 (bilstm), 5e-4 (transformer), 4e-4 (seeded transformer)
    # bilstm: the token embedding learns at lr times this (0 freezes it); 3: benchmarks/ablation.py, variants N, P, Q
    embedding_lr_scale: float = 3.0
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of all steps
    schedule: str = "linear"  # linear | cosine decay after warm-up
    grad_clip: float = 1.0
    loss: str = "cosine"  # cosine | mse | mix
    mse_weight: float = 0.5  # the MSE share of loss "mix"
    similarity_weight: float = 0.0  # weight of the in-batch similarity-matrix loss added to the loss above
    temperature: float = 0.05  # of that similarity-matrix loss
    val_fraction: float = 0.05
    patience: int = 3  # epochs without a better held-out fidelity before stopping
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA where supported, else fp32
    resume: bool = False

    def validate(self) -> None:
        """Refuse, before any work, options that cannot give a student."""
        for name, low in (("epochs", 1), ("batch_size", 1), ("patience", 1), ("heads", 1), ("seed", 0)):
            if getattr(self, name) < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)}")
        for name in ("layers", "hidden", "embedding_dim"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        numbers = {"dropout": self.dropout, "lr": self.lr, "embedding_lr_scale": self.embedding_lr_scale,
                   "weight_decay": self.weight_decay, "warmup": self.warmup, "grad_clip": self.grad_clip,
                   "mse_weight": self.mse_weight, "similarity_weight": self.similarity_weight,
                   "temperature": self.temperature, "val_fraction": self.val_fraction}
        for name, value in numbers.items():
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.temperature <= 0:
            raise ConfigError(f"--temperature must be > 0, got {self.temperature}")
        for name in ("embedding_lr_scale", "weight_decay", "grad_clip", "similarity_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.warmup <= 1 or not 0 <= self.mse_weight <= 1:
            raise ConfigError(f"--warmup and --mse-weight must be in [0, 1], got {self.warmup} and {self.mse_weight}")
        if self.student not in ("bilstm", "transformer"):
            raise ConfigError(f"--student must be bilstm or transformer, got {self.student!r}")
        if self.preset not in PRESETS:
            raise ConfigError(f"--preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.preset != "default" and self.student != "bilstm":
            raise ConfigError(f"--preset {self.preset} sizes a BiLSTM; it does not apply to --student {self.student}")
        if self.init not in ("auto", "random", "seed", "token-vectors"):
            raise ConfigError(f"--init must be auto, random, seed or token-vectors, got {self.init!r}")
        if (self.init == "seed" and self.student != "transformer") or (self.init == "token-vectors" and self.student != "bilstm"):
            raise ConfigError("--init seed applies to --student transformer, --init token-vectors to --student bilstm")
        if self.pooling not in ("cache", "mean"):
            raise ConfigError("--pooling must be cache or mean")
        if self.loss not in LOSSES:
            raise ConfigError(f"--loss must be one of {LOSSES}")
        if self.schedule not in ("linear", "cosine"):
            raise ConfigError("--schedule must be linear or cosine")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("--val-fraction must be between 0 and 1")

    def with_defaults(self, teacher_dim: int) -> "TrainConfig":
        """The per-student defaults filled in where this config leaves them unset: the preset's BiLSTM
        sizes, and attention pooling."""
        bilstm = self.student == "bilstm"
        attention = bilstm if self.attention_pooling is None else self.attention_pooling
        sizes = {k: max(1, int(f * teacher_dim)) for k, f in PRESETS[self.preset].items() if getattr(self, k) is None} if bilstm else {}
        return replace(self, attention_pooling=attention, **sizes)

    def settings(self) -> dict[str, Any]:
        """What decides the trained weights (device, precision and resume do not change the recipe)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()
                if k not in ("cache", "output", "device", "precision", "resume")}


def _resolve_init(config: TrainConfig, manifest: dict[str, Any]) -> str:
    """What the student starts from: explicit, or (auto) the best the cache offers."""
    if config.init != "auto":
        needed = {"seed": ("seed", "--export-seed-layers K"), "token-vectors": ("token_vectors", "token vectors (the default)")}
        if config.init in needed and not manifest.get(needed[config.init][0]):
            raise ConfigError(f"--init {config.init}: the cache holds no {config.init}; precompute with {needed[config.init][1]}")
        return config.init
    if config.student == "bilstm":
        return "token-vectors" if manifest.get("token_vectors") else "random"
    seed = manifest.get("seed")
    fits = seed and config.layers in (None, len(seed["layers"])) and config.hidden in (None, manifest["vector"]["dim"])
    return "seed" if fits else "random"


def _load_token_vectors(cache, vocab_size: int, unk_id: int | None) -> np.ndarray:
    """The teacher's static vector per token; tokens the student tokenizer added (characters the
    teacher reads as [UNK]) start from the [UNK] vector: what the teacher made of them."""
    column = cache.manifest["token_vectors"]
    table = pq.read_table(cache.token_vectors_path)
    vectors = vector_array(table["vector"], column["dim"]).astype(np.float32)
    added = vocab_size - len(vectors)
    if added > 0:
        vectors = np.concatenate([vectors, np.repeat(vectors[[unk_id or 0]], added, axis=0)])
    return vectors


def _build_student(config: TrainConfig, init: str, cache, vocab_size: int, pad_id: int, unk_id: int | None) -> StudentModel:
    dim, max_length = cache.dim, cache.manifest["pooling"]["max_length"]
    if init == "seed":
        seed_dir = cache.seed_dir
        seed = seed_config(seed_dir)
        student = StudentConfig("transformer", max(vocab_size, seed.vocab_size), dim, pad_id, seed.hidden_size, seed.num_hidden_layers,
                                num_heads=seed.num_attention_heads, max_positions=seed.max_position_embeddings, dropout=config.dropout,
                                attention_pooling=config.attention_pooling)
        return build_student(student, seed_dir=seed_dir)
    if config.student == "transformer":
        return build_student(StudentConfig("transformer", vocab_size, dim, pad_id, config.hidden or 256, config.layers or 2,
                                           num_heads=config.heads, max_positions=max(max_length, 8), dropout=config.dropout,
                                           attention_pooling=config.attention_pooling))
    vectors = _load_token_vectors(cache, vocab_size, unk_id) if init == "token-vectors" else None
    embedding_dim = config.embedding_dim or (vectors.shape[1] if vectors is not None else 256)
    student = StudentConfig("bilstm", vocab_size, dim, pad_id, config.hidden, config.layers or 1,
                            embedding_dim=embedding_dim, concat_embeddings=config.concat_embeddings, dropout=config.dropout,
                            attention_pooling=config.attention_pooling)
    return build_student(student, token_vectors=vectors)


def _parameter_groups(model: StudentModel, lr: float, embedding_lr_scale: float) -> list[dict[str, Any]]:
    """A BiLSTM's token embedding in a group of its own, at lr * embedding_lr_scale (0: frozen)."""
    embedding = getattr(model.encoder, "embedding", None)
    if embedding is None or embedding_lr_scale == 1:
        return [{"params": list(model.parameters())}]
    embedding.weight.requires_grad_(embedding_lr_scale > 0)
    rest = [p for name, p in model.named_parameters() if not name.startswith("encoder.embedding.")]
    groups = [{"params": rest}]
    if embedding_lr_scale > 0:
        groups.append({"params": [embedding.weight], "lr": lr * embedding_lr_scale})
    return groups


def _loss(predicted: torch.Tensor, targets: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    loss = distillation_loss(predicted, targets, config.loss, config.mse_weight)
    if config.similarity_weight:
        loss = loss + config.similarity_weight * similarity_matrix_loss(predicted, targets, config.temperature)
    return loss


def _lr_lambda(total_steps: int, warmup: float, schedule: str):
    warmup_steps = max(1, int(total_steps * warmup))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 1 - progress if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class TrainingError(DistilcacheError):
    """A training run that cannot produce its student."""


def _check_finite(loss: torch.Tensor, rows, members: np.ndarray, epoch: int, where: str) -> None:
    if not torch.isfinite(loss):
        ids = [rows.ids[i] for i in members[:5]]
        raise TrainingError(f"epoch {epoch}: the {where} loss is {loss.item()} on the batch of rows {ids}"
                            f"{' and more' if len(members) > 5 else ''}: a non-finite teacher vector (`distilcache verify` "
                            "the cache) or a diverging student (lower --lr)")


@torch.no_grad()
def measure_held_out(model: StudentModel, rows, batches, pad_id: int, config: TrainConfig, device: torch.device, precision: str,
                     epoch: int) -> dict[str, float]:
    """Mean loss and fidelity (mean cosine between student and teacher vectors) on the given rows."""
    model.eval()
    loss_sum, cosine_sum, count = 0.0, 0.0, 0
    for members, inputs, targets in iter_batches(rows, batches, pad_id):
        inputs, targets = inputs.to(device), targets.to(device)
        with autocast(device, precision):
            predicted = model(inputs.token_ids, inputs.lengths, inputs.weights).float()
        loss = _loss(predicted, targets, config)
        _check_finite(loss, rows, members, epoch, "held-out")
        loss_sum += loss.item() * len(targets)
        cosine_sum += torch.nn.functional.cosine_similarity(predicted, targets, dim=-1).sum().item()
        count += len(targets)
    return {"loss": loss_sum / max(count, 1), "fidelity": cosine_sum / max(count, 1)}


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()  # serialised first: torch.save on a full disk fails with an opaque message
    torch.save(state, buffer)
    write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def _write_log(output: Path, history: list[dict[str, Any]]) -> None:
    write_text_atomic("".join(json.dumps(entry) + "\n" for entry in history), output / LOG_FILE)


def _cache_identity(cache) -> dict[str, str]:
    return {"fingerprint": cache.manifest["fingerprint"], "rows_sha256": sha256_json(cache.manifest["shards"])}


def train(config: TrainConfig) -> dict[str, Any]:
    """Train a student on config.cache into config.output; returns the summary."""
    config.validate()
    cache = open_cache(config.cache)
    if cache.num_rows == 0:
        raise CacheError(f"{cache.path} holds no rows: there is nothing to train on")
    config = config.with_defaults(cache.dim)
    output = config.output
    if (output / CHECKPOINT_FILE).exists() and not config.resume:
        raise FileExistsError(f"{output} already holds a training run; pass --resume to continue it or choose another --output")
    if config.resume and not (output / CHECKPOINT_FILE).exists():
        raise FileNotFoundError(f"--resume: no {CHECKPOINT_FILE} in {output}")
    with CacheLock(output):  # a second run into the same directory is refused
        try:
            return _train(config, cache)
        except (OSError, RuntimeError, SafetensorError) as error:
            if not _is_write_failure(error):
                raise
            raise TrainingError(f"cannot write into {output}: {error}. The last complete student and checkpoint there are "
                                "kept: free space (or make it writable) and rerun with --resume") from error


def _is_write_failure(error: Exception) -> bool:
    """A full, read-only or forbidden output (what safetensors and torch report as text, OSError by errno)."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
    return any(f"os error {code}" in str(error) for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES))


def _train(config: TrainConfig, cache) -> dict[str, Any]:
    identity = _cache_identity(cache)
    output = config.output
    checkpoint_path = output / CHECKPOINT_FILE
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device, training=True)
    tokenizer = hf_local.load_tokenizer(cache.student_tokenizer_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    init = _resolve_init(config, cache.manifest)

    rows = load_rows(cache)
    bad = rows.nonfinite()
    if len(bad):  # checksums cannot tell: a NaN computed before the manifest was written verifies
        raise CacheError(f"{cache.path}: {len(bad)} row(s) have a non-finite teacher vector, e.g. ids "
                         f"{[rows.ids[i] for i in bad[:5]]}; `distilcache verify` lists the first of each shard")
    if config.pooling == "mean":  # the student ignores the cached IDF weights
        rows.weights = np.repeat(1.0 / np.maximum(rows.lengths, 1), rows.lengths).astype(np.float32)
    train_idx, val_idx = split_by_id(rows.ids, config.val_fraction)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ConfigError(f"{len(rows)} rows split into {len(train_idx)} train / {len(val_idx)} held-out: adjust --val-fraction")
    lengths = np.maximum(rows.lengths, 1)
    val_batches = length_grouped(val_idx, lengths, config.batch_size, rng=None)
    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)

    torch.manual_seed(config.seed)
    model = _build_student(config, init, cache, len(tokenizer), pad_id, tokenizer.unk_token_id).to(device)
    student_config = model.config
    lr = config.lr or DEFAULT_LR["seed" if init == "seed" else config.student]
    optimizer = torch.optim.AdamW(_parameter_groups(model, lr, config.embedding_lr_scale), lr=lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(steps_per_epoch * config.epochs, config.warmup, config.schedule))
    state = {"epoch": 0, "best_fidelity": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}

    if config.resume:
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=True)
        for key, label in (("cache", "cache"), ("settings", "training settings")):
            expected = identity if key == "cache" else config.settings()
            if checkpoint[key] != expected:
                fields = sorted(k for k in expected.keys() | checkpoint[key].keys() if expected.get(k) != checkpoint[key].get(k))
                raise ConfigError(f"--resume: the {label} differ from the checkpoint's in {fields}; resume with the same ones or start a new --output")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = checkpoint["state"]
        log.info("resuming %s after epoch %d", output, state["epoch"])
    else:
        untrained = measure_held_out(model, rows, val_batches, pad_id, config, device, precision, epoch=0)
        state["untrained_fidelity"] = untrained["fidelity"]
        log.info("untrained student: held-out fidelity %.4f", untrained["fidelity"])

    info = {
        "pooling": {k: cache.manifest["pooling"][k] for k in ("mode", "smoothing", "max_length")}
        | ({"mode": "mean"} if config.pooling == "mean" else {}),
        "teacher": {k: cache.manifest["teacher"][k] for k in ("name", "architecture", "hidden_size")},
        "cache": identity | {"path": str(cache.path.resolve())},
        "training": config.settings() | {"lr": lr, "init": init},
    }
    params = sum(p.numel() for p in model.parameters())
    log.info("%s student (init %s), %d parameters, %d train / %d held-out rows, %s on %s", student_config.kind, init, params,
             len(train_idx), len(val_idx), precision, device)

    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if state["bad_epochs"] >= config.patience:
            break
        torch.manual_seed(config.seed * 1_000_003 + epoch)
        batches = length_grouped(train_idx, lengths, config.batch_size, rng=np.random.default_rng([config.seed, epoch]))
        model.train()
        started, loss_sum, seen = time.perf_counter(), 0.0, 0
        with tqdm(total=len(train_idx), desc=f"epoch {epoch}/{config.epochs}", unit=" rows", mininterval=1) as bar:
            for members, inputs, targets in iter_batches(rows, batches, pad_id):
                inputs, targets = inputs.to(device), targets.to(device)
                with autocast(device, precision):
                    predicted = model(inputs.token_ids, inputs.lengths, inputs.weights).float()
                loss = _loss(predicted, targets, config)
                _check_finite(loss, rows, members, epoch, "training")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(targets)
                seen += len(targets)
                bar.update(len(targets))
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        held_out = measure_held_out(model, rows, val_batches, pad_id, config, device, precision, epoch)
        seconds = time.perf_counter() - started
        entry = {"epoch": epoch, "train_loss": loss_sum / seen, "val_loss": held_out["loss"], "val_fidelity": held_out["fidelity"],
                 "lr": scheduler.get_last_lr()[0], "seconds": round(seconds, 2), "rows_per_second": round(seen / seconds, 1)}
        state["history"].append(entry)
        log.info("epoch %d: train loss %.4f, held-out loss %.4f, fidelity %.4f", epoch, entry["train_loss"], entry["val_loss"], entry["val_fidelity"])
        state["epoch"] = epoch
        if held_out["fidelity"] > state["best_fidelity"]:
            state |= {"best_fidelity": held_out["fidelity"], "best_epoch": epoch, "bad_epochs": 0}
            save_student(output, model, info | {"best_epoch": epoch, "val_fidelity": held_out["fidelity"]},
                         cache.student_tokenizer_files, cache.idf_path)
        else:
            state["bad_epochs"] += 1
        _save_checkpoint(checkpoint_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                           "scheduler": scheduler.state_dict(), "state": state,
                                           "cache": identity, "settings": config.settings()})
        _write_log(output, state["history"])
        if state["bad_epochs"] >= config.patience:
            log.info("early stop: no better held-out fidelity for %d epochs", config.patience)

    if state["best_epoch"] == 0:
        raise TrainingError(f"no epoch produced a student in {output} (held-out fidelity {state['best_fidelity']})")
    summary = {"student": student_config.kind, "parameters": params, "train_rows": int(len(train_idx)),
               "val_rows": int(len(val_idx)), "untrained_fidelity": state["untrained_fidelity"],
               "best_epoch": state["best_epoch"], "best_val_fidelity": state["best_fidelity"],
               "epochs_run": state["epoch"], "history": state["history"]}
    write_text_atomic(json.dumps(summary, indent=2) + "\n", output / SUMMARY_FILE)
    return summary
