#!/usr/bin/env bash
# The DaemonSet's image on a stand-in node: import the OCI archive into containerd,
# run the init container and the daemon as conf/deploy/daemonset.yaml does, and
# attach a pod through the CRI (see hack/image_demo.py). As root.
#
#   hack/image-demo.sh [ARCHIVE]          MODE=auto hack/image-demo.sh
#
# ARCHIVE defaults to build/multinet-image.tar, built with hack/image.sh when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
archive=${1:-build/multinet-image.tar}
if [ ! -f "$archive" ]; then
    bash hack/image.sh "$archive"
fi
[ -x .venv/bin/python ] || bash hack/setup.sh
exec .venv/bin/python hack/image_demo.py "$archive"
