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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm

from distilcache import hf_local
from distilcache.cache_format import Cache, CacheError, CacheLock, open_cache
from distilcache.cache_format.errors import ConfigError, DistilcacheError
from distilcache.cache_format.reader import vector_array
from distilcache.cache_format.token_states import read_projection
from distilcache.cache_format.writer import write_atomic, write_text_atomic
from distilcache.devices import autocast, resolve_device, resolve_precision
from distilcache.pairs import pairs_spearman, read_sts
from distilcache.student.directory import save_student
from distilcache.student.encode import Student
from distilcache.student.model import StudentConfig, StudentModel
from distilcache.student.vocabulary import PieceReader
from distilcache.train.build import build_student, seed_config
from distilcache.train.config import DEFAULT_LR, TrainConfig, differing_keys
from distilcache.train.data import Batch, CacheRows, CacheScan, held_out_batches, scan_cache, training_batches
from distilcache.train.losses import TeacherQueue, distillation_loss, matryoshka_loss, similarity_matrix_loss, token_state_loss
from distilcache.weighting import IdfTable
from distilcache.weighting.student_vocab import LARGE_VOCABULARY

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "summary.json"
def _resolve_init(config: TrainConfig, cache: Cache) -> str:
    """What the student starts from: explicit, or (auto) the best the cache offers."""
    held = {"seed": cache.seed_dir is not None, "token-vectors": cache.token_vectors_path is not None}
    if config.init != "auto":
        how = {"seed": "--export-seed-layers K", "token-vectors": "token vectors (the default)"}
        if config.init in held and not held[config.init]:
            raise ConfigError(f"--init {config.init}: the cache holds no {config.init}; precompute with {how[config.init]}")
        return config.init
    if config.student == "bilstm":
        return "token-vectors" if held["token-vectors"] else "random"
    fits = held["seed"] and (config.layers or 0) <= len(cache.seed_layers) and config.hidden in (None, cache.dim)
    return "seed" if fits else "random"


def _table_ids(config: TrainConfig, tokenizer: Any, scan: CacheScan, pad_id: int) -> np.ndarray | None:
    """The tokenizer id of each row of the student's embedding table: the pieces the cache's rows use and the
    special tokens; None: the whole tokenizer, row i being token id i."""
    whole = config.vocabulary == "tokenizer" or (config.vocabulary == "auto" and len(tokenizer) <= LARGE_VOCABULARY)
    if whole:
        return None
    specials = np.array([*tokenizer.all_special_ids, pad_id], dtype=np.int64)
    return np.union1d(scan.token_ids, specials).astype(np.int64)


def _load_token_vectors(cache: Cache, table_ids: np.ndarray, unk_id: int | None) -> np.ndarray:
    """The teacher's static vector of each table row's token; a token without one (a character the student
    tokenizer added, which the teacher reads as [UNK]) starts from the [UNK] vector: what the teacher made of it."""
    table = pq.read_table(cache.token_vectors_path)
    known = table["token_id"].to_numpy().astype(np.int64)
    vectors = vector_array(table["vector"], cache.dim).astype(np.float32)
    row_of = np.full(max(int(known.max(initial=-1)), int(table_ids.max(initial=-1))) + 1, -1, dtype=np.int64)
    row_of[known] = np.arange(len(known))
    rows = row_of[table_ids]
    fallback = row_of[unk_id] if unk_id is not None and unk_id < len(row_of) and row_of[unk_id] >= 0 else None
    start = np.zeros((len(table_ids), cache.dim), dtype=np.float32)
    start[rows >= 0] = vectors[rows[rows >= 0]]
    if fallback is not None:
        start[rows < 0] = vectors[fallback]
    return start


def _bracket_rows(config: TrainConfig, tokenizer: Any, lookup: np.ndarray | None) -> dict[str, int]:
    """The student's start_id and end_id under --special-tokens: the table rows of the two tokens the tokenizer
    puts around a text ([CLS] and [SEP], <s> and </s>); empty without the option."""
    if not config.special_tokens:
        return {}
    around = tokenizer("", add_special_tokens=True)["input_ids"]
    if len(around) != 2:
        raise ConfigError(f"--special-tokens: the cache's tokenizer puts {len(around)} special token(s) around a text, "
                          "not a start and an end; train with --no-special-tokens")
    start, end = (int(token if lookup is None else lookup[token]) for token in around)
    return {"start_id": start, "end_id": end}


