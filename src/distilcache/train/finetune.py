"""Fine-tune a trained student on labelled pairs, the teacher as a soft label (the simBERT -> siamese
recipe): alpha * (in-batch similarity-matrix loss against the teacher's vectors) + (1 - alpha) * (CoSENT
or cosine-MSE on the gold scores). The teacher's vectors come from a cache that holds the pair sentences
(`--cache`), else from the student itself before fine-tuning. The output is a student directory like any other.
"""

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from distilcache import hf_local
from distilcache.cache_format import open_cache
from distilcache.cache_format.errors import ConfigError, DataFileError
from distilcache.cache_format.reader import vector_array
from distilcache.devices import resolve_device
from distilcache.pairs import StsPairs, pairs_spearman, read_sts
from distilcache.student.directory import IDF_FILE, read_table_ids, save_student
from distilcache.student.encode import Student, load_student
from distilcache.student.model import pad_rows
from distilcache.train.config import FINETUNE_LR, FinetuneConfig
from distilcache.train.loop import TrainingError, lr_schedule
from distilcache.train.losses import cosent_loss, cosine_mse_loss, similarity_matrix_loss

log = logging.getLogger(__name__)

WARMUP = 0.1  # of all steps
_STUDENT_KEYS = ("format", "format_version", "student", "files")  # save_student writes these anew


