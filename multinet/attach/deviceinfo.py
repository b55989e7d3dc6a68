"""Device-info files (NPWG device-info spec) around an attachment's delegates."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from multinet.attach.plan import Attachment
from multinet.cni.errors import CNIError
from multinet.k8s import devinfo


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
    path = attachment.extra.get("deviceInfoFile")
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
