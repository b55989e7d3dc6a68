"""NPWG device-info files (Device Information spec v1.1.0).

A device plugin describes each device it hands out in
``<base>/dp/<resource>-<deviceID>-device.json``. Before a delegate's ADD, that file
is copied to a per-attachment file ``<base>/cni/<network>-<containerID>_<ifname>``
whose path the delegate receives as ``runtimeConfig.CNIDeviceInfoFile``; after ADD
the file is read back into the network-status entry, and DEL removes it.

Validation policy: content is checked against the spec's JSON schema
(:data:`DEVICE_INFO_SCHEMA`). A *missing* file is not an error (``None``): most
networks have none. A file that *exists but is invalid* raises
``CNIError(DECODE_FAILURE)`` naming the file, so a broken device plugin or
delegate is visible instead of silently dropped; a caller that only wants the
status entry may catch it and go on without ``device-info``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from multinet.cni.errors import DECODE_FAILURE, INVALID_CONFIG, IO_FAILURE, CNIError
from multinet.fileio import atomic_write

DEFAULT_BASE = "/var/run/k8s.cni.cncf.io/devinfo"
SPEC_VERSION = "1.1.0"

_NAME_MAX = 255  # bytes in one path component on Linux

# Linux PCI address "domain:bus:device.function"; domains above ffff exist (VMD).
# Patterns end in \Z: jsonschema matches with Python's re, where $ also matches before
# a trailing newline.
_BDF = r"^[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]\Z"
_STR = {"type": "string"}


def _sub(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    # Unknown keys stay allowed: later minor versions of the spec may add fields.
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
    }


DEVICE_INFO_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["type", "version"],
    "properties": {
        "type": {"enum": ["pci", "vdpa", "vhost-user", "memif"]},
        "version": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+\Z"},
        "pci": _sub(
            {"pci-address": {"type": "string", "pattern": _BDF}},
            {
                "vhost-net": _STR,
                "rdma-device": _STR,
                "pf-pci-address": {"type": "string", "pattern": _BDF},
                "representor-device": _STR,
            },
        ),
        "vdpa": _sub(
            {"parent-device": _STR, "driver": {"enum": ["vhost", "virtio"]}, "path": _STR},
            {
                "pci-address": {"type": "string", "pattern": _BDF},
                "pf-pci-address": {"type": "string", "pattern": _BDF},
                "representor-device": _STR,
            },
        ),
        "vhost-user": _sub({"mode": {"enum": ["client", "server"]}, "path": _STR}),
        "memif": _sub(
            {
                "role": {"enum": ["master", "slave"]},
                "path": _STR,
                "mode": {"enum": ["ethernet", "ip", "inject-punt"]},
            }
        ),
    },
    # The map named after the type is required.
    "allOf": [
        {
            "if": {"properties": {"type": {"const": t}}, "required": ["type"]},
            "then": {"required": [t]},
        }
        for t in ("pci", "vdpa", "vhost-user", "memif")
    ],
}

_VALIDATOR = jsonschema.Draft202012Validator(DEVICE_INFO_SCHEMA)


def validate_device_info(info: Any, source: str = "device-info") -> None:
    """Raise CNIError(DECODE_FAILURE) unless ``info`` is valid device-info content."""
    error = best_match(_VALIDATOR.iter_errors(info))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise CNIError(
            DECODE_FAILURE,
            f"{source} is not valid device-info (spec {SPEC_VERSION})",
            f"at {where}: {error.message}",
        )


def _check_part(value: str, what: str) -> None:
    if not value or "/" in value or "\0" in value:
        raise CNIError(INVALID_CONFIG, f"invalid {what} {value!r} for a device-info file name")


def _check_name(name: str) -> None:
    if len(name.encode()) > _NAME_MAX:
        raise CNIError(INVALID_CONFIG, f"device-info file name too long: {name[:64]}...")


def dp_file_path(resource_name: str, device_id: str, base: str = DEFAULT_BASE) -> str:
    """Path of the device plugin's file: ``dp/<resource, "/"->"-">-<deviceID>-device.json``."""
    _check_part(resource_name.replace("/", "-"), "resource name")
    _check_part(device_id, "device id")
    name = f"{resource_name.replace('/', '-')}-{device_id}-device.json"
    _check_name(name)
    return os.path.join(base, "dp", name)


def cni_file_path(
    network_name: str, container_id: str, ifname: str, base: str = DEFAULT_BASE
) -> str:
    """Path of one attachment's file: ``cni/<network>-<containerID>_<ifname>``.

    "/" in the network name becomes "-" (the name Multus uses, so files match on
    a node switching between the two); a container id or ifname holding "/" or
    NUL is rejected with CNIError(INVALID_CONFIG), so the name is always one
    path component inside ``cni/``.
    """
    net = network_name.replace("/", "-")
    _check_part(net, "network name")
    _check_part(container_id, "container id")
    _check_part(ifname, "interface name")
    name = f"{net}-{container_id}_{ifname}"
    _check_name(name)
    return os.path.join(base, "cni", name)


def _load(path: str) -> tuple[bytes, Any] | None:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"cannot read device-info file {path}", str(exc)) from exc
    try:
        info = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CNIError(DECODE_FAILURE, f"device-info file {path} is not JSON", str(exc)) from exc
    validate_device_info(info, source=f"device-info file {path}")
    return raw, info


def read_device_info(path: str) -> dict[str, Any] | None:
    """The validated content of a device-info file, or None if it does not exist.

    Raises CNIError(DECODE_FAILURE) for a file that is not valid device-info,
    CNIError(IO_FAILURE) for one that cannot be read.
    """
    loaded = _load(path)
    return None if loaded is None else loaded[1]


def copy_dp_to_cni(
    resource_name: str,
    device_id: str,
    network_name: str,
    container_id: str,
    ifname: str,
    base: str = DEFAULT_BASE,
) -> str | None:
    """Copy the device plugin's file for this device to the attachment's file.

    Returns the attachment file's path, or None when the device plugin wrote no
    file (then nothing is created). The bytes are copied unchanged after
    validation; the write is atomic and the file mode is 0600.
    """
    loaded = _load(dp_file_path(resource_name, device_id, base))
    if loaded is None:
        return None
    dest = cni_file_path(network_name, container_id, ifname, base)
    _atomic_write(dest, loaded[0])
    return dest


def _atomic_write(path: str, data: bytes) -> None:
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"cannot write device-info file {path}", str(exc)) from exc


def remove_cni_file(
    network_name: str, container_id: str, ifname: str, base: str = DEFAULT_BASE
) -> bool:
    """Remove the attachment's file; True if it was there. A missing file is fine (DEL)."""
    path = cni_file_path(network_name, container_id, ifname, base)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"cannot remove device-info file {path}", str(exc)) from exc
    return True
