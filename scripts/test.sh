#!/usr/bin/env bash
# Run the whole test suite (creates ./.venv on first use). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m ruff check sparselinear tests benchmarks examples
exec .venv/bin/python -m pytest -q "$@"
