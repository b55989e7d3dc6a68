"""Device-info files (NPWG device-info spec) around an attachment's delegates."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from typing import Any

from multinet.attach.plan import Attachment
from multinet.cni.errors import IO_FAILURE, CNIError
from multinet.cni.request import CONTAINER_ID_RE
from multinet.fileio import ensure_private_dir
from multinet.k8s import devinfo

log = logging.getLogger("multinet.deviceinfo")


def prepare(attachment: Attachment, container_id: str) -> None:
    """Make sure the attachment's device-info file can be written (its `cni/`
    directory exists, DI-4.2.1-a: the plugin may write it even with no device
    plugin behind the network), then copy the device plugin's file into it."""
    extra = attachment.extra
    if extra.get("deviceInfoFile"):
        _ensure_cni_dir(attachment, os.path.dirname(extra["deviceInfoFile"]))
    if extra.get("resourceName") and extra.get("deviceID") and extra.get("deviceInfoFile"):
        devinfo.copy_dp_to_cni(extra["resourceName"], extra["deviceID"],
                               attachment.network.name, container_id, attachment.ifname,
                               base=extra["deviceInfoBase"])


def _ensure_cni_dir(attachment: Attachment, directory: str) -> None:
    """Create the directory 0700 when missing; refuse a symlink or a non-directory
    in its place. An existing directory keeps its mode: device plugins share it."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        try:
            ensure_private_dir(directory)
        except OSError as exc:
            raise CNIError(IO_FAILURE, f"network {attachment.name!r}: cannot create the "
                           f"device-info directory {directory}: {exc.strerror}") from None
        return
    except OSError as exc:  # a file where a parent directory should be, say
        raise CNIError(IO_FAILURE, f"network {attachment.name!r}: cannot use the "
                       f"device-info directory {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise CNIError(IO_FAILURE, f"network {attachment.name!r}: the device-info directory "
                       f"{directory} is not a directory (a symlink?); refusing to use it")


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
