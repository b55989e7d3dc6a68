"""A node moved from Multus: DEL of a pod Multus attached, from Multus' cache alone.

The pod is attached here as Multus attaches one: the reference plugins run directly,
in Multus' order and on its interface names, libcni's result kept for the conflist,
and Multus' scratch cache written in its format (tests/support/multus.py). multinet
has no record of the pod. Its DEL, as the plugin, through the daemon, and through
the shim with the daemon down, must undo every network, last first.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest
from support import multus
from support.daemon import Daemon
from support.plugin import TEST_PLUGINS

from multinet.testing import configs, runtime
from multinet.testing.runtime import CNI_BIN

CID = "c0ffee00multus"
ARGS = (f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
        f"K8S_POD_INFRA_CONTAINER_ID={CID};K8S_POD_UID=uid-1")
MAC = "02:00:00:00:00:aa"


class MultusPod:
    """Three networks as Multus attaches them; the calls recorded by tests/plugins/recorder."""

    def __init__(self, cnode, pod, workdir: str, device_id: str = "",
                 second_name: str = "default/second") -> None:
        self.cnode, self.pod = cnode, pod
        self.calls = os.path.join(workdir, "calls.jsonl")
        self.cache_dir = os.path.join(workdir, "multus")
        self.fail_flag = os.path.join(workdir, "fail-del")
        self.fail_second = os.path.join(workdir, "fail-del-second")
        ipam = cnode.ipam_dir
        recorded = {"type": "recorder", "recordFile": self.calls}
        cluster = {"cniVersion": "1.0.0", "name": "cluster", "plugins": [
            {**recorded, "delegate": "bridge", "bridge": "mnt0", "isGateway": True,
             "ipam": configs.host_local(ipam, "198.18.0.0/24", "fd00:18::/64")},
            recorded]}  # a chained plugin: its DEL shows the prevResult it was handed
        macnet = {"cniVersion": "1.0.0", "name": "macnet", **recorded, "delegate": "macvlan",
                  "master": cnode.macvlan_master, "mode": "bridge",
                  "ipam": configs.host_local(ipam, "198.18.1.0/24"),
                  "failOn": ["DEL"], "failIfExists": self.fail_flag}
        second = {"cniVersion": "1.0.0", "name": "second", **recorded, "delegate": "bridge",
                  "bridge": "mnt1", "capabilities": {"mac": True},
                  "ipam": configs.host_local(ipam, "198.18.3.0/24"),
                  "failOn": ["DEL"], "failIfExists": self.fail_second, "failCode": 11,
                  "failMsg": "second is busy"}
        self.networks = [(cluster, "eth0"), (macnet, "net1"), (second, "data0")]
        self.elements = [
            multus.delegate(cluster, from_libcni=True),
            multus.delegate(macnet, "default/macnet"),
            multus.delegate(second, second_name, ifname="data0", mac=MAC,
                            device_id=device_id),
        ]

    def plugin(self, conf: dict, command: str, ifname: str) -> dict:
        path = next(os.path.join(d, conf["type"]) for d in (TEST_PLUGINS, CNI_BIN)
                    if os.path.exists(os.path.join(d, conf["type"])))
        env = runtime.cni_env(command, CID, self.pod.path, ifname, ARGS,
                              f"{TEST_PLUGINS}:{CNI_BIN}")
        proc = subprocess.run(["ip", "netns", "exec", self.cnode.ns.name, path],
                              input=json.dumps(conf).encode(), env=env, capture_output=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
        return json.loads(proc.stdout)

    def attach(self) -> None:
        """ADD as libcni does for Multus: a conflist's plugins in order, prevResult
        threaded; libcni's result cache written for it; then the scratch cache."""
        for network, ifname in self.networks:
            if "plugins" not in network:
                self.plugin(network, "ADD", ifname)
                continue
            result = None
            for plugin in network["plugins"]:
                conf = {**plugin, "name": network["name"], "cniVersion": network["cniVersion"]}
                if result is not None:
                    conf["prevResult"] = result
                result = self.plugin(conf, "ADD", ifname)
            self.cluster_result = result
            results = os.path.join(self.cache_dir, "results")
            os.makedirs(results, mode=0o700, exist_ok=True)
            with open(os.path.join(results, f"cluster-{CID}-{ifname}"), "w") as handle:
                json.dump({"kind": "cniCacheV1", "containerId": CID, "ifName": ifname,
                           "networkName": "cluster", "result": result,
                           "config": base64.b64encode(json.dumps(network).encode()).decode()},
                          handle)
        self.cache = multus.write_cache(self.cache_dir, CID, self.elements)
        assert set(self.pod.links()) == {"lo", "eth0", "net1", "data0"}
        assert len(self.cnode.leased_ips()) == 4
        os.unlink(self.calls)  # what follows is multinet's

    def conf(self, **extra) -> dict:
        return self.cnode.conf([], multusCacheDir=self.cache_dir, **extra)

    def dels(self) -> list[dict]:
        if not os.path.exists(self.calls):
            return []
        with open(self.calls) as handle:
            calls = [json.loads(line) for line in handle]
        return [c for c in calls if c["command"] == "DEL"]

    def assert_gone(self) -> None:
        assert set(self.pod.links()) == {"lo"}
        assert self.cnode.host_veths() == []
        assert self.cnode.leased_ips() == [], "host-local leases released"
        assert not os.path.exists(self.cache), "Multus' cache removed"
        assert os.listdir(os.path.join(self.cache_dir, "results")) == []
        assert self.cnode.records() == []


