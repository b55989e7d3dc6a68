"""What Multus left in its cniDir for a container: its scratch cache and libcni's results.

Multus (v3.x to v4.3) writes `<cniDir>/<containerID>` before its delegates run:
`json.Marshal` of its `[]DelegateNetConf`. Per element, DEL needs `Name`, `Bytes`
(the delegate's config or conflist as Multus ran it, base64 as Go encodes
`[]byte`) and the requests `ifnameRequest`, `macRequest`, `ipRequest`,
`infinibandGUIDRequest`, `deviceID`, `resourceName`; `default-route` is checked
for shape only; `Conf`, `ConfList`, `CNINetworkConfigList` and the gateway filter
flags are Multus' own parse of `Bytes`. libcni, pointed at the same directory,
keeps each delegate's ADD result in `results/<network>-<containerID>-<ifname>`.

The files are root's: one reachable through a symlink, not a regular file, not
owned by root or writable by group or others is refused, never read. A file that
does not hold what Multus writes is refused whole (code 6, naming the file and the
field) before any delegate runs, never taken as "nothing to do".
"""

from __future__ import annotations

import binascii
import ipaddress
import logging
import os
import stat
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from multinet.cni import strictjson
from multinet.cni.errors import DECODE_FAILURE, IO_FAILURE, CNIError
from multinet.cni.netconf import NetworkList, load_network
from multinet.cni.request import ifname_problem

log = logging.getLogger("multinet.multus")

RESULTS_DIR = "results"
# Far above any real cache (a few KiB per delegate, at most a few dozen delegates).
MAX_FILE_BYTES = 4 << 20
# libcni reads a config without cniVersion as the oldest version.
IMPLIED_VERSION = "0.1.0"

_STRING_FIELDS = ("Name", "ifnameRequest", "macRequest", "infinibandGUIDRequest",
                  "deviceID", "resourceName")
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class MultusDelegate:
    """One element of the cache: a delegate network and what the pod asked of it."""

    index: int
    name: str  # Multus' name for it: `<namespace>/<nad>`, or the config's name
    network: NetworkList
    conflist: bool
    ifname_request: str = ""
    mac_request: str = ""
    ip_request: tuple[str, ...] = ()
    infiniband_guid_request: str = ""
    device_id: str = ""
    resource_name: str = ""

    @property
    def is_cluster_network(self) -> bool:
        return self.index == 0  # Multus' master plugin

    def ifname(self, cni_ifname: str) -> str:
        """Multus' rule: the request, else CNI_IFNAME for element 0, else `net<index>`."""
        if self.ifname_request:
            return self.ifname_request
        return cni_ifname if self.is_cluster_network else f"net{self.index}"


@dataclass(frozen=True)
class MultusCache:
    path: str
    delegates: tuple[MultusDelegate, ...]


def _fail(where: str, problem: str) -> CNIError:
    return CNIError(DECODE_FAILURE, f"Multus cache {where}: {problem}",
                    "the file is not what Multus writes (json.Marshal of []DelegateNetConf); "
                    "nothing was deleted")


def parse(data: bytes, where: str, default_version: str) -> tuple[MultusDelegate, ...]:
    """The delegates in a cache file's bytes; CNIError(6) naming `where` and the field.

    `default_version` is the cniVersion a conflist without one is run with (Multus
    gives it its own config's version).
    """
    elements = strictjson.loads(data, f"Multus cache {where}")
    if not isinstance(elements, list):
        raise _fail(where, f"(top level): a JSON array of delegates is expected, got "
                    f"{type(elements).__name__}")
    if not elements:
        raise _fail(where, "(top level): no delegates (Multus writes at least the cluster "
                    "network)")
    return tuple(_delegate(element, index, where, default_version)
                 for index, element in enumerate(elements))


def _delegate(element: Any, index: int, where: str, default_version: str) -> MultusDelegate:
    field = f"[{index}]"
    if not isinstance(element, dict):
        raise _fail(where, f"{field}: an object is expected, got {type(element).__name__}")
    strings = {}
    for key in _STRING_FIELDS:
        value = element.get(key)
        if value is not None and not isinstance(value, str):
            raise _fail(where, f"{field}.{key}: a string is expected, got {value!r}")
        strings[key] = value or ""
    ip_request = _string_list(element, "ipRequest", where, field)
    for gateway in _string_list(element, "default-route", where, field):
        try:
            ipaddress.ip_address(gateway)
        except ValueError:
            raise _fail(where, f"{field}.default-route: {gateway!r} is not an IP address") \
                from None
    if strings["ifnameRequest"]:
        problem = ifname_problem(strings["ifnameRequest"])
        if problem:
            raise _fail(where, f"{field}.ifnameRequest: {strings['ifnameRequest']!r} {problem}")
    raw = _config(element, where, field)
    conflist = "plugins" in raw
    conf_list = element.get("ConfList")
    if conf_list is not None and not isinstance(conf_list, dict):
        raise _fail(where, f"{field}.ConfList: an object is expected, got {conf_list!r}")
    if conf_list and conf_list.get("plugins") and not conflist:
        raise _fail(where, f"{field}.ConfList: names plugins but Bytes is a single plugin "
                    "config: they disagree")
    if not raw.get("cniVersion"):
        raw = {**raw, "cniVersion": default_version if conflist else IMPLIED_VERSION}
    try:
        network = load_network(raw, f"{field}.Bytes")
    except CNIError as err:
        raise _fail(where, err.msg) from None
    return MultusDelegate(
        index=index,
        name=strings["Name"] or network.name,
        network=network,
        conflist=conflist,
        ifname_request=strings["ifnameRequest"],
        mac_request=strings["macRequest"],
        ip_request=ip_request,
        infiniband_guid_request=strings["infinibandGUIDRequest"],
        device_id=strings["deviceID"],
        resource_name=strings["resourceName"],
    )


