#!/usr/bin/env bash
# Install what multinet needs on a Debian machine (as root): the reference CNI
# plugins, iproute2, a C compiler for the native shim, containerd (the real
# runtime of the end-to-end tests; its package brings runc), what a minimal
# Debian lacks (openssl for the tests' certificates, procps for sysctl and ps), and a
# virtualenv at .venv with multinet and its test tools. hack/image.sh installs
# what it needs itself (mmdebstrap, umoci): it is not part of the test run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
# The tests' sandbox image is a static program: glibc's libc.a.
dpkg -s libc6-dev >/dev/null 2>&1 || need_apt+=(libc6-dev)
command -v nsenter >/dev/null || need_apt+=(util-linux)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v sysctl >/dev/null || need_apt+=(procps)
{ command -v containerd && command -v ctr && command -v runc; } >/dev/null || need_apt+=(containerd)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
