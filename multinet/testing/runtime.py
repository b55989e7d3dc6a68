"""What a CRI runtime hands a CNI plugin: the CNI_* environment and the pod's CNI_ARGS.

Used by the tests, the demo and the benchmark to call multinet as kubelet's
runtime would.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

CNI_BIN = "/usr/lib/cni"  # Debian's containernetworking-plugins


def pod_cni_args(pod: Mapping[str, Any], container_id: str = "", uid: str | None = None) -> str:
    """CNI_ARGS as containerd and CRI-O write them for a pod."""
    meta = pod["metadata"]
    return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={meta['namespace']};"
            f"K8S_POD_NAME={meta['name']};K8S_POD_INFRA_CONTAINER_ID={container_id};"
            f"K8S_POD_UID={uid if uid is not None else meta.get('uid', '')}")


def cni_env(command: str, container_id: str = "", netns: str = "", ifname: str = "eth0",
            args: str = "", path: str = CNI_BIN) -> dict[str, str]:
    """The environment of one plugin call; unset variables are left out, as runtimes do."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_ARGS": args,
        "CNI_PATH": path,
    }
    return {k: v for k, v in env.items() if v != "" or k in ("PATH", "CNI_COMMAND")}