def _string_list(element: Mapping[str, Any], key: str, where: str,
                 field: str) -> tuple[str, ...]:
    value = element.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, f"{field}.{key}: a list of strings is expected, got {value!r}")
    return tuple(value)


def _config(element: Mapping[str, Any], where: str, field: str) -> dict[str, Any]:
    """`Bytes`: base64 (Go's standard alphabet, padded) of the config as JSON."""
    encoded = element.get("Bytes")
    if encoded is None:
        raise _fail(where, f"{field}.Bytes: missing (the delegate's config)")
    if not isinstance(encoded, str):
        raise _fail(where, f"{field}.Bytes: a base64 string is expected, got {encoded!r}")
    try:
        data = binascii.a2b_base64(encoded.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise _fail(where, f"{field}.Bytes: not base64") from None
    try:
        raw = strictjson.loads(data, f"{field}.Bytes")
    except CNIError as err:
        raise _fail(where, err.msg) from None
    if not isinstance(raw, dict):
        raise _fail(where, f"{field}.Bytes: a JSON object (a config or a conflist) is "
                    f"expected, got {type(raw).__name__}")
    return raw


# -- the files ---------------------------------------------------------------------------

def _open_dir(cache_dir: str) -> int | None:
    """A descriptor on the cache dir; None when there is none."""
    try:
        fd = os.open(cache_dir, _DIR_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"Multus cache dir {cache_dir}: cannot open it "
                       f"({exc.strerror}): a symlink or a non-directory is refused") from None
    try:
        _check_owner(os.fstat(fd), cache_dir, "dir")
    except CNIError:
        os.close(fd)
        raise
    return fd


def _check_owner(info: os.stat_result, path: str, what: str) -> None:
    if info.st_uid != 0:
        raise CNIError(IO_FAILURE, f"Multus cache {what} {path} is owned by uid "
                       f"{info.st_uid}, not root: refusing to read it")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CNIError(IO_FAILURE, f"Multus cache {what} {path} is mode "
                       f"{stat.S_IMODE(info.st_mode):04o}, writable by others: refusing "
                       "to read it")


def _read_file(dir_fd: int, name: str, path: str, limit: int) -> bytes | None:
    """The bytes of a root-only regular file in the dir; None when it is missing."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"Multus cache file {path}: cannot open it "
                       f"({exc.strerror}): a symlink there is refused") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CNIError(IO_FAILURE, f"Multus cache file {path} is not a regular file")
        _check_owner(info, path, "file")
        if info.st_size > limit:
            raise CNIError(IO_FAILURE, f"Multus cache file {path} holds {info.st_size} "
                           f"bytes, more than the {limit} a cache can: refusing it")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"Multus cache file {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise CNIError(IO_FAILURE, f"Multus cache file {path} grew past {limit} bytes")
    return data


def read(cache_dir: str, container_id: str, default_version: str) -> MultusCache | None:
    """The container's cache, None when Multus left none. `container_id` must already
    be a valid id (never a path)."""
    dir_fd = _open_dir(cache_dir)
    if dir_fd is None:
        return None
    path = os.path.join(cache_dir, container_id)
    try:
        data = _read_file(dir_fd, container_id, path, MAX_FILE_BYTES)
    finally:
        os.close(dir_fd)
    if data is None:
        return None
    return MultusCache(path, parse(data, path, default_version))


def remove(cache: MultusCache) -> None:
    """Remove the cache file: the pod is no longer Multus' to describe."""
    directory, name = os.path.split(cache.path)
    dir_fd = os.open(directory, _DIR_FLAGS)
    try:
        with suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def _result_name(network_name: str, container_id: str, ifname: str) -> str:
    return f"{network_name}-{container_id}-{ifname}"


def cached_result(cache_dir: str, network_name: str, container_id: str,
                  ifname: str) -> dict[str, Any] | None:
    """The ADD result libcni kept for a delegate, for its DEL's prevResult; None when
    there is none or it cannot be used (libcni then goes on without one too)."""
    results = os.path.join(cache_dir, RESULTS_DIR)
    name = _result_name(network_name, container_id, ifname)
    try:
        dir_fd = _open_dir(results)
        if dir_fd is None:
            return None
        try:
            data = _read_file(dir_fd, name, os.path.join(results, name), MAX_FILE_BYTES)
        finally:
            os.close(dir_fd)
        if data is None:
            return None
        cached = strictjson.loads(data, f"libcni result {results}/{name}")
    except CNIError as err:
        log.warning("DEL %s: no prevResult for network %r: %s", container_id, network_name,
                    err.msg)
        return None
    result = cached.get("result") if isinstance(cached, dict) else None
    if not isinstance(result, dict):
        log.warning("DEL %s: libcni result %s/%s holds no result: no prevResult", container_id,
                    results, name)
        return None
    return result


def forget_result(cache_dir: str, network_name: str, container_id: str, ifname: str) -> None:
    """Remove libcni's result of a delegate that was deleted, as libcni's DEL does."""
    results = os.path.join(cache_dir, RESULTS_DIR)
    try:
        dir_fd = os.open(results, _DIR_FLAGS)
    except OSError:
        return
    try:
        with suppress(FileNotFoundError):
            os.unlink(_result_name(network_name, container_id, ifname), dir_fd=dir_fd)
    except OSError as exc:
        log.warning("DEL %s: libcni result of network %r not removed: %s", container_id,
                    network_name, exc.strerror)
    finally:
        os.close(dir_fd)
