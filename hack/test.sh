#!/usr/bin/env bash
# Set up, then run the whole suite: lint, unit and end-to-end tests (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
