#!/usr/bin/env bash
# Run the whole test suite (creates ./.venv on first use). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m ruff check sparselinear tests benchmarks examples
# Where a C++ compiler exists the compiled kernels must build: their tests would otherwise skip.
.venv/bin/python -c "import sys; from sparselinear.ops import _ext; \
sys.exit(0 if not _ext.build_expected() or _ext.available() \
         else 'the compiled kernels did not build: see the warning above')"
exec .venv/bin/python -m pytest -q "$@"
