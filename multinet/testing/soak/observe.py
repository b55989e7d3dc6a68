"""The judge: what one container left on a node, read from the system itself.

Nothing here trusts multinet's own account: records and locks are files under
cniDir, leases are host-local's files (their first line is the container id),
interfaces are netlink's, processes are /proc's.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

from multinet.attach import delmark
from multinet.testing.procs import working_for

LEASE_SKIP = ("lock", "last_reserved_ip")
QUARANTINE_MARK = "quarantine"  # a directory named so holds records set aside on purpose
DYING = "(peer namespace unnamed: being removed?)"


@dataclass(frozen=True)
class Finding:
    kind: str
    detail: str


def _ip_json(netns: str, *args: str) -> list[dict]:
    proc = subprocess.run(["ip", "-j", "-n", netns, *args], capture_output=True, timeout=10,
                          check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return json.loads(proc.stdout)


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join("/var/run/netns", name))


# -- files ------------------------------------------------------------------------------

def leases(ipam_dir: str) -> dict[str, list[str]]:
    """host-local's allocations under `ipam_dir`, by the container id that holds them."""
    out: dict[str, list[str]] = {}
    try:
        networks = os.listdir(ipam_dir)
    except FileNotFoundError:
        return out
    for network in networks:
        directory = os.path.join(ipam_dir, network)
        try:
            names = os.listdir(directory)
        except (NotADirectoryError, FileNotFoundError):
            continue
        for name in names:
            if name.startswith(LEASE_SKIP):
                continue
            path = os.path.join(directory, name)
            try:
                with open(path, "rb") as handle:
                    owner = handle.read(4096).split(b"\n", 1)[0].strip().decode(errors="replace")
            except (FileNotFoundError, IsADirectoryError):
                continue
            out.setdefault(owner, []).append(path)
    return out


def container_files(cni_dir: str, container_id: str) -> list[Finding]:
    """Every file under cniDir that names the container, but what is quarantined."""
    found: list[Finding] = []
    for directory, subdirs, files in os.walk(cni_dir):
        subdirs[:] = [d for d in subdirs if QUARANTINE_MARK not in d]
        for name in files:
            if container_id not in name:
                continue
            path = os.path.join(directory, name)
            if os.path.basename(directory) == ".locks":
                if name == container_id + delmark.SUFFIX:
                    continue  # a DEL marker: kept by design, swept after RETENTION_SECONDS
                kind = "lock-left"
            elif name == container_id:
                kind = "record-left"
            else:
                kind = "temp-file-left"
            found.append(Finding(kind, path))
    return found


def quarantined(cni_dir: str, container_id: str) -> list[str]:
    """Records of the container that were set aside (reported, not a leak by themselves)."""
    out = []
    for directory, _subdirs, files in os.walk(cni_dir):
        if QUARANTINE_MARK in directory:
            out += [os.path.join(directory, n) for n in files if container_id in n]
    return out


def has_record(cni_dir: str, container_id: str) -> bool:
    return os.path.exists(os.path.join(cni_dir, container_id))


# -- interfaces ---------------------------------------------------------------------------

def pod_interfaces(pod: str) -> list[str]:
    """Links in the pod namespace other than loopback; none when it is gone."""
    if not netns_exists(pod):
        return []
    return sorted(link["ifname"] for link in _ip_json(pod, "link", "show")
                  if link["ifname"] != "lo")


@dataclass(frozen=True)
class NodeLink:
    name: str
    kind: str  # "veth" or another link type
    peer_netns: str | None  # the named namespace a veth's peer lives in, "" if unnamed


def stray_node_links(node: str, baseline: set[str]) -> list[NodeLink]:
    """Links in the node namespace that were not there before the run (and not expected)."""
    ids = {entry.get("nsid"): entry.get("name", "") for entry in _ip_json(node, "netns",
                                                                          "list-id")}
    out = []
    for link in _ip_json(node, "-d", "link", "show"):
        if link["ifname"] in baseline:
            continue
        kind = link.get("linkinfo", {}).get("info_kind", "")
        peer = ids.get(link["link_netnsid"], "") if "link_netnsid" in link else None
        out.append(NodeLink(link["ifname"], kind, peer))
    return out


# -- processes ---------------------------------------------------------------------------

def processes(container_id: str, plugin_dir: str = "") -> list[Finding]:
    """Live processes working for the container: its CNI_CONTAINERID in their
    environment, or (when they have none) a command line under `plugin_dir`."""
    return [Finding("delegate-alive-after-del", f"pid {pid}: {cmdline}")
            for pid, cmdline in working_for(lambda owner: owner == container_id, plugin_dir)]


# -- the two judgements --------------------------------------------------------------------

@dataclass(frozen=True)
class Scene:
    """Where one container's traces can be: the node, its directories, its pod."""

    node: str
    cni_dir: str
    ipam_dir: str
    plugin_dir: str
    baseline: frozenset[str]


def _veths_to(scene: Scene, pod: str) -> list[NodeLink]:
    return [link for link in stray_node_links(scene.node, set(scene.baseline))
            if link.peer_netns == pod]


def unrecorded(scene: Scene, container_id: str, pod: str) -> list[Finding]:
    """What exists for the container while it has no record: it would never be DELeted."""
    if has_record(scene.cni_dir, container_id):
        return []
    found = [Finding("lease-without-record", path)
             for path in leases(scene.ipam_dir).get(container_id, [])]
    found += [Finding("interface-without-record", f"{pod}: {name}")
              for name in pod_interfaces(pod)]
    found += [Finding("veth-without-record", link.name) for link in _veths_to(scene, pod)]
    return found


def leftovers(scene: Scene, container_id: str, pod: str, others: set[str] = frozenset(),
              processes_too: bool = True) -> list[Finding]:
    """Everything of the container still there after its final DEL answered.

    `others` are pod namespaces of containers not finished yet: veths to them are theirs.
    """
    found = container_files(scene.cni_dir, container_id)
    found += [Finding("lease-left", path)
              for path in leases(scene.ipam_dir).get(container_id, [])]
    found += [Finding("pod-interface-left", f"{pod}: {name}") for name in pod_interfaces(pod)]
    for link in stray_node_links(scene.node, set(scene.baseline)):
        if link.peer_netns in others or (link.peer_netns and link.peer_netns != pod):
            continue  # a veth into another pod's namespace is that pod's
        if link.kind == "veth" and link.peer_netns == pod:
            found.append(Finding("veth-left", link.name))
        elif link.kind == "veth" and link.peer_netns == "":
            # Its peer's namespace has no name: being torn down by the kernel (the
            # caller waits a moment for these), or held open by a stray process.
            found.append(Finding("veth-left", f"{link.name} {DYING}"))
        else:
            found.append(Finding("node-interface-left", f"{link.name} ({link.kind})"))
    if processes_too:
        found += processes(container_id, scene.plugin_dir)
    return found