@pytest.fixture
def multus_pod(cnode, pod, workdir) -> MultusPod:
    made = MultusPod(cnode, pod, workdir)
    made.attach()
    return made


def del_via(how: str, multus_pod: MultusPod, workdir: str, netns: str):
    conf = multus_pod.conf(shimWaitSeconds=0.2)
    if how == "plugin":
        return multus_pod.cnode.cni("DEL", conf, CID, netns, args=ARGS)
    daemon = Daemon(multus_pod.cnode.ns, os.path.join(workdir, "daemon"))
    try:
        daemon.start()
        if how == "daemon-down":
            assert daemon.stop() == 0
        return daemon.shim("DEL", conf, CID, netns, args=ARGS)
    finally:
        daemon.kill()


@pytest.mark.parametrize("how", ["plugin", "daemon", "daemon-down"])
def test_del_undoes_every_multus_network_last_first(multus_pod, workdir, how):
    delete = del_via(how, multus_pod, workdir, multus_pod.pod.path)
    assert delete.returncode == 0, delete.stdout + delete.stderr
    multus_pod.assert_gone()

    delegated = [(c["stdin"]["name"], c["env"]["CNI_IFNAME"]) for c in multus_pod.dels()
                 if "delegate" in c["stdin"]]
    assert delegated == [("second", "data0"), ("macnet", "net1"), ("cluster", "eth0")]
    by_network = {c["stdin"]["name"]: c for c in multus_pod.dels() if "delegate" in c["stdin"]}
    assert by_network["second"]["stdin"]["runtimeConfig"] == {"mac": MAC}, \
        "the element's macRequest reaches a plugin that declares mac"
    assert "runtimeConfig" not in by_network["macnet"]["stdin"]
    for call in multus_pod.dels():
        assert call["env"]["CNI_ARGS"] == (
            f"IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
            f"K8S_POD_INFRA_CONTAINER_ID={CID};K8S_POD_UID=uid-1")
        assert call["env"]["CNI_CONTAINERID"] == CID
    chained = [c for c in multus_pod.dels() if "delegate" not in c["stdin"]]
    assert [c["env"]["CNI_IFNAME"] for c in chained] == ["eth0"]
    assert chained[0]["stdin"]["prevResult"]["ips"] == multus_pod.cluster_result["ips"], \
        "libcni's cached result is the conflist's prevResult"


def test_del_reports_each_network_it_took_over(multus_pod, workdir):
    multus_pod.cnode.cni("DEL", multus_pod.conf(), CID, multus_pod.pod.path, args=ARGS).ok()
    with open(multus_pod.cnode.log_file) as handle:
        log = handle.read()
    for name, ifname, element in (("default/second", "data0", "element 2, config"),
                                  ("default/macnet", "net1", "element 1, config"),
                                  ("cluster", "eth0", "element 0, conflist")):
        assert f"Multus network {name!r} on {ifname} ({element})" in log
    assert "took over from Multus" in log and multus_pod.cache in log