def _build_student(config: TrainConfig, init: str, cache: Cache, table_ids: np.ndarray, pad_row: int,
                   unk_id: int | None, brackets: dict[str, int]) -> StudentModel:
    dim, max_length, vocab_size = cache.dim, cache.pooling["max_length"], len(table_ids)
    common = {"dropout": config.dropout, "attention_pooling": config.attention_pooling, **brackets}
    if init == "seed":
        seed = seed_config(cache.seed_dir)
        student = StudentConfig("transformer", vocab_size, dim, pad_row, seed.hidden_size, config.layers or seed.num_hidden_layers,
                                num_heads=seed.num_attention_heads, max_positions=seed.max_position_embeddings, **common)
        return build_student(student, seed_dir=cache.seed_dir, table_ids=table_ids, unk_id=unk_id)
    if config.student == "transformer":
        return build_student(StudentConfig("transformer", vocab_size, dim, pad_row, config.hidden or 256, config.layers or 2,
                                           num_heads=config.heads, max_positions=max(max_length, 8), **common))
    vectors = _load_token_vectors(cache, table_ids, unk_id) if init == "token-vectors" else None
    embedding_dim = config.embedding_dim or (vectors.shape[1] if vectors is not None else 256)
    student = StudentConfig("bilstm", vocab_size, dim, pad_row, config.hidden, config.layers or 1,
                            embedding_dim=embedding_dim, concat_embeddings=config.concat_embeddings, **common)
    return build_student(student, token_vectors=vectors)


def _parameter_groups(model: StudentModel, lr: float, embedding_lr_scale: float, anchored: bool) -> list[dict[str, Any]]:
    """A BiLSTM's token embedding in a group of its own, at lr * embedding_lr_scale (0: frozen), without weight
    decay when it is anchored (EmbeddingAnchor pulls it instead)."""
    embedding = getattr(model.encoder, "embedding", None)
    if embedding is None or (embedding_lr_scale == 1 and not anchored):
        return [{"params": list(model.parameters())}]
    embedding.weight.requires_grad_(embedding_lr_scale > 0)
    rest = [p for name, p in model.named_parameters() if not name.startswith("encoder.embedding.")]
    groups = [{"params": rest}]
    if embedding_lr_scale > 0:
        groups.append({"params": [embedding.weight], "lr": lr * embedding_lr_scale} | ({"weight_decay": 0.0} if anchored else {}))
    return groups


class EmbeddingAnchor:
    """Decoupled like AdamW's weight decay, but toward the embedding's starting vectors instead of zero:
    after each step, weight -= group lr * strength * (weight - start). Rows no batch touches stay where
    they started (the teacher's token vectors) instead of shrinking."""

    def __init__(self, model: StudentModel, optimizer: torch.optim.Optimizer, strength: float):
        embedding = getattr(model.encoder, "embedding", None)
        if embedding is None:
            raise ConfigError("--embedding-anchor applies to a BiLSTM student's token embedding")
        self.weight = embedding.weight
        self.start = embedding.weight.detach().clone()  # rebuilt the same on --resume: the student is built before loading
        self.group = next(g for g in optimizer.param_groups if any(p is self.weight for p in g["params"]))
        self.strength = strength

    @torch.no_grad()
    def step(self) -> None:
        self.weight.sub_(self.group["lr"] * self.strength * (self.weight - self.start))


def _loss(predicted: torch.Tensor, teacher_vectors: torch.Tensor, config: TrainConfig, queue: TeacherQueue | None) -> torch.Tensor:
    loss = distillation_loss(predicted, teacher_vectors, config.loss, config.mse_weight)
    if config.similarity_weight:
        earlier = None if queue is None else queue.vectors
        loss = loss + config.similarity_weight * similarity_matrix_loss(predicted, teacher_vectors, config.temperature, earlier)
    if config.matryoshka_dims and config.matryoshka_weight:
        loss = loss + config.matryoshka_weight * matryoshka_loss(predicted, teacher_vectors, config.matryoshka_dims, config.temperature)
    return loss


