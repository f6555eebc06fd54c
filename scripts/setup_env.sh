#!/usr/bin/env bash
# Create ./.venv (once) with torch, this package (the distribution torch-sparselinear, imported
# as sparselinear) and its test extras. pip runs quietly: a line on stderr says what each step
# installs before it starts.
# Where there is no NVIDIA GPU the CPU build of torch is installed first (from PyTorch's CPU
# index; PyPI's macOS wheels are CPU builds already), so that the package's `torch>=2.1,<3` range
# is already satisfied and no multi-GB CUDA build is pulled in.
# Override the torch requirement with SPARSELINEAR_TORCH, e.g.
#   SPARSELINEAR_TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "setup_env: $*" >&2; }
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-test}
if [ ! -x .venv/bin/python ]; then
    say "creating the virtual environment .venv ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    if [ -n "${SPARSELINEAR_TORCH:-}" ]; then
        say "installing $SPARSELINEAR_TORCH (from SPARSELINEAR_TORCH) ..."
        # shellcheck disable=SC2086
        "$PY" -m pip install -q $SPARSELINEAR_TORCH
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        say "installing torch >=2.1,<3 (the CUDA build: an NVIDIA GPU is present; a few GB) ..."
        "$PY" -m pip install -q "torch>=2.1,<3"
    elif [ "$(uname -s)" = Darwin ]; then
        say "installing torch 2.13.0 (the macOS build: CPU, and MPS where there is one) ..."
        "$PY" -m pip install -q "torch==2.13.0"
    else
        say "installing torch 2.13.0 (CPU build) ..."
        # The CPU build from wherever pip already looks (a wheel cache, a mirror); else from
        # PyTorch's CPU index, since PyPI's Linux torch wheels are the CUDA builds.
        "$PY" -m pip install -q "torch==2.13.0+cpu" 2>/dev/null \
            || "$PY" -m pip install -q --extra-index-url https://download.pytorch.org/whl/cpu \
                "torch==2.13.0+cpu"
    fi
fi
# `sparselinear` is this project's distribution name before it became torch-sparselinear, and
# an unrelated project on PyPI: either would be a second `import sparselinear` in the same venv.
if "$PY" -m pip show sparselinear >/dev/null 2>&1; then
    say "removing the distribution 'sparselinear' (an earlier install of this project, or PyPI's" \
        "unrelated package of the same import name) ..."
    "$PY" -m pip uninstall -q -y sparselinear
fi
say "installing sparselinear (torch-sparselinear, editable, from this folder) with the" \
    "'$EXTRAS' extras ..."
"$PY" -m pip install -q -e ".[$EXTRAS]"
say "ready: 'source .venv/bin/activate', then 'sparselinear --version'"
