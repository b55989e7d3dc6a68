#!/usr/bin/env bash
# Set up, then run the demo: one pod attached to several networks (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh
exec .venv/bin/python hack/demo.py "$@"