def lr_schedule(total_steps: int, warmup: float, schedule: str):
    warmup_steps = max(1, int(total_steps * warmup))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 1 - progress if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class TrainingError(DistilcacheError):
    """A training run that cannot produce its student."""


def _check_finite(loss: torch.Tensor, batch: Batch, epoch: int, where: str) -> None:
    if not torch.isfinite(loss):
        ids = batch.ids[:5].to_pylist()
        raise TrainingError(f"epoch {epoch}: the {where} loss is {loss.item()} on the batch of rows {ids}"
                            f"{' and more' if len(batch) > 5 else ''}: a non-finite teacher vector (`distilcache verify` "
                            "the cache) or a diverging student (lower --lr)")


Projection = tuple[torch.Tensor, torch.Tensor]  # the cache's token-state projection on the device: mean, components


def _batch_loss(model: StudentModel, batch: Batch, config: TrainConfig, device: torch.device, precision: str,
                projection: Projection | None, queue: TeacherQueue | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, the student's vectors, the teacher's) of one batch; with a projection, the loss adds the token-state loss,
    with a queue, its rows join the similarity-matrix loss (held-out rows are measured without one)."""
    inputs, teacher_vectors = batch.inputs.to(device), batch.teacher_vectors.to(device).float()
    with autocast(device, precision):
        states = model.token_states(inputs.token_ids, inputs.lengths)
        predicted = model.pool(states, inputs.weights).float()
        outputs = model.project(states) if projection is not None else None
    loss = _loss(predicted, teacher_vectors, config, queue)
    if outputs is not None:
        targets, mask = batch.token_states.to(device), batch.state_mask.to(device)
        loss = loss + config.token_loss * token_state_loss(outputs, targets, mask, *projection)
    return loss, predicted, teacher_vectors


def _token_projection(config: TrainConfig, cache: Cache, device: torch.device) -> Projection | None:
    """The cache's token-state projection under --token-loss, else None."""
    if not config.token_loss:
        return None
    if not cache.token_states:
        raise ConfigError(f"--token-loss: {cache.path} holds no token states; precompute it with --token-states K")
    projection = read_projection(cache.token_projection_path, cache.dim, cache.token_states)
    return torch.from_numpy(projection.mean).to(device), torch.from_numpy(projection.components).to(device)


@torch.no_grad()
def measure_held_out(model: StudentModel, batches: Iterator[Batch], config: TrainConfig, device: torch.device, precision: str,
                     epoch: int, projection: Projection | None = None) -> dict[str, float]:
    """Mean loss and fidelity (mean cosine between student and teacher vectors) on the given batches."""
    model.eval()
    loss_sum, cosine_sum, count = 0.0, 0.0, 0
    for batch in batches:
        loss, predicted, teacher_vectors = _batch_loss(model, batch, config, device, precision, projection)
        _check_finite(loss, batch, epoch, "held-out")
        loss_sum += loss.item() * len(teacher_vectors)
        cosine_sum += torch.nn.functional.cosine_similarity(predicted, teacher_vectors, dim=-1).sum().item()
        count += len(teacher_vectors)
    return {"loss": loss_sum / max(count, 1), "fidelity": cosine_sum / max(count, 1)}


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()  # serialised first: torch.save on a full disk fails with an opaque message
    torch.save(state, buffer)
    write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def _write_log(output: Path, history: list[dict[str, Any]]) -> None:
    write_text_atomic("".join(json.dumps(entry) + "\n" for entry in history), output / LOG_FILE)


def train(config: TrainConfig) -> dict[str, Any]:
    """Train a student on config.cache into config.output; returns the summary."""
    config.validate()
    cache = open_cache(config.cache)
    if cache.num_rows == 0:
        raise CacheError(f"{cache.path} holds no rows: there is nothing to train on")
    config = config.with_defaults(cache.dim)
    if config.matryoshka_dims and config.matryoshka_dims[-1] >= cache.dim:
        raise ConfigError(f"--matryoshka-dims must be below the teacher's dim {cache.dim}, got {config.matryoshka_dims[-1]}")
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


