#!/usr/bin/env bash
# Run the main demo (creates ./.venv on first use). Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${EXTRAS:-test} bash scripts/setup_env.sh
exec .venv/bin/python -m sparselinear demo "$@"
