"""The engine's contract with runtimes, with the reference plugins in real namespaces.

Exact values a runtime relies on: the order of a rollback, the codes of a timeout
and of a second ADD, the 15-byte interface-name limit, CHECK of an ADD that never
finished, and the DNS of the merged result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from support.plugin import cni_env
from support.waiting import wait_for

from multinet.testing import configs
from multinet.testing.procs import alive


def calls(path: str) -> list[tuple[str, str]]:
    """(verb, network name) of every recorded delegate call, in order."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [(c["command"], c["stdin"]["name"]) for c in map(json.loads, handle)]


def recorded(real: dict, record: str, **knobs) -> dict:
    """A reference plugin's network, run through the recorder so its calls are seen."""
    return {**real, "type": "recorder", "delegate": real["type"], "recordFile": record,
            **knobs}


def recorder(name: str, record: str, **knobs) -> dict:
    return {"cniVersion": "1.0.0", "name": name, "type": "recorder", "recordFile": record,
            **knobs}




def test_rollback_runs_del_from_the_failed_delegate_back_to_the_first(cnode, pod, workdir):
    """Checklist: CNI-DLG-4."""
    record = os.path.join(workdir, "calls.jsonl")
    cluster, macnet, _ = cnode.three_networks()
    delegates = [recorded(cluster, record), recorded(macnet, record),
                 recorder("broken", record, failOn=["ADD"], failCode=7, failMsg="bad VF"),
                 recorder("never", record)]
    run = cnode.cni("ADD", cnode.conf(delegates, parallelAttachments=1), "crb", pod.path)
    assert run.returncode != 0 and run.json["code"] == 7
    assert calls(record) == [
        ("ADD", "cluster"), ("ADD", "macnet"), ("ADD", "broken"),
        ("DEL", "broken"), ("DEL", "macnet"), ("DEL", "cluster")], \
        "last first, the failed one included, the one never started left alone"
    cnode.assert_clean(pod)


def test_a_delegate_past_its_timeout_is_killed_and_the_add_answers_11(cnode, pod, workdir):
    """Checklist: CNI-ERR-1."""
    record = os.path.join(workdir, "calls.jsonl")
    pid_file = os.path.join(workdir, "slow.pid")
    delegates = cnode.three_networks()[:1] + [
        recorder("slow", record, sleep=60, pidFile=pid_file)]
    # Far beyond what the cluster network's plugin, or the recorder's start, takes on a
    # loaded machine; far short of the recorder's sleep.
    conf = cnode.conf(delegates, delegateTimeoutSeconds=8)
    run = cnode.cni("ADD", conf, "ctmo", pod.path)
    assert run.returncode != 0
    assert run.json["code"] == 11, run.json
    assert "'slow'" in run.json["msg"] and "did not finish within 8s" in run.json["msg"]
    with open(pid_file) as handle:
        pid = int(handle.read())
    wait_for(lambda: not alive(pid), what="the overrunning delegate killed")
    assert calls(record) == [("DEL", "slow")], "rolled back, the timed-out one included"
    cnode.assert_clean(pod)


def test_a_second_add_of_the_same_container_is_105_and_changes_nothing(cnode, pod):
    """Checklist: CNI-ADD-5."""
    conf = cnode.conf(cnode.three_networks()[:2], result="all")
    first = cnode.cni("ADD", conf, "c105", pod.path).ok()
    links, leases = pod.links(), sorted(cnode.leased_ips())
    again = cnode.cni("ADD", conf, "c105", pod.path)
    assert again.returncode != 0
    assert again.json["code"] == 105
    assert again.json["msg"] == ("container c105 already has 2 attachment(s); "
                                 "DEL it before adding again")
    assert pod.links() == links and sorted(cnode.leased_ips()) == leases
    with open(os.path.join(cnode.cni_dir, "c105")) as handle:
        kept = json.load(handle)
    assert kept["state"] == "added"
    assert [a["result"]["interfaces"][-1]["mac"] for a in kept["attachments"]] == \
        [i["mac"] for i in first["interfaces"] if i.get("sandbox")]
    cnode.cni("DEL", conf, "c105", pod.path).ok()
    cnode.assert_clean(pod)