def _train(config: TrainConfig, cache: Cache) -> dict[str, Any]:
    identity = cache.identity
    output = config.output
    checkpoint_path = output / CHECKPOINT_FILE
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device, training=True)
    tokenizer = hf_local.load_tokenizer(cache.student_tokenizer_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    init = _resolve_init(config, cache)
    dev_sets = [read_sts(Path(path)) for path in config.dev_sts]  # a bad file fails before any work

    projection = _token_projection(config, cache, device)  # a cache without token states fails before the scan
    scan = scan_cache(cache, config.val_fraction, len(tokenizer), token_states=projection is not None)
    if scan.train_rows == 0 or scan.held_out_rows == 0:
        raise ConfigError(f"{cache.num_rows} rows split into {scan.train_rows} train / {scan.held_out_rows} held-out: "
                          "adjust --val-fraction")
    table_ids = _table_ids(config, tokenizer, scan, pad_id)
    reader = None if table_ids is None else PieceReader(table_ids, tokenizer, fallback_row=0)
    lookup = None if reader is None else reader.lookup
    pad_row = pad_id if lookup is None else int(lookup[pad_id])
    brackets = _bracket_rows(config, tokenizer, lookup)
    if table_ids is not None:
        log.info("embedding table: the %d pieces the cache uses of the tokenizer's %d", len(table_ids), len(tokenizer))

    def student_rows(rows: CacheRows) -> CacheRows:
        """The rows as the student reads them: token ids as table rows, and uniform weights under --token-weights mean."""
        if lookup is not None:
            rows.token_ids = lookup[rows.token_ids].astype(np.int32)
        if config.token_weights == "mean":
            rows.weights = np.repeat(1.0 / np.maximum(rows.lengths, 1), rows.lengths).astype(np.float32)
        return rows

    def held_out() -> Iterator[Batch]:
        return held_out_batches(scan, cache.dim, student_rows, config.batch_size, config.shuffle_buffer, pad_row)

    steps_per_epoch = math.ceil(scan.train_rows / config.batch_size)

    torch.manual_seed(config.seed)
    whole = np.arange(len(tokenizer)) if table_ids is None else table_ids
    model = _build_student(config, init, cache, whole, pad_row, tokenizer.unk_token_id, brackets).to(device)
    student_config = model.config
    lr = config.lr or DEFAULT_LR["seed" if init == "seed" else config.student]
    anchored = config.embedding_anchor > 0 and config.embedding_lr_scale > 0  # a frozen embedding stays put anyway
    optimizer = torch.optim.AdamW(_parameter_groups(model, lr, config.embedding_lr_scale, anchored), lr=lr,
                                  weight_decay=config.weight_decay)
    anchor = EmbeddingAnchor(model, optimizer, config.embedding_anchor) if anchored else None
    queue = TeacherQueue(config.similarity_queue, cache.dim, device) if config.similarity_queue else None
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(steps_per_epoch * config.epochs, config.warmup, config.schedule))
    # best_score: what --select compares (held-out fidelity, or Spearman on the first --dev-sts set)
    state = {"epoch": 0, "best_score": -math.inf, "best_fidelity": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}

    if config.resume:
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=True)
        differences = {"cache": differing_keys(identity, checkpoint["cache"]),
                       "training settings": config.differences(TrainConfig.upgrade_settings(checkpoint["settings"]))}
        for label, fields in differences.items():
            if fields:
                raise ConfigError(f"--resume: the {label} differ from the checkpoint's in {fields}; resume with the same ones or start a new --output")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if queue is not None:
            queue.restore(checkpoint["queue"])
        state = {"best_score": checkpoint["state"]["best_fidelity"]} | checkpoint["state"]  # before --select: fidelity
        log.info("resuming %s after epoch %d", output, state["epoch"])
    else:
        untrained = measure_held_out(model, held_out(), config, device, precision, 0, projection)
        state["untrained_fidelity"] = untrained["fidelity"]
        log.info("untrained student: held-out fidelity %.4f", untrained["fidelity"])

    info = {
        "pooling": {k: cache.pooling[k] for k in ("mode", "smoothing", "max_length")}
        | ({"mode": "mean"} if config.token_weights == "mean" else {}),
        "teacher": {k: cache.teacher[k] for k in ("name", "architecture", "hidden_size")},
        "cache": identity | {"path": str(cache.path.resolve())},
        "training": config.settings() | {"lr": lr, "init": init},
    }
    idf_file = cache.idf_path if info["pooling"]["mode"] == "idf" else None  # what encode weights with; a mean student needs none
    idf = IdfTable.load(idf_file) if dev_sets and idf_file is not None else None

    def dev_spearman() -> dict[str, float]:
        """Spearman x100 on each --dev-sts set, the model encoding as its saved student will."""
        student = Student(output, info, model, tokenizer, idf, reader=reader)
        return {pairs.name: pairs_spearman(lambda texts: student.encode(texts, show_progress_bar=False), pairs) for pairs in dev_sets}

    params = sum(p.numel() for p in model.parameters())
    log.info("%s student (init %s), %d parameters, %d train / %d held-out rows, %s on %s", student_config.kind, init, params,
             scan.train_rows, scan.held_out_rows, precision, device)

    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if state["bad_epochs"] >= config.patience:
            break
        torch.manual_seed(config.seed * 1_000_003 + epoch)
        batches = training_batches(scan, cache.dim, student_rows, config.batch_size, config.shuffle_buffer,
                                   np.random.default_rng([config.seed, epoch]), pad_row)
        model.train()
        started, loss_sum, seen = time.perf_counter(), 0.0, 0
        with tqdm(total=scan.train_rows, desc=f"epoch {epoch}/{config.epochs}", unit=" rows", mininterval=1) as bar:
            for batch in batches:
                loss, _, teacher_vectors = _batch_loss(model, batch, config, device, precision, projection, queue)
                _check_finite(loss, batch, epoch, "training")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                if anchor is not None:
                    anchor.step()
                scheduler.step()
                if queue is not None:
                    queue.push(teacher_vectors)
                loss_sum += loss.item() * len(teacher_vectors)
                seen += len(teacher_vectors)
                bar.update(len(teacher_vectors))
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        measured = measure_held_out(model, held_out(), config, device, precision, epoch, projection)
        seconds = time.perf_counter() - started
        entry = {"epoch": epoch, "train_loss": loss_sum / seen, "val_loss": measured["loss"], "val_fidelity": measured["fidelity"],
                 "lr": scheduler.get_last_lr()[0], "seconds": round(seconds, 2), "rows_per_second": round(seen / seconds, 1)}
        if dev_sets:
            entry["dev_spearman"] = dev_spearman()
        state["history"].append(entry)
        log.info("epoch %d: train loss %.4f, held-out loss %.4f, fidelity %.4f%s", epoch, entry["train_loss"], entry["val_loss"],
                 entry["val_fidelity"], "".join(f", {name} {value:.2f}" for name, value in entry.get("dev_spearman", {}).items()))
        state["epoch"] = epoch
        score = measured["fidelity"] if config.select == "fidelity" else entry["dev_spearman"][dev_sets[0].name]
        if score > state["best_score"]:
            state |= {"best_score": score, "best_fidelity": measured["fidelity"], "best_epoch": epoch, "bad_epochs": 0}
            save_student(output, model, info | {"best_epoch": epoch, "val_fidelity": measured["fidelity"]},
                         cache.student_tokenizer_files, idf_file, table_ids)
        else:
            state["bad_epochs"] += 1
        _save_checkpoint(checkpoint_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                           "scheduler": scheduler.state_dict(), "state": state,
                                           "cache": identity, "settings": config.settings()}
                         | ({"queue": queue.vectors} if queue is not None else {}))
        _write_log(output, state["history"])
        if state["bad_epochs"] >= config.patience:
            log.info("early stop: no better %s for %d epochs", "held-out fidelity" if config.select == "fidelity" else dev_sets[0].name,
                     config.patience)

    if state["best_epoch"] == 0:
        raise TrainingError(f"no epoch produced a student in {output} (held-out fidelity {state['best_fidelity']})")
    summary = {"student": student_config.kind, "parameters": params, "train_rows": scan.train_rows,
               "val_rows": scan.held_out_rows, "untrained_fidelity": state["untrained_fidelity"],
               "best_epoch": state["best_epoch"], "selected_by": config.select, "best_val_fidelity": state["best_fidelity"],
               "epochs_run": state["epoch"], "history": state["history"]}
    write_text_atomic(json.dumps(summary, indent=2) + "\n", output / SUMMARY_FILE)
    return summary