def test_del_with_the_netns_gone_still_releases_the_leases(multus_pod, workdir):
    multus_pod.pod.delete()
    delete = multus_pod.cnode.cni("DEL", multus_pod.conf(), CID, "", args=ARGS)
    assert delete.returncode == 0, delete.stdout + delete.stderr
    assert multus_pod.cnode.leased_ips() == []
    assert multus_pod.cnode.host_veths() == []
    assert not os.path.exists(multus_pod.cache)


def test_a_failing_delegate_keeps_the_cache_and_the_retry_finishes(multus_pod):
    conf = multus_pod.conf()
    open(multus_pod.fail_flag, "w").close()
    failed = multus_pod.cnode.cni("DEL", conf, CID, multus_pod.pod.path, args=ARGS)
    assert failed.returncode == 1
    error = failed.json
    assert error["code"] == 100 and "macnet" in error["msg"] and multus_pod.cache in error["msg"]
    # The plugin's own error JSON is kept in details.
    assert json.loads(error["details"])["msg"] == "recorder told to fail DEL"
    assert "Traceback" not in failed.stdout + failed.stderr
    assert os.path.exists(multus_pod.cache), "kept for the runtime's retry"
    # Every other network was still deleted (NPWG 7.2: carry on past a failure).
    assert set(multus_pod.pod.links()) == {"lo", "net1"}
    assert len(multus_pod.cnode.leased_ips()) == 1

    os.unlink(multus_pod.fail_flag)
    multus_pod.cnode.cni("DEL", conf, CID, multus_pod.pod.path, args=ARGS).ok()
    multus_pod.assert_gone()
    # A further DEL (containerd's RemovePodSandbox) finds nothing and succeeds.
    multus_pod.cnode.cni("DEL", conf, CID, "", args=ARGS).ok()