def finetune(config: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune config.student on config.pairs into config.output; returns the summary."""
    config.validate()
    if config.output.exists() and (not config.output.is_dir() or any(config.output.iterdir())):
        raise ConfigError(f"{config.output}: exists and is not an empty directory; choose a new --output")
    device = resolve_device(config.device)
    student = load_student(config.student, device=device, backend="torch")
    pairs = read_sts(config.pairs)
    labels = gold_labels(pairs, config.pairs)
    texts = list(dict.fromkeys(pairs.sentence1 + pairs.sentence2))
    position = {text: i for i, text in enumerate(texts)}
    first = np.array([position[t] for t in pairs.sentence1])
    second = np.array([position[t] for t in pairs.sentence2])
    targets, from_cache = _teacher_vectors(texts, student, config.cache)
    table = student.weighted(texts)
    dev = read_sts(config.dev) if config.dev is not None else None
    model, pad_id = student.model, student.model.config.pad_id

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    lr = config.lr or FINETUNE_LR[model.config.kind]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(len(labels) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(steps, WARMUP, "linear"))
    targets_t = torch.from_numpy(targets).to(device)
    labels_t = torch.from_numpy(labels).to(device)
    history = [{"epoch": 0, "dev_spearman": _dev_score(student, dev)}]
    best = (history[0]["dev_spearman"], 0, {k: v.detach().clone() for k, v in model.state_dict().items()})
    log.info("fine-tuning %s on %d pairs (%d sentences, %d with the teacher's cached vectors), alpha %.2f, %s loss, lr %g",
             config.student, len(labels), len(texts), from_cache, config.alpha, config.loss, lr)
    for epoch in range(1, config.epochs + 1):
        model.train()
        order, started, loss_sum = rng.permutation(len(labels)), time.perf_counter(), 0.0
        with tqdm(total=len(order), desc=f"finetune {epoch}/{config.epochs}", unit=" pairs", leave=False) as bar:
            for start in range(0, len(order), config.batch_size):
                members = order[start : start + config.batch_size]
                rows = np.concatenate([first[members], second[members]])
                batch = pad_rows(table.rows, table.weights, table.starts[rows], table.counts[rows], pad_id).to(device)
                vectors = model(batch.token_ids, batch.lengths, batch.weights)
                loss = pair_loss(vectors, targets_t[torch.from_numpy(rows).to(device)], labels_t[torch.from_numpy(members).to(device)],
                                 config)
                if not torch.isfinite(loss):
                    raise TrainingError(f"epoch {epoch}: the fine-tuning loss is {loss.item()}; try a smaller --lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(members)
                bar.update(len(members))
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        model.eval()
        entry = {"epoch": epoch, "train_loss": loss_sum / len(order), "dev_spearman": _dev_score(student, dev),
                 "pairs_per_second": round(len(order) / (time.perf_counter() - started), 1)}
        history.append(entry)
        log.info("epoch %d: loss %.4f, dev Spearman %s", epoch, entry["train_loss"], entry["dev_spearman"])
        if dev is None or entry["dev_spearman"] > best[0]:
            best = (entry["dev_spearman"], epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    settings = {"pairs": str(config.pairs), "pairs_count": len(labels), "cache": None if config.cache is None else str(config.cache),
                "sentences_with_cached_vectors": from_cache, "dev": None if dev is None else str(config.dev), "loss": config.loss,
                "alpha": config.alpha, "temperature": config.temperature, "epochs": config.epochs, "best_epoch": best[1],
                "batch_size": config.batch_size, "lr": lr, "weight_decay": config.weight_decay, "seed": config.seed,
                "from_student": str(config.student)}
    info = {k: v for k, v in student.info.items() if k not in _STUDENT_KEYS} | {"finetune": settings}
    source = config.student
    tokenizer_files = [source / name for name in sorted(hf_local.TOKENIZER_FILES) if (source / name).is_file()]
    table_ids = read_table_ids(source, model.config, len(student.tokenizer))
    save_student(config.output, model.cpu(), info, tokenizer_files, source / IDF_FILE if student.idf is not None else None, table_ids)
    summary = {"output": str(config.output), "best_epoch": best[1], "history": history} | settings
    log.info("fine-tuned student %s: dev Spearman %s (epoch %d; before %s)", config.output, best[0], best[1], history[0]["dev_spearman"])
    return summary


def gold_labels(pairs: StsPairs, path: Path) -> np.ndarray:
    """The scores as labels in [0, 1]: 0/1 as they are, 0-5 divided by 5."""
    scores = pairs.scores
    if set(np.unique(scores)) <= {0.0, 1.0}:
        return scores.astype(np.float32)
    outside = np.flatnonzero((scores < 0) | (scores > 5))
    if len(outside):
        raise DataFileError(f"{path}: scores must be 0-5 or 0/1; pair {outside[0] + 1} ({pairs.sentence1[outside[0]]!r:.40}) "
                            f"has {scores[outside[0]]:g}")
    return (scores / 5).astype(np.float32)


def pair_loss(vectors: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, config: FinetuneConfig) -> torch.Tensor:
    """vectors: the batch's first sentences, then its second ones (teacher alike); labels: one per pair."""
    half = len(labels)
    cosines = F.cosine_similarity(vectors[:half], vectors[half:], dim=-1)
    gold = cosent_loss(cosines, labels) if config.loss == "cosent" else cosine_mse_loss(cosines, labels)
    if config.alpha == 0:
        return gold
    soft = similarity_matrix_loss(vectors, teacher, config.temperature)
    return config.alpha * soft + (1 - config.alpha) * gold


def _teacher_vectors(texts: list[str], student: Student, cache_location: Path | str | None) -> tuple[np.ndarray, int]:
    """The soft targets: the cache's teacher vector for every text it holds, the student's own (before
    fine-tuning) for the rest; and how many came from the cache."""
    vectors = student.encode(texts, show_progress_bar=False)
    if cache_location is None:
        return vectors, 0
    cache = open_cache(cache_location)
    teacher = student.info["teacher"]
    if (cache.teacher["name"], cache.dim) != (teacher["name"], student.dim):
        raise ConfigError(f"--cache {cache.path}: its teacher ({cache.teacher['name']}, dim {cache.dim}) is not the one the "
                          f"student learnt from ({teacher['name']}, dim {student.dim})")
    position = {text: i for i, text in enumerate(texts)}
    found = 0
    for batch in cache.iter_batches(["text", "vector"]):  # a row group at a time: the cache may not fit in memory
        rows, indices = [], []
        for row, text in enumerate(batch["text"].to_pylist()):
            index = position.pop(text, None)
            if index is not None:
                rows.append(row)
                indices.append(index)
        if rows:
            vectors[indices] = vector_array(batch["vector"].take(rows), cache.dim)
            found += len(rows)
    return vectors, found


def _dev_score(student: Student, dev: StsPairs | None) -> float | None:
    if dev is None:
        return None
    return pairs_spearman(lambda texts: student.encode(texts, show_progress_bar=False), dev)
