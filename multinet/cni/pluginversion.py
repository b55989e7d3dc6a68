"""Asking a plugin which spec versions it speaks (CNI_COMMAND=VERSION).

The answer is cached per binary, keyed by its inode, size and mtime, so a plugin
replaced on disk is asked again and an unchanged one costs one stat.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass

from multinet.cni import exec as cniexec
from multinet.cni.errors import DELEGATE_FAILED, CNIError
from multinet.cni.invoke import base_environment
from multinet.cni.version import LATEST

VERSION_TIMEOUT = 10.0


@dataclass(frozen=True)
class PluginVersions:
    """What one plugin binary answered to VERSION."""

    path: str
    cni_version: str
    supported: tuple[str, ...]

    def speaks(self, version: str) -> bool:
        return version in self.supported


_cache: dict[tuple[str, int, int, int, int], PluginVersions] = {}
_cache_lock = threading.Lock()


def _identity(path: str) -> tuple[str, int, int, int, int]:
    st = os.stat(path)
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def query(path: str, timeout: float = VERSION_TIMEOUT) -> PluginVersions:
    """Run `path` with CNI_COMMAND=VERSION; raise a CNI error naming the
    plugin when it cannot be run or its answer is not a version list."""
    try:
        key = _identity(path)
    except OSError as exc:
        raise CNIError(DELEGATE_FAILED, f"cannot ask {path} for its versions: "
                                        f"{exc.strerror or exc}") from None
    with _cache_lock:
        known = _cache.get(key)
    if known is not None:
        return known
    env = base_environment()
    env["CNI_COMMAND"] = "VERSION"
    stdin = json.dumps({"cniVersion": LATEST}).encode()
    output = cniexec.run(cniexec.PluginCall(path=path, env=env, stdin=stdin, timeout=timeout))
    if output.returncode != 0:
        raise cniexec.plugin_error(output)
    answer = _parse(path, output.stdout)
    with _cache_lock:
        _cache[key] = answer
    return answer


def _parse(path: str, stdout: bytes) -> PluginVersions:
    try:
        body = json.loads(stdout)
    except (ValueError, UnicodeDecodeError):
        body = None
    supported = body.get("supportedVersions") if isinstance(body, dict) else None
    if not isinstance(supported, list) or not supported or \
            not all(isinstance(v, str) for v in supported):
        raise CNIError(DELEGATE_FAILED, f"{path} answered VERSION without a list of "
                                        f"supportedVersions",
                       stdout[:200].decode(errors="replace"))
    version = body.get("cniVersion")
    return PluginVersions(path=path, cni_version=version if isinstance(version, str) else "",
                          supported=tuple(supported))
