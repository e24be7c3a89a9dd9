"""Evaluate models side by side on the same sentences: STS Spearman, fidelity, retrieval, speed."""

import logging
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from distilcache.cache_format import Cache
from distilcache.cache_format.errors import ConfigError
from distilcache.cache_format.reader import vector_array
from distilcache.cache_format.split import split_by_id
from distilcache.evaluate.encoders import EvalModel
from distilcache.evaluate.metrics import paired_cosine, recall_at_k, similarity_agreement
from distilcache.pairs import StsPairs, spearman

log = logging.getLogger(__name__)


def held_out_rows(cache: Cache, val_fraction: float, max_rows: int) -> tuple[list[str], np.ndarray]:
    """Texts and teacher vectors of the first max_rows cache rows no student trained on (same id-hash split as
    train), read a row group at a time until there are enough."""
    texts, vectors = [], []
    for batch in cache.iter_batches(["id", "text", "vector"]):
        _, held_out = split_by_id(batch["id"].to_pylist(), val_fraction, cache.augmented)
        held_out = held_out[: max_rows - len(texts)]
        texts += batch["text"].take(held_out).to_pylist()
        vectors.append(vector_array(batch["vector"].take(held_out), cache.dim))
        if len(texts) == max_rows:
            break
    if not texts:
        raise ConfigError(f"{cache.path}: no held-out rows at --val-fraction {val_fraction}")
    return texts, np.concatenate(vectors).astype(np.float32)


def _seconds(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure_speeds(models: list[EvalModel], texts: list[str], batch_size: int = 256, latency_calls: int = 100,
                   rounds: int = 5) -> list[dict[str, float]]:
    """Per model: sentences/s at batch_size, the best of `rounds` timed passes, and (latency_calls > 0) the
    median single-sentence latency; tokenisation included. Each round times one pass of every model in
    turn, so a slow spell on a shared machine falls on all the models instead of on one model's passes:
    the ratios between them are what the report is about. The latency calls run model by model, each
    model warm from the call before, as in a service answering one request after another."""
    for model in models:
        model.encode(texts[:batch_size], batch_size)  # warm-up
    best = [math.inf] * len(models)
    for _ in range(rounds):
        for i, model in enumerate(models):
            best[i] = min(best[i], _seconds(lambda: model.encode(texts, batch_size)))
    speeds = []
    for model, seconds in zip(models, best):
        times = [_seconds(lambda: model.encode([text], 1)) for text in texts[:latency_calls]]
        speeds.append({"sentences_per_second": len(texts) / seconds} | ({"latency_ms": 1000 * statistics.median(times)} if times else {}))
    return speeds


def _sts_scores(model: EvalModel, pairs: StsPairs, batch_size: int) -> dict[str, Any]:
    cosine = paired_cosine(model.encode(pairs.sentence1, batch_size), model.encode(pairs.sentence2, batch_size))
    bad = ~np.isfinite(cosine)  # reported, and counted as similarity 0, rather than dropped
    return {"spearman": spearman(np.where(bad, 0.0, cosine), pairs.scores), "nonfinite_pairs": int(bad.sum())}


def evaluate_models(
    models: list[EvalModel],
    sts: list[StsPairs],
    cache: Cache | None = None,
    val_fraction: float = 0.05,
    max_rows: int = 5000,
    k: int = 10,
    speed_sentences: int = 2000,
    batch_size: int = 256,
) -> list[dict[str, Any]]:
    """One result per model, same sentences for all."""
    for name, value, low in (("batch_size", batch_size, 1), ("k", k, 1), ("max_rows", max_rows, 1), ("speed_sentences", speed_sentences, 0)):
        if value < low:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    held_texts, held_vectors = held_out_rows(cache, val_fraction, max_rows) if cache is not None else ([], None)
    speed_texts = list(dict.fromkeys(s for p in sts for s in p.sentence1 + p.sentence2))[:speed_sentences] or held_texts[:speed_sentences]
    results = []
    for model in models:
        log.info("evaluating %s", model.name)
        result: dict[str, Any] = {"model": model.name, "teacher": model.is_teacher, "parameters": model.parameters,
                                  "weights_mb": model.weight_bytes / 1e6, "sts": {}}
        for pairs in sts:
            result["sts"][pairs.name] = _sts_scores(model, pairs, batch_size)
        if sts:
            result["sts_mean"] = float(np.mean([s["spearman"] for s in result["sts"].values()]))
        if cache is not None:
            vectors = model.encode(held_texts, batch_size)
            # fidelity needs the teacher's space; neighbour agreement does not (a PCA-reduced model has another dim)
            same_space = vectors.shape[1] == held_vectors.shape[1]
            result["fidelity"] = float(np.mean(paired_cosine(vectors, held_vectors))) if same_space else None
            result[f"recall@{k}"] = recall_at_k(vectors, held_vectors, k) if len(held_texts) > k else None
            result["similarity_agreement"] = similarity_agreement(vectors, held_vectors)
            result["held_out_rows"] = len(held_texts)
        results.append(result)
    if speed_texts:
        log.info("timing %d models on %d sentences", len(models), len(speed_texts))
        for result, speed in zip(results, measure_speeds(models, speed_texts, batch_size)):
            result |= speed
    _add_gaps(results)
    return results


def _add_gaps(results: list[dict[str, Any]]) -> None:
    """Gap to the teacher's mean Spearman and speed-up over it, for every other model."""
    teacher = next((r for r in results if r["teacher"]), None)
    if teacher is None:
        return
    for result in results:
        if "sts_mean" in teacher and "sts_mean" in result:
            gap = result["sts_mean"] - teacher["sts_mean"]
            result["sts_gap"] = gap
            result["sts_gap_percent"] = 100 * gap / teacher["sts_mean"]
        if "sentences_per_second" in teacher and "sentences_per_second" in result:
            result["speedup"] = result["sentences_per_second"] / teacher["sentences_per_second"]
