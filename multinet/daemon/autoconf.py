"""The CNI config the daemon generates around the node's primary CNI.

With `multusConfigFile: "auto"` the daemon finds the primary CNI's config (Multus'
`multusMasterCNI`, else the lexically first config in `multusAutoconfigDir`, the
order the runtime itself uses) and writes `00-multinet.conflist`, which sorts first,
so the runtime calls multinet with the primary as the cluster network. This module
chooses and renders; daemon/confwatch.py keeps the file in step.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multinet.cni import strictjson
from multinet.cni.errors import CNIError
from multinet.cni.netconf import load_network
from multinet.daemon.config import CNI_CONFIG_EXTENSIONS
from multinet.fileio import atomic_write, is_temp_of
from multinet.shim import SUPPORTED_VERSIONS

GENERATED_NAME = "00-multinet.conflist"
NETWORK_NAME = "multinet-cni-network"
PLUGIN_TYPE = "multinet"
# Never taken as the primary: wrapping a meta-plugin in another would loop or double.
META_PLUGIN_TYPES = frozenset({"multinet", "multus", "multus-shim"})
MAX_CONFIG_BYTES = 1 << 20
# CNI's rule: a conflist needs at least 0.3.0, which every version we speak satisfies.
CONFLIST_VERSIONS = SUPPORTED_VERSIONS


class PrimaryError(Exception):
    """The primary config exists but cannot be used; the message names the file."""


class UnsafeConfDir(OSError):
    """A conf dir others could write to: whatever lands there runs as root."""


@dataclass(frozen=True)
class Primary:
    path: str
    cni_version: str
    capabilities: tuple[str, ...]  # every capability any of its plugins enables


def is_candidate(name: str) -> bool:
    """A file name the runtime would load that is neither ours nor a temp file."""
    return (name.endswith(CNI_CONFIG_EXTENSIONS) and not name.startswith(".")
            and not name.startswith("00-multinet"))


def read_nofollow(path: str, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """A regular file's bytes, never through a symlink (OSError ELOOP) and at most
    `limit` bytes (OSError EFBIG beyond)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
    return data


def load_primary(path: str) -> tuple[Primary, Mapping[str, Any]]:
    """The primary at `path` and its parsed config; PrimaryError says what is wrong."""
    try:
        data = read_nofollow(path)
    except OSError as exc:
        why = "is a symlink" if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror}"
        raise PrimaryError(f"primary CNI config {path} {why}") from None
    if not data.strip():
        raise PrimaryError(f"primary CNI config {path} is empty")
    try:
        raw = strictjson.loads(data, f"primary CNI config {path}")
        if not isinstance(raw, dict):
            raise PrimaryError(f"primary CNI config {path} is not a JSON object")
        network = load_network(raw, f"primary CNI config {path}")
    except CNIError as err:
        raise PrimaryError(err.msg) from None
    if network.cni_version not in CONFLIST_VERSIONS:
        raise PrimaryError(f"primary CNI config {path}: cniVersion {network.cni_version!r} is "
                           f"not one multinet speaks ({', '.join(CONFLIST_VERSIONS)})")
    capabilities = sorted({name for plugin in network.plugins
                           for name, on in (plugin.get("capabilities") or {}).items()
                           if on is True})
    return Primary(path, network.cni_version, tuple(capabilities)), raw


def _plugin_types(raw: Mapping[str, Any]) -> set[str]:
    plugins = raw.get("plugins") if isinstance(raw.get("plugins"), list) else [raw]
    return {p.get("type") for p in plugins if isinstance(p, dict)}


def find_primary(directory: str, master: str = "") -> Primary | None:
    """The primary config in `directory`, None when there is none.

    The first candidate by name is the primary even when it is broken (PrimaryError):
    falling through to the next file would quietly swap the cluster network.
    """
    if master:
        path = os.path.join(directory, master)
        return load_primary(path)[0] if os.path.lexists(path) else None
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return None
    for name in filter(is_candidate, names):
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            continue
        primary, raw = load_primary(path)
        if _plugin_types(raw) & META_PLUGIN_TYPES:
            continue  # e.g. a Multus config left from before: never wrap a meta-plugin
        return primary
    return None


def render(primary: Primary, socket_path: str) -> bytes:
    """The generated conflist: one multinet plugin whose cluster network is the primary.

    The primary is named by path (as Multus' thick daemon does), so the engine reads
    the primary's current file on every ADD; capabilities are the primary's, so the
    runtime's portMappings, bandwidth, ips... still reach it.
    """
    plugin: dict[str, Any] = {"type": PLUGIN_TYPE, "clusterNetwork": primary.path,
                              "socketPath": socket_path}
    if primary.capabilities:
        plugin["capabilities"] = {name: True for name in primary.capabilities}
    conflist = {"cniVersion": primary.cni_version, "name": NETWORK_NAME, "plugins": [plugin]}
    return (json.dumps(conflist, indent=2) + "\n").encode()


def looks_generated(data: bytes) -> bool:
    """Whether `data` is a conflist this module renders (e.g. by an earlier daemon)."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return False
    if not isinstance(raw, dict) or raw.get("name") != NETWORK_NAME:
        return False
    plugins = raw.get("plugins")
    return (isinstance(plugins, list) and len(plugins) == 1 and isinstance(plugins[0], dict)
            and plugins[0].get("type") == PLUGIN_TYPE and "clusterNetwork" in plugins[0])


# -- the conf dir ------------------------------------------------------------------------


def check_conf_dir(directory: str, create: bool = False) -> bool:
    """Whether `directory` exists and may be trusted (UnsafeConfDir if not): a real
    directory, ours, writable by nobody else. Created 0755 when missing and `create`."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        if not create:
            return False
        os.makedirs(directory, mode=0o755, exist_ok=True)
        os.chmod(directory, 0o755)
        return True
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeConfDir(f"{directory} is a symlink; name the real directory")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeConfDir(f"{directory} is not a directory")
    if info.st_uid != os.geteuid():
        raise UnsafeConfDir(f"{directory} is owned by uid {info.st_uid}, not by us")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeConfDir(f"{directory} is writable by group or others (mode "
                            f"{stat.S_IMODE(info.st_mode):04o}); refusing to use it")
    return True


def write_config(path: str, data: bytes) -> None:
    """Replace `path` with `data` atomically, 0644 so the runtime can read it."""
    atomic_write(path, data, mode=0o644)


def install_user_config(source: str, directory: str) -> str | None:
    """Copy the operator's config into the conf dir under its own name, atomically, as
    Multus does for a multusConfigFile that is not "auto"; None when it is there already."""
    target = os.path.join(directory, os.path.basename(source))
    if os.path.dirname(source) == os.path.normpath(directory):
        return None
    check_conf_dir(directory, create=True)
    write_config(target, read_nofollow(source))
    return target


def remove_temp_files(directory: str) -> list[str]:
    """Temp files a killed write of ours left behind."""
    removed = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for name in names:
        if is_temp_of(name, GENERATED_NAME):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
                removed.append(name)
    return removed
