#!/usr/bin/env bash
# Run the whole test suite (creates ./.venv on first use). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m ruff check sparselinear tests benchmarks examples
# Where a C++ compiler exists the compiled kernels must build: their tests would otherwise skip.
if command -v "${CXX:-c++}" >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
        || command -v clang++ >/dev/null 2>&1; then
    .venv/bin/python -c "import sys; from sparselinear import _ext; \
sys.exit(0 if _ext.available() else 'the compiled kernels did not build: see the warning above')"
fi
exec .venv/bin/python -m pytest -q "$@"
