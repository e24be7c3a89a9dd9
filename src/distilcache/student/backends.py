"""What runs a student's forward pass (torch, onnxruntime, or sentence-transformers after an export); plain
settings, no torch."""

from typing import Any

BACKENDS = ("auto", "torch", "torch-int8", "onnx")
# the modules of a sentence-transformers export (student/st_export.py)
EXPORT_MODULES = ("auto", "plain", "distilcache")


def default_backend(info: dict[str, Any], device: Any) -> str:
    """What backend="auto" runs: int8 for a `--preset fast` student on the CPU (the preset exists for CPU
    speed; benchmarks/results/REPORT.md measures what int8 costs it), else torch."""
    fast = info.get("training", {}).get("preset") == "fast"
    return "torch-int8" if fast and str(device).split(":")[0] == "cpu" else "torch"
