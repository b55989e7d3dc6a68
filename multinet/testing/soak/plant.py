"""Leaks planted on purpose: the judge's own test (and `hack/soak.py --plant`)."""

from __future__ import annotations

import os
import subprocess
import time

from multinet.testing.netns import run

KINDS = ("lease", "record", "lock", "temp-file", "veth", "pod-interface", "node-interface",
         "process")


def wait_exec(pid: int, program: str, timeout: float = 10.0) -> None:
    """Until `pid` runs `program`: before its exec it still shows its parent's environment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if program.encode() in handle.read():
                    return
        except FileNotFoundError:
            return
        time.sleep(0.005)
    raise RuntimeError(f"process {pid} did not start {program} within {timeout}s")


def plant(kind: str, *, container_id: str, node: str, pod: str, cni_dir: str,
          ipam_dir: str) -> subprocess.Popen | None:
    """Leave one trace of `kind` for the container; a process is returned (kill it)."""
    if kind in ("veth", "pod-interface") and not os.path.exists(f"/var/run/netns/{pod}"):
        run("ip", "netns", "add", pod)  # the runtime removed it already: make it again
    if kind == "lease":
        directory = os.path.join(ipam_dir, "cluster")
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "198.18.3.250"), "w") as handle:
            handle.write(f"{container_id}\r\neth0")
    elif kind in ("record", "lock", "temp-file"):
        name = {"record": container_id, "lock": os.path.join(".locks", f"{container_id}.lock"),
                "temp-file": f".{container_id}.abc123"}[kind]
        path = os.path.join(cni_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write("{}")
    elif kind == "veth":
        run("ip", "-n", node, "link", "add", "skplant0", "type", "veth", "peer", "name",
            "plant0", "netns", pod)
    elif kind == "pod-interface":
        run("ip", "-n", pod, "link", "add", "plant1", "type", "veth", "peer", "name", "plant2")
    elif kind == "node-interface":
        run("ip", "-n", node, "link", "add", "skplant3", "type", "bridge")
    elif kind == "process":
        proc = subprocess.Popen(["sleep", "60"], env={"CNI_CONTAINERID": container_id},
                                start_new_session=True)
        wait_exec(proc.pid, "sleep")
        return proc
    else:
        raise ValueError(f"unknown leak kind {kind!r}; one of {', '.join(KINDS)}")
    return None
