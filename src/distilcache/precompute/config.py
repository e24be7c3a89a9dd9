"""What a precompute run is asked to do: plain settings, checked before any work, no torch."""

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from distilcache import hf_local
from distilcache.cache_format.errors import ConfigError
from distilcache.inputs import InputSpec
from distilcache.teacher.config import POOLING_MODES, PoolingConfig

STUDENT_VOCABS = ("auto", "teacher", "teacher+cjk")  # auto: teacher+cjk when an input has a target field
DTYPES = ("float16", "float32")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ENGINES = ("local", "ray")
# what a variant of --augment may be (precompute/augment.py)
AUGMENT_OPERATIONS = ("word_dropout", "span_deletion", "crop", "local_shuffle", "join", "word_replacement")


@dataclass
class PrecomputeConfig:
    teacher: Path
    inputs: list[InputSpec]
    output: Path | str  # a directory, or a pyarrow.fs URI (s3://bucket/cache, gs://..., hdfs://...)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    dtype: str = "float16"
    batch_size: int = 64
    shard_size: int = 100_000
    idf_file: Path | None = None  # reuse this IDF table instead of computing one from the inputs
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (autocast on CUDA)
    keep_first_duplicate: bool = False
    teacher_name: str | None = None  # how manifests name the teacher; defaults to its directory's name
    export_seed_layers: int = 0  # store the teacher's embeddings + K of its layers (first, last, evenly between) for students
    token_vectors: bool = True  # store the teacher's output for every vocabulary token alone, for students
    # store the teacher's state at every student token, projected onto its k principal components (float16), for a
    # token-level loss in training; 0: none. The projection is fitted on the first sort window the teacher reads
    token_states: int = 0
    num_partitions: int = 1  # for job arrays: this run computes only the shards k with k % num_partitions == partition
    partition: int = 0
    student_vocab: str = "auto"  # teacher | teacher+cjk (CJK characters the teacher lacks get their own tokens)
    engine: str = "local"  # local: this process; ray: Ray Data actors (distilcache[ray]), same shards and manifest
    ray_workers: int = 1  # ray: teacher actors, one GPU each when the device is CUDA
    sort_window: int = 8192  # rows prepared and length-sorted together: fine-grained overlap, little padding
    augment: int = 0  # after each row, this many variants of its text, encoded by the teacher (precompute/augment.py)
    augment_seed: int = 0
    augment_operations: tuple[str, ...] = AUGMENT_OPERATIONS
    workers: int | None = None  # processes for the IDF pass and preparing windows; None: by device (run.preparing_workers)
    push: Callable[[], None] | None = field(default=None, repr=False)  # set for a URI output: push the mirror

    @property
    def partitioned(self) -> bool:
        return self.num_partitions > 1

    def validate(self) -> None:
        if self.pooling.mode not in POOLING_MODES:
            raise ConfigError(f"pooling must be one of {POOLING_MODES}, got {self.pooling.mode!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not (math.isfinite(self.pooling.smoothing) and self.pooling.smoothing >= 0):
            raise ConfigError(f"--smoothing must be a finite number >= 0, got {self.pooling.smoothing}")
        for name in ("batch_size", "shard_size", "ray_workers", "sort_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        if self.token_states < 0:
            raise ConfigError(f"--token-states must be >= 0, got {self.token_states}")
        if self.token_states and (self.partitioned or self.engine == "ray"):
            raise ConfigError("--token-states fits its projection in the one process that runs the teacher; it does not combine "
                              "with --num-partitions or --engine ray")
        if self.augment < 0:
            raise ConfigError(f"--augment must be >= 0, got {self.augment}")
        unknown = sorted(set(self.augment_operations) - set(AUGMENT_OPERATIONS))
        if unknown or not self.augment_operations:
            raise ConfigError(f"--augment-operations must name some of {', '.join(AUGMENT_OPERATIONS)}; "
                              f"got {','.join(self.augment_operations)}")
        if self.pooling.max_length is not None and self.pooling.max_length < 2:
            raise ConfigError("max_length must be >= 2 (room for the special tokens)")
        if not self.inputs:
            raise ConfigError("at least one input is needed")
        if self.idf_file is not None and self.pooling.mode != "idf":
            raise ConfigError(f"--idf applies to --pooling idf only, not {self.pooling.mode}")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.engine == "ray" and self.partitioned:
            raise ConfigError("--engine ray distributes the shards itself; it does not combine with --num-partitions")
        if self.engine == "ray" and importlib.util.find_spec("ray") is None:  # before a long planning pass
            raise ConfigError("--engine ray needs Ray Data: pip install 'distilcache[ray]'")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.engine == "local":  # an unknown device, or CUDA where there is none (Ray's workers may have it)
            from distilcache.devices import resolve_device  # torch: imported when a run begins, not with the settings

            resolve_device(self.device)
        if self.student_vocab not in STUDENT_VOCABS:
            raise ConfigError(f"student_vocab must be one of {STUDENT_VOCABS}, got {self.student_vocab!r}")
        if self.num_partitions < 1:
            raise ConfigError(f"--num-partitions must be >= 1, got {self.num_partitions}")
        if not 0 <= self.partition < self.num_partitions:
            raise ConfigError(f"--partition must be in 0..{self.num_partitions - 1}, got {self.partition}")
        if self.partitioned and self.pooling.mode == "idf" and self.idf_file is None:
            raise ConfigError("partitions share one IDF table: compute it first with `distilcache idf` and pass it with --idf")
        hf_local.check_no_shipped_code(self.teacher)
        for spec in self.inputs:
            spec.check()
        names = [spec.path.name for spec in self.inputs]
        if len(set(names)) != len(names):
            raise ConfigError(f"input file names must be unique (they name the rows' sources): {names}")
