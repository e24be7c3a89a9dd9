"""Models under evaluation, behind one small interface: encode(texts, batch_size) -> vectors."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distilcache.cache_format.errors import ConfigError
from distilcache.devices import resolve_device
from distilcache.inputs import Record
from distilcache.teacher.config import DEFAULT_MAX_LENGTH, PoolingConfig
from distilcache.teacher.model import load_model, load_tokenizer, pooled_vectors
from distilcache.teacher.prepare import length_sorted_batches, prepare_rows
from distilcache.weighting import IdfTable


@dataclass
class EvalModel:
    name: str
    encode: Callable[[list[str], int], np.ndarray]
    parameters: int
    weight_bytes: int  # what the weights take stored as they are (fp32 here)
    is_teacher: bool = False
    info: dict = field(default_factory=dict)  # a student's distilcache_student.json


def _size(model: nn.Module) -> tuple[int, int]:
    return sum(p.numel() for p in model.parameters()), sum(p.numel() * p.element_size() for p in model.parameters())


class TeacherEncoder:
    """A teacher run exactly as precompute runs it: same tokenisation, weighting, batching and pooling.
    `layers` keeps only the first k layers (the teacher cut short, with no training)."""

    def __init__(self, directory: Path, pooling: PoolingConfig, idf: IdfTable | None = None, layers: int | None = None,
                 device: str = "cpu"):
        if pooling.mode == "idf" and idf is None:
            raise ConfigError("IDF pooling needs an IDF table (--idf, e.g. a cache's idf.parquet)")
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(directory)
        self.model = load_model(directory, self.device)
        if layers is not None:
            if not 1 <= layers <= len(self.model.encoder.layer):
                raise ConfigError(f"--teacher-layers must be between 1 and {len(self.model.encoder.layer)}")
            self.model.encoder.layer = self.model.encoder.layer[:layers]
        max_length = pooling.max_length or min(DEFAULT_MAX_LENGTH, self.model.config.max_position_embeddings)
        self.pooling = replace(pooling, max_length=max_length)
        self.idf = idf

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        rows = prepare_rows([Record(str(i), t, "") for i, t in enumerate(texts)], self.tokenizer, self.pooling, self.idf)
        batches = length_sorted_batches(rows, batch_size, self.tokenizer.pad_token_id or 0)
        return pooled_vectors(self.model, batches, len(rows), self.device, "fp32", self.pooling.layer, self.pooling.normalize)

    def as_eval_model(self, name: str, is_teacher: bool = True) -> EvalModel:
        return EvalModel(name, self.encode, *_size(self.model), is_teacher=is_teacher)


def student_eval_model(directory: Path, device: str = "cpu", backend: str = "auto") -> EvalModel:
    from distilcache.student import load_student

    student = load_student(directory, device=resolve_device(device), backend=backend)
    encode = lambda texts, batch_size: student.encode(texts, batch_size=batch_size, show_progress_bar=False)  # noqa: E731
    name = directory.name + {"torch": "", "torch-int8": " (int8)", "onnx": " (onnxruntime)"}[student.backend]
    return EvalModel(name, encode, *_size(student.model), info=student.info)
