"""Many pods at once: no corrupted record, no shared address, no leak."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

from multinet.testing import configs

PODS = 16


def test_sixteen_pods_in_parallel(cnode, make_pod):
    """Checklist: CNI-LC-1."""
    conf = cnode.conf([
        configs.bridge_net("cluster", cnode.ipam_dir),
        configs.macvlan_net("macnet", cnode.macvlan_master, cnode.ipam_dir),
    ], result="all")
    pods = [make_pod() for _ in range(PODS)]
    ids = [f"cpar{i:02d}" for i in range(PODS)]
    pairs = list(zip(ids, pods, strict=True))
    with ThreadPoolExecutor(max_workers=PODS) as pool:
        adds = list(pool.map(lambda p: cnode.cni("ADD", conf, p[0], p[1].path), pairs))
    results = [run.ok() for run in adds]

    seen = set()
    for pod, result in zip(pods, results, strict=True):
        assert {"eth0", "net1"} <= set(pod.links())
        addresses = pod.addresses("eth0") + pod.addresses("net1")
        assert sorted(addresses) == sorted(ip["address"] for ip in result["ips"])
        assert not seen & set(addresses), "an address was handed out twice"
        seen |= set(addresses)
    assert len(seen) == PODS * 4
    assert sorted(cnode.records()) == ids

    with ThreadPoolExecutor(max_workers=PODS) as pool:
        dels = list(pool.map(lambda p: cnode.cni("DEL", conf, p[0], p[1].path), pairs))
    assert [run.returncode for run in dels] == [0] * PODS
    assert cnode.leased_ips() == []
    assert cnode.records() == []
    assert cnode.host_veths() == []


def _slow(name: str, record: str, **knobs) -> dict:
    return {"cniVersion": "1.0.0", "name": name, "type": "recorder", "recordFile": record,
            "sleep": 0.5, "result": {"cniVersion": "1.0.0", "interfaces": [
                {"name": name, "sandbox": "/x"}]}, **knobs}


def _together(secondaries: list[dict], workdir: str, verb: str) -> list[dict]:
    """The secondaries, each holding its `verb` until all of them have started it: they
    overlap for certain when run in parallel, whatever the machine's load; run one after
    another, the first gives up waiting after 20 s and they do not."""
    started = [os.path.join(workdir, f"{net['name']}.{verb}") for net in secondaries]
    return [{**net, "sleep": 0, "sleepOn": [verb], "startedFile": mine, "holdUntil": started,
             "holdSeconds": 20} for net, mine in zip(secondaries, started, strict=True)]


def _adds(record: str) -> list[dict]:
    with open(record) as handle:
        return [c for c in map(json.loads, handle) if c["command"] == "ADD"]


def _overlaps(calls: list[dict]) -> bool:
    spans = sorted((c["start"], c["end"]) for c in calls)
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


def test_secondaries_run_in_parallel_with_a_stable_order(cnode, pod, workdir):
    record = os.path.join(workdir, "calls")
    secondaries = [_slow(f"sec{i}", record) for i in range(1, 4)]
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir),
                       *_together(secondaries, workdir, "ADD")],
                      parallelAttachments=4, result="all")  # both opt-ins
    result = cnode.cni("ADD", conf, "cpar", pod.path).ok()
    assert _overlaps(_adds(record)), "secondaries ran one after another"
    names = [i["name"] for i in result["interfaces"] if i.get("sandbox")]
    assert names == ["eth0", "sec1", "sec2", "sec3"], "plan order, whatever the timing"
    cnode.cni("DEL", conf, "cpar", pod.path).ok()

    os.unlink(record)
    sequential = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), *secondaries])
    cnode.cni("ADD", sequential, "cseq", pod.path).ok()
    assert not _overlaps(_adds(record)), "the default must serialise"
    cnode.cni("DEL", sequential, "cseq", pod.path).ok()


def test_parallel_failure_rolls_back_every_started_attachment(cnode, pod, workdir):
    import json
    record = os.path.join(workdir, "calls")
    secondaries = [
        configs.macvlan_net("mac1", cnode.macvlan_master, cnode.ipam_dir,
                            subnets=("198.18.11.0/24",)),
        _slow("broken", record, failOn=["ADD"]),
        configs.macvlan_net("mac3", cnode.macvlan_master, cnode.ipam_dir,
                            subnets=("198.18.13.0/24",)),
    ]
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), *secondaries],
                      parallelAttachments=4)
    run = cnode.cni("ADD", conf, "cpfail", pod.path)
    assert run.returncode != 0 and "'broken'" in run.json["msg"]
    with open(record) as handle:
        assert [c["command"] for c in map(json.loads, handle)] == ["ADD", "DEL"]
    assert set(pod.links()) == {"lo"}
    assert cnode.leased_ips() == []
    assert cnode.records() == []
    assert cnode.host_veths() == []


def test_del_undoes_secondaries_in_parallel_and_the_cluster_network_last(cnode, pod, workdir):
    record = os.path.join(workdir, "calls")
    cluster = {**_slow("cluster", record), "sleep": 0}
    secondaries = _together([_slow(f"sec{i}", record) for i in range(1, 4)], workdir, "DEL")
    conf = cnode.conf([cluster, *secondaries], parallelAttachments=4)
    cnode.cni("ADD", conf, "cpdel", pod.path).ok()
    assert cnode.cni("DEL", conf, "cpdel", pod.path).returncode == 0
    with open(record) as handle:
        dels = [c for c in map(json.loads, handle) if c["command"] == "DEL"]
    by_name = {c["stdin"]["name"]: c for c in dels}
    assert _overlaps([by_name[f"sec{i}"] for i in range(1, 4)])
    assert by_name["cluster"]["start"] >= max(by_name[f"sec{i}"]["end"] for i in range(1, 4))
    assert cnode.records() == []
