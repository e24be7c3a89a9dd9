"""Device and precision choices shared by precompute, training and encoding."""

import contextlib
import os
from collections.abc import Iterator

import torch

from distilcache.cache_format.errors import ConfigError


def resolve_device(device: str) -> torch.device:
    """auto: CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {device!r} is not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} was asked for but no CUDA device is available")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {device}: distilcache runs on cpu, cuda or mps")
    return resolved


def resolve_precision(precision: str, device: torch.device, training: bool = False) -> str:
    """auto: bf16 on CUDA where supported, else fp16 for inference (fp32 for training, since fp16
    training needs loss scaling); fp32 on CPU. An explicit choice is kept."""
    if training and precision == "fp16":
        raise ConfigError("fp16 training is not supported (it needs loss scaling); use bf16 or fp32")
    if training and precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise ConfigError("bf16 training on this CPU is not supported (oneDNN needs AVX512-BF16 or AMX); use --precision fp32")
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    if torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32" if training else "fp16"


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 kernels (the LSTM among them) on this CPU."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return True if check is None else bool(check())


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def threads_beside(processes: int) -> Iterator[None]:
    """torch's own CPU threads limited to the cores that `processes` other busy processes leave (at least one), for the
    duration: more would contend with them for the cores, and a parallel region waits for its slowest thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) - processes)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
