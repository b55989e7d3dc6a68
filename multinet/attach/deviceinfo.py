"""Device-info files (NPWG device-info spec) around an attachment's delegates."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

from multinet.attach.plan import Attachment
from multinet.cni.errors import CNIError
from multinet.cni.request import CONTAINER_ID_RE
from multinet.k8s import devinfo

log = logging.getLogger("multinet.deviceinfo")


def prepare(attachment: Attachment, container_id: str) -> None:
    """Copy the device plugin's file for the attachment's device into the CNI file."""
    extra = attachment.extra
    if extra.get("resourceName") and extra.get("deviceID") and extra.get("deviceInfoFile"):
        devinfo.copy_dp_to_cni(extra["resourceName"], extra["deviceID"],
                               attachment.network.name, container_id, attachment.ifname,
                               base=extra["deviceInfoBase"])


def read(attachment: Attachment) -> dict[str, Any] | None:
    """The device-info for network-status; an invalid file is left out, not fatal."""
    path = attachment.extra.get("deviceInfoFile")
    if not path:
        return None
    try:
        return devinfo.read_device_info(path)
    except CNIError:
        return None


def forget(attachment: Attachment) -> None:
    """Remove the attachment's device-info file: only a file named as the spec names
    it (`<network>-<containerID>_<ifname>`) directly in `<base>/cni`, that directory
    opened without following a symlink; any other path is left alone, loudly."""
    path = attachment.extra.get("deviceInfoFile")
    if not path:
        return
    base = attachment.extra.get("deviceInfoBase")
    if not _is_device_info_path(attachment, path, base):
        log.error("network %r: not removing %r: not a device-info file of this attachment",
                  attachment.name, path)
        return
    try:
        fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.error("network %r: not removing %s: %s", attachment.name, path, exc.strerror)
        return
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.basename(path), dir_fd=fd)
    finally:
        os.close(fd)


def _is_device_info_path(attachment: Attachment, path: Any, base: Any) -> bool:
    if not isinstance(path, str) or not isinstance(base, str) or not os.path.isabs(base):
        return False
    if os.path.normpath(base) != base or os.path.dirname(path) != os.path.join(base, "cni"):
        return False
    name = os.path.basename(path)
    prefix = f"{attachment.network.name.replace('/', '-')}-"
    suffix = f"_{attachment.ifname}"
    middle = name[len(prefix):-len(suffix)] if len(name) > len(prefix) + len(suffix) else ""
    return (name.startswith(prefix) and name.endswith(suffix)
            and CONTAINER_ID_RE.match(middle) is not None)