def test_a_15_byte_cni_ifname_is_used_and_16_is_refused_with_code_4(cnode, pod):
    """Checklist: CNI-EXEC-4."""
    conf = cnode.conf(cnode.three_networks()[:1])
    longest = "e" * 15
    cnode.cni("ADD", conf, "cifn", pod.path, ifname=longest).ok()
    assert set(pod.links()) == {"lo", longest}
    cnode.cni("DEL", conf, "cifn", pod.path, ifname=longest).ok()
    cnode.assert_clean(pod)

    refused = cnode.cni("ADD", conf, "cifn", pod.path, ifname="e" * 16)
    assert refused.returncode != 0
    assert refused.json["code"] == 4
    assert refused.json["msg"] == f"CNI_IFNAME {'e' * 16!r} is longer than 15 bytes"
    cnode.assert_clean(pod)


def test_check_of_an_add_that_never_finished_fails_and_del_cleans_up(cnode, pod, workdir):
    record = os.path.join(workdir, "calls.jsonl")
    pid_file = os.path.join(workdir, "slow.pid")
    delegates = cnode.three_networks()[:1] + [
        recorder("slow", record, sleep=60, pidFile=pid_file)]
    conf = cnode.conf(delegates)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", cnode.ns.name, sys.executable, "-m", "multinet.cli.plugin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=cni_env("ADD", "cunf", pod.path), start_new_session=True)
    proc.stdin.write(json.dumps(conf).encode())
    proc.stdin.close()
    wait_for(lambda: os.path.exists(pid_file) and os.path.getsize(pid_file) > 0,
             what="the delegate's pid file")
    with open(pid_file) as handle:
        pid = int(handle.read())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    if alive(pid):
        os.kill(pid, signal.SIGKILL)  # the runtime's kill leaves it orphaned
    with open(os.path.join(cnode.cni_dir, "cunf")) as handle:
        assert json.load(handle)["state"] == "adding"

    check = cnode.cni("CHECK", conf, "cunf", pod.path)
    assert check.returncode != 0
    assert check.json["code"] == 3
    assert check.json["msg"] == "container cunf has no completed ADD to check"
    assert "eth0" in pod.links(), "CHECK changed nothing"

    cnode.cni("DEL", conf, "cunf", pod.path).ok()
    cnode.assert_clean(pod)


def test_merged_dns_is_the_cluster_networks(cnode, pod):
    cluster, macnet, _ = cnode.three_networks()
    cluster_dns = {"nameservers": ["198.18.0.53", "fd00:18::53"], "domain": "cluster.test",
                   "search": ["ns.svc.cluster.test", "cluster.test"], "options": ["ndots:5"]}
    delegates = [{**cluster, "dns": cluster_dns},
                 {**macnet, "dns": {"nameservers": ["198.18.1.53"], "search": ["other.test"]}}]
    result = cnode.cni("ADD", cnode.conf(delegates), "cdns", pod.path).ok()
    assert result["dns"] == cluster_dns
    cnode.cni("DEL", cnode.conf(delegates), "cdns", pod.path).ok()
    cnode.assert_clean(pod)


def test_one_default_route_per_family_in_pod_and_result(cnode, pod):
    cluster, _, _ = cnode.three_networks()
    second = configs.macvlan_net("second", cnode.macvlan_master, cnode.ipam_dir,
                                 routes=["0.0.0.0/0", "::/0"])
    conf = cnode.conf([cluster, second])
    result = cnode.cni("ADD", conf, "croutes", pod.path).ok()
    for family in ("4", "6"):
        assert [r["dev"] for r in pod.default_routes(family)] == ["eth0"], family
    defaults = [r for r in result["routes"] if r["dst"] in ("0.0.0.0/0", "::/0")]
    assert sorted(r["dst"] for r in defaults) == ["0.0.0.0/0", "::/0"]
    interfaces = result["interfaces"]
    for ip in result["ips"]:
        name = interfaces[ip["interface"]]["name"]
        assert ip["address"] in pod.addresses(name), (ip, name)
    cnode.cni("DEL", conf, "croutes", pod.path).ok()
    cnode.assert_clean(pod)
