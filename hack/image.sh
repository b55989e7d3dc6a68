#!/usr/bin/env bash
# Build the DaemonSet's image with no registry: a Debian bookworm root filesystem
# made by mmdebstrap from Debian's packages, packed by umoci into an OCI archive.
#
#   sudo hack/image.sh [OUTPUT]        (default: build/multinet-image.tar)
#
# The image matches the Containerfile's: multinet installed with pip under
# /usr/local (console scripts in /usr/local/bin: multinet-daemon, multinetctl,
# multinet, multinet-shim), a C compiler and glibc's static libc for the native
# shim the init container builds, root as the user, no CNI plugins (the node has
# its own). Its name for containerd is docker.io/library/multinet:latest, which
# is what `image: multinet:latest` in conf/deploy/daemonset.yaml resolves to.
#
# Python dependencies come from Debian where Debian's version meets what
# pyproject.toml and its dependencies require; pip, run once inside the new root,
# adds only what is missing or too old there, then pip itself is purged. MIRROR
# and SECURITY_MIRROR choose the archive. SOURCE_DATE_EPOCH (default: the time of
# the last commit that changed what goes into the image) fixes the timestamps, so
# two builds from one archive state and one PyPI state give the same layer.
set -euo pipefail
cd "$(dirname "$0")/.."

OUTPUT=${1:-build/multinet-image.tar}
IMAGE_NAME=docker.io/library/multinet:latest
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct -- multinet pyproject.toml \
    README.md LICENSE hack/image.sh 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

[ "$(id -u)" -eq 0 ] || { echo "image.sh: run as root" >&2; exit 1; }
started=$(date +%s)

need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v umoci >/dev/null || need+=(umoci)
command -v python3 >/dev/null || need+=(python3)
command -v git >/dev/null || need+=(git)  # what goes in: the checkout's files
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Debian's packages: the interpreter, the compiler and static libc for the shim,
# and the Python libraries whose bookworm version meets what pyproject.toml and
# its dependencies require (requests, requests-oauthlib, websocket-client,
# attrs). Bookworm's kubernetes (22.6), grpcio (1.51), protobuf (3.21),
# jsonschema (4.10), prometheus-client (0.16), PyYAML (6.0, kubernetes wants
# 6.0.3) and pyroute2 (0.7.2: no IPRoute(netns=...)) are too old: pip fetches those.
PACKAGES=(
    ca-certificates python3 gcc libc6-dev
    python3-requests python3-requests-oauthlib python3-websocket python3-attr
)
# Only for the pip step below; purged (with what it brought) before packing.
BUILD_ONLY=(python3-pip)

work=$(mktemp -d /tmp/multinet-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
# The checkout as it stands (tracked and new files, not what .gitignore names).
git ls-files -co --exclude-standard -z -- pyproject.toml README.md LICENSE multinet \
    | xargs -0 cp --parents -t "$work/src"

# Docs, man pages, locales and caches are left out of the image, and the parts of
# gcc the shim's plain `cc -O2 -static` never runs (LTO, sanitizer runtimes).
DPKG_EXCLUDES=(
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-exclude=/usr/share/lintian/*'
    --dpkgopt='path-exclude=/usr/bin/*lto-dump*'
    --dpkgopt='path-exclude=/usr/lib/gcc/*/lto1'
    --dpkgopt='path-exclude=/usr/lib/*/lib*san.so*'
    --dpkgopt='path-exclude=/usr/lib/gcc/*/lib*san*'
)

# pip inside the new root sees Debian's dist-packages, so it fetches only what
# they lack (or have too old) into /usr/local, then lists those.
PIP_HOOK='set -e
cp -a "'"$work"'/src" "$1/tmp/multinet-src"
# The build machine'"'"'s CA bundle: it may trust a proxy that Debian'"'"'s does not.
cp /etc/ssl/certs/ca-certificates.crt "$1/tmp/build-ca.crt"
chroot "$1" env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u SSL_CERT_DIR PIP_CERT=/tmp/build-ca.crt \
    REQUESTS_CA_BUNDLE=/tmp/build-ca.crt SSL_CERT_FILE=/tmp/build-ca.crt \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    python3 -m pip install -q --break-system-packages --no-compile /tmp/multinet-src
chroot "$1" python3 -m pip list --path /usr/local/lib/python3.11/dist-packages \
    --format freeze > "'"$work"'/from-pypi.txt"
rm -rf "$1/tmp/multinet-src" "$1/tmp/build-ca.crt"
chroot "$1" dpkg --purge '"${BUILD_ONLY[*]}"' python3-setuptools python3-wheel \
    python3-distutils python3-lib2to3 >/dev/null
chroot "$1" python3 -B -c "import multinet.daemon.main, multinet.k8s.client, multinet.attach.routes"
rm -rf "$1/var/cache/debconf"/*-old "$1/var/log"/* "$1/root/.cache"'
# (pip --no-compile: the kubernetes client alone would double in size with its
# bytecode; the container compiles what it imports, in its own writable layer.)

mkdir -p "$(dirname "$OUTPUT")"
echo "image.sh: root filesystem (mmdebstrap, bookworm)..."
# merged-usr: /usr merged by usr-is-merged, not by usrmerge (which brings perl).
mmdebstrap --quiet --variant=essential --mode=root --format=tar \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include="$(IFS=,; echo "${PACKAGES[*]},${BUILD_ONLY[*]}")" \
    "${DPKG_EXCLUDES[@]}" \
    --customize-hook="$PIP_HOOK" \
    bookworm "$work/rootfs.tar" \
    "deb $MIRROR bookworm main" \
    "deb $MIRROR bookworm-updates main" \
    "deb $SECURITY_MIRROR bookworm-security main"

echo "image.sh: OCI image (umoci)..."
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
oci="$work/oci"
umoci init --layout "$oci"
umoci new --image "$oci:latest"
umoci raw add-layer --image "$oci:latest" --history.created "$created" \
    --history.created_by "hack/image.sh (mmdebstrap bookworm + pip)" "$work/rootfs.tar"
umoci config --image "$oci:latest" --created "$created" \
    --history.created "$created" --history.created_by "hack/image.sh (config)" \
    --author "The multinet authors" \
    --os linux --architecture "$(dpkg --print-architecture)" \
    --config.user 0:0 --config.workingdir / \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env LANG=C.UTF-8 \
    --config.cmd multinet-daemon --config.cmd --config --config.cmd /config/daemon-config.json \
    --config.label org.opencontainers.image.title=multinet \
    --config.label org.opencontainers.image.licenses=Apache-2.0
umoci gc --layout "$oci"
# containerd and podman name an imported image by this annotation.
python3 - "$oci/index.json" "$IMAGE_NAME" <<'EOF'
import json, sys
path, name = sys.argv[1], sys.argv[2]
with open(path) as handle:
    index = json.load(handle)
for manifest in index["manifests"]:
    manifest.setdefault("annotations", {})["io.containerd.image.name"] = name
with open(path, "w") as handle:
    json.dump(index, handle)
EOF
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    -C "$oci" -cf "$OUTPUT.tmp" . && mv "$OUTPUT.tmp" "$OUTPUT"

echo "image.sh: from PyPI (Debian's too old or missing):" $(tr '\n' ' ' < "$work/from-pypi.txt")
echo "image.sh: root filesystem $(du -h --apparent-size "$work/rootfs.tar" | cut -f1)," \
    "archive $(du -h --apparent-size "$OUTPUT" | cut -f1) ($OUTPUT, $IMAGE_NAME)," \
    "$(( $(date +%s) - started ))s"
