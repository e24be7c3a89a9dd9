"""What an evaluation compares, and on what: plain settings, no torch."""

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class EvaluationConfig:
    models: list[Path] = field(default_factory=list)  # student directories
    teacher: Path | None = None  # also evaluate this teacher directory, through precompute's own code path
    teacher_cache: Path | str | None = None  # a cache (or URI) whose held-out rows give fidelity and recall@k
    sts: list[Path] = field(default_factory=list)  # TSV files with sentence1, sentence2, score
    pooling: str | None = None  # the teacher's pooling; default: the cache's, else mean
    prefix: str | None = None  # prepended to what the teacher reads; default: the cache's, else none
    idf: Path | None = None  # IDF table for the teacher's IDF pooling; default: the cache's
    teacher_layers: int | None = None  # keep only the teacher's first k layers (no training)
    val_fraction: float | None = None  # held-out fraction; default: the smallest the students trained with
    max_rows: int = 5000  # held-out rows used at most
    k: int = 10  # neighbours for recall@k
    speed_sentences: int = 2000  # sentences timed for throughput
    batch_size: int = 256
    device: str = "cpu"
