"""Device and precision choices shared by precompute, training and encoding."""

import contextlib

import torch


def resolve_device(device: str) -> torch.device:
    """auto: CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    return resolved


def resolve_precision(precision: str, device: torch.device, training: bool = False) -> str:
    """auto: bf16 on CUDA where supported, else fp16 for inference (fp32 for training, since fp16
    training needs loss scaling); fp32 on CPU. An explicit choice is kept."""
    if training and precision == "fp16":
        raise ValueError("fp16 training is not supported (it needs loss scaling); use bf16 or fp32")
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    if torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32" if training else "fp16"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)
