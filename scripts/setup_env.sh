#!/usr/bin/env bash
# Create ./.venv (once) with torch, this package and its test extras.
# Where there is no NVIDIA GPU the CPU build of torch is installed first, so that the
# package's `torch>=2.1,<3` range is already satisfied and no multi-GB CUDA build is pulled in.
# Override the torch requirement with SPARSELINEAR_TORCH, e.g.
#   SPARSELINEAR_TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    if [ -n "${SPARSELINEAR_TORCH:-}" ]; then
        # shellcheck disable=SC2086
        "$PY" -m pip install -q $SPARSELINEAR_TORCH
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        "$PY" -m pip install -q "torch>=2.1,<3"
    else
        "$PY" -m pip install -q "torch==2.13.0"
    fi
fi
"$PY" -m pip install -q -e ".[${EXTRAS:-test}]"