@pytest.mark.parametrize("how", ["plugin", "daemon-down"])
def test_a_torn_cache_is_code_6_and_nothing_is_deleted(multus_pod, workdir, how):
    with open(multus_pod.cache, "rb") as handle:
        whole = handle.read()
    with open(multus_pod.cache, "wb") as handle:
        handle.write(whole[: len(whole) // 2])
    delete = del_via(how, multus_pod, workdir, multus_pod.pod.path)
    assert delete.returncode == 1
    assert delete.json["code"] == 6 and multus_pod.cache in delete.json["msg"]
    assert "Traceback" not in delete.stdout + delete.stderr
    assert multus_pod.dels() == [], "no delegate ran"
    assert set(multus_pod.pod.links()) == {"lo", "eth0", "net1", "data0"}
    assert os.path.exists(multus_pod.cache)
    assert len(multus_pod.cnode.leased_ips()) == 4


def test_del_removes_the_device_info_file_of_the_network_with_a_device(cnode, pod, workdir):
    """An element with a deviceID had Multus write its device-info file at
    cni/<Multus' name, "/" as "-">-<containerID>_<element's ifname>: DEL removes that
    file, and no file DEL was not told about."""
    multus_pod = MultusPod(cnode, pod, workdir, device_id="0000:03:00.1")
    multus_pod.attach()
    devinfo_dir = os.path.join(workdir, "devinfo")
    files = os.path.join(devinfo_dir, "cni")
    os.makedirs(files)
    taken = f"default-second-{CID}_data0"
    kept = [f"second-{CID}_data0",  # the network's own name, not Multus' element name
            f"default-second-{CID}_eth0",  # the runtime's CNI_IFNAME, not the element's
            "default-second-0ther0000000_data0",  # another container's
            f"default-macnet-{CID}_net1"]  # a network without a device has no file of ours
    for name in (taken, *kept):
        with open(os.path.join(files, name), "w") as handle:
            json.dump({"type": "pci", "version": "1.1.0",
                       "pci": {"pci-address": "0000:03:00.1"}}, handle)
    conf = multus_pod.conf(deviceInfoDir=devinfo_dir)
    cnode.cni("DEL", conf, CID, pod.path, args=ARGS).ok()
    multus_pod.assert_gone()
    assert sorted(os.listdir(files)) == sorted(kept)


def test_when_several_networks_fail_the_first_to_fail_is_answered(multus_pod):
    """DEL goes last first: `second` fails before `macnet`; its code and message are
    the answer, the count says two failed, and both plugins' errors are in details."""
    conf = multus_pod.conf()
    open(multus_pod.fail_flag, "w").close()
    open(multus_pod.fail_second, "w").close()
    failed = multus_pod.cnode.cni("DEL", conf, CID, multus_pod.pod.path, args=ARGS)
    assert failed.returncode == 1
    error = failed.json
    assert error["code"] == 11, "second's code, not macnet's 100"
    assert "(2 of 3 network(s) failed)" in error["msg"] and "second is busy" in error["msg"]
    assert [json.loads(line)["msg"] for line in error["details"].splitlines()] == [
        "second is busy", "recorder told to fail DEL"]
    assert set(multus_pod.pod.links()) == {"lo", "net1", "data0"}
    os.unlink(multus_pod.fail_flag)
    os.unlink(multus_pod.fail_second)
    multus_pod.cnode.cni("DEL", conf, CID, multus_pod.pod.path, args=ARGS).ok()
    multus_pod.assert_gone()


def test_an_unusable_libcni_result_is_no_prev_result_not_a_failure(multus_pod):
    """A cached result that is not a valid result of the network's version: the DEL
    goes on without a prevResult (as libcni does), saying why."""
    [name] = os.listdir(os.path.join(multus_pod.cache_dir, "results"))
    path = os.path.join(multus_pod.cache_dir, "results", name)
    with open(path) as handle:
        cached = json.load(handle)
    cached["result"]["ips"] = [{"address": "not-an-address"}]
    with open(path, "w") as handle:
        json.dump(cached, handle)
    multus_pod.cnode.cni("DEL", multus_pod.conf(), CID, multus_pod.pod.path, args=ARGS).ok()
    multus_pod.assert_gone()
    chained = [c for c in multus_pod.dels() if "delegate" not in c["stdin"]]
    assert len(chained) == 1 and "prevResult" not in chained[0]["stdin"]
    with open(multus_pod.cnode.log_file) as handle:
        assert "cannot be used as prevResult" in handle.read()


def test_a_device_info_file_that_cannot_be_removed_never_fails_the_del(cnode, pod, workdir):
    """The file is only a description (Multus too goes on): a directory where it should
    be is left, with a warning naming it, and everything else is undone."""
    multus_pod = MultusPod(cnode, pod, workdir, device_id="0000:03:00.1")
    multus_pod.attach()
    devinfo_dir = os.path.join(workdir, "devinfo")
    stuck = os.path.join(devinfo_dir, "cni", f"default-second-{CID}_data0")
    os.makedirs(os.path.join(stuck, "inside"))
    cnode.cni("DEL", multus_pod.conf(deviceInfoDir=devinfo_dir), CID, pod.path,
              args=ARGS).ok()
    multus_pod.assert_gone()
    assert os.path.isdir(stuck)
    with open(cnode.log_file) as handle:
        assert f"cannot remove device-info file {stuck}" in handle.read()


def test_an_element_whose_device_info_file_cannot_be_named_is_deleted_without_one(
        cnode, pod, workdir):
    """A Multus name too long for a file name: no device-info file is named (a warning
    says so) and the network is deleted all the same."""
    long_name = "default/" + "n" * 250
    multus_pod = MultusPod(cnode, pod, workdir, device_id="0000:03:00.1",
                           second_name=long_name)
    multus_pod.attach()
    devinfo_dir = os.path.join(workdir, "devinfo")
    cnode.cni("DEL", multus_pod.conf(deviceInfoDir=devinfo_dir), CID, pod.path,
              args=ARGS).ok()
    multus_pod.assert_gone()
    with open(cnode.log_file) as handle:
        assert f"network {long_name!r}: no device-info file" in handle.read()
