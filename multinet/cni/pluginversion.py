"""Asking a plugin which spec versions it speaks (CNI_COMMAND=VERSION).

The answer is cached per binary, keyed by its path and identity (device, inode,
size, mtime and ctime: a binary replaced, even rewritten in place with its old
mtime put back, is asked again), so an unchanged one costs one stat. In memory for
the process; with `cache_dir`, also in a root-only file there, so the engine run
once per ADD (without the daemon) does not spawn every plugin on every ADD. That
file is only a cache: whatever is wrong with it means "not known", never an error.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from dataclasses import dataclass
from typing import Any

from multinet.cni import exec as cniexec
from multinet.cni.errors import DELEGATE_FAILED, CNIError
from multinet.cni.invoke import base_environment
from multinet.cni.version import LATEST
from multinet.fileio import atomic_write, prepare_private_dir, remove_stale_temp_files

log = logging.getLogger("multinet.pluginversion")

VERSION_TIMEOUT = 10.0
CACHE_DIR = ".plugin-versions"  # the engine keeps it in its cniDir
CACHE_FILE = "versions.json"
CACHE_FORMAT = 1
MAX_CACHE_BYTES = 1 << 18
MAX_CACHED_PLUGINS = 256  # beyond, start again: plugin dirs hold far fewer
_IDENTITY_FIELDS = ("dev", "ino", "size", "mtimeNs", "ctimeNs")


@dataclass(frozen=True)
class PluginVersions:
    """What one plugin binary answered to VERSION."""

    path: str
    cni_version: str
    supported: tuple[str, ...]

    def speaks(self, version: str) -> bool:
        return version in self.supported


Identity = tuple[str, int, int, int, int, int]  # path, then _IDENTITY_FIELDS

_cache: dict[Identity, PluginVersions] = {}
_cache_lock = threading.Lock()


def _identity(path: str) -> Identity:
    st = os.stat(path)
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def query(path: str, timeout: float = VERSION_TIMEOUT, cache_dir: str = "") -> PluginVersions:
    """Run `path` with CNI_COMMAND=VERSION, unless its answer is cached (in memory,
    else in `cache_dir` when given); raise a CNI error naming the plugin when it
    cannot be run or its answer is not a version list."""
    try:
        key = _identity(path)
    except OSError as exc:
        raise CNIError(DELEGATE_FAILED, f"cannot ask {path} for its versions: "
                                        f"{exc.strerror or exc}") from None
    with _cache_lock:
        known = _cache.get(key)
    if known is None and cache_dir:
        known = _from_entry(key, _read_disk(cache_dir).get(path))
    if known is not None:
        with _cache_lock:
            _cache[key] = known
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
    if cache_dir:
        _write_disk(cache_dir, key, answer)
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


# -- the file in cache_dir: {"format": 1, "plugins": {path: identity and answer}} ---------


def _read_disk(cache_dir: str) -> dict[str, Any]:
    """The cached entries by path; {} when there is no usable file: missing, behind a
    symlink (the directory or the file), not ours alone, too large, or not the format."""
    try:
        dir_fd = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        fd = os.open(CACHE_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return {}
    finally:
        os.close(dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() \
                or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            return {}
        data = os.read(fd, MAX_CACHE_BYTES + 1)
    except OSError:
        return {}
    finally:
        os.close(fd)
    if len(data) > MAX_CACHE_BYTES:
        return {}
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    if not isinstance(body, dict) or body.get("format") != CACHE_FORMAT \
            or not isinstance(body.get("plugins"), dict):
        return {}
    return body["plugins"]


def _from_entry(key: Identity, entry: Any) -> PluginVersions | None:
    """The cached answer when `entry` is well formed and of this very binary."""
    if not isinstance(entry, dict):
        return None
    if tuple(entry.get(name) for name in _IDENTITY_FIELDS) != key[1:]:
        return None
    supported, version = entry.get("supportedVersions"), entry.get("cniVersion")
    if not isinstance(supported, list) or not supported \
            or not all(isinstance(v, str) for v in supported) or not isinstance(version, str):
        return None
    return PluginVersions(path=key[0], cni_version=version, supported=tuple(supported))


def _write_disk(cache_dir: str, key: Identity, answer: PluginVersions) -> None:
    """Add `answer` to the file (0600 in a 0700 dir), whole or not at all. Two writers
    at once may lose one's entry: that binary is asked again, nothing worse."""
    plugins = {path: entry for path, entry in _read_disk(cache_dir).items()
               if path != key[0] and isinstance(entry, dict)}
    if len(plugins) >= MAX_CACHED_PLUGINS:
        plugins = {}
    plugins[key[0]] = {**dict(zip(_IDENTITY_FIELDS, key[1:], strict=True)),
                       "cniVersion": answer.cni_version,
                       "supportedVersions": list(answer.supported)}
    data = json.dumps({"format": CACHE_FORMAT, "plugins": plugins}).encode()
    try:
        prepare_private_dir(cache_dir)
        atomic_write(os.path.join(cache_dir, CACHE_FILE), data)
        remove_stale_temp_files(cache_dir, min_age=60)  # what a killed write left
    except OSError as exc:
        log.warning("cannot keep plugin versions in %s: %s", cache_dir, exc)
