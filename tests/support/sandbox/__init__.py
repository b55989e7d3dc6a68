"""The pod sandbox ("pause") image, built here: no registry is reachable.

pause.c is compiled statically, packed as the only file of one layer, and written
as an OCI image layout archive (oci-layout, index.json, blobs/sha256/...) that
`ctr images import` reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
from typing import Any

IMAGE_NAME = "localhost/multinet-test/pause:1"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pause.c")
ENTRYPOINT = "/pause"

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def oci_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def compile_pause(output: str) -> str:
    proc = subprocess.run(["gcc", "-O2", "-static", "-Wall", "-Werror", "-o", output, SOURCE],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"compiling {SOURCE} failed (needs gcc and libc6-dev): "
                           f"{proc.stderr.strip()}")
    return output


def _tar(members: dict[str, tuple[bytes, int]]) -> bytes:
    """A reproducible tar: fixed owner and times, members in the order given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, (data, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _descriptor(media_type: str, blob: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
            "size": len(blob), **extra}


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def image_archive(program: bytes, name: str = IMAGE_NAME) -> bytes:
    """An OCI image layout, as a tar, holding one image: `program` as /pause."""
    layer = _tar({ENTRYPOINT.lstrip("/"): (program, 0o755)})
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = _json({"architecture": oci_arch(), "os": "linux",
                    "config": {"Entrypoint": [ENTRYPOINT], "WorkingDir": "/"},
                    "rootfs": {"type": "layers", "diff_ids": [layer_digest]}})
    manifest = _json({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                      "config": _descriptor(CONFIG_TYPE, config),
                      "layers": [_descriptor(LAYER_TYPE, layer)]})
    reference = name.rsplit(":", 1)[1]
    index = _json({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [
        _descriptor(MANIFEST_TYPE, manifest,
                    platform={"architecture": oci_arch(), "os": "linux"},
                    annotations={"io.containerd.image.name": name,
                                 "org.opencontainers.image.ref.name": reference})]})
    blobs = {f"blobs/sha256/{hashlib.sha256(b).hexdigest()}": (b, 0o644)
             for b in (layer, config, manifest)}
    return _tar({"oci-layout": (_json({"imageLayoutVersion": "1.0.0"}), 0o644),
                 "index.json": (index, 0o644), **blobs})


def build(directory: str, name: str = IMAGE_NAME) -> str:
    """Compile the program and write the archive into `directory`; its path."""
    binary = compile_pause(os.path.join(directory, "pause"))
    with open(binary, "rb") as handle:
        program = handle.read()
    path = os.path.join(directory, "pause-image.tar")
    with open(path, "wb") as handle:
        handle.write(image_archive(program, name))
    return path
