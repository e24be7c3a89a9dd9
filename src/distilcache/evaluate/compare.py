"""`distilcache evaluate`: the teacher (optionally cut short) and students side by side, from one config."""

from dataclasses import replace
from typing import Any

from distilcache.cache_format import open_cache
from distilcache.cache_format.errors import ConfigError
from distilcache.evaluate.config import EvaluationConfig
from distilcache.evaluate.encoders import EvalModel, TeacherEncoder, student_eval_model
from distilcache.evaluate.run import evaluate_models
from distilcache.pairs import read_sts
from distilcache.teacher.config import PoolingConfig
from distilcache.weighting import IdfTable


def compare(config: EvaluationConfig) -> list[dict[str, Any]]:
    """One result per model (the teacher first), all on the same sentences."""
    if not config.models and not config.teacher:
        raise ConfigError("name at least one --model or a --teacher to evaluate")
    cache = open_cache(config.teacher_cache) if config.teacher_cache else None
    models = [_teacher(config, cache)] if config.teacher else []
    students = [student_eval_model(path, config.device) for path in config.models]
    val_fraction = config.val_fraction
    if val_fraction is None:  # rows every student held out: a smaller fraction selects a subset
        val_fraction = min((m.info["training"]["val_fraction"] for m in students), default=0.05)
    return evaluate_models(models + students, [read_sts(p) for p in config.sts], cache, val_fraction, config.max_rows,
                           config.k, config.speed_sentences, config.batch_size)


def _teacher(config: EvaluationConfig, cache) -> EvalModel:
    """The teacher with the cache's pooling (or --pooling, else mean), as precompute ran it."""
    pooling = PoolingConfig(**cache.pooling) if cache else PoolingConfig(mode="mean")
    if config.pooling:
        pooling = replace(pooling, mode=config.pooling)
    if config.prefix is not None:
        pooling = replace(pooling, prefix=config.prefix)
    idf = IdfTable.load(config.idf) if config.idf else (IdfTable.load(cache.idf_path) if cache and cache.idf_path else None)
    teacher = TeacherEncoder(config.teacher, pooling, idf if pooling.mode == "idf" else None, config.teacher_layers, config.device)
    label = f"teacher ({pooling.mode} pooling)" + (f", first {config.teacher_layers} layers" if config.teacher_layers else "")
    return teacher.as_eval_model(label, is_teacher=config.teacher_layers is None)
