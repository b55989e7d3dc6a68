"""Many pods at once: no corrupted record, no shared address, no leak."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from multinet.testing import configs

PODS = 16


def test_sixteen_pods_in_parallel(cnode, make_pod):
    conf = cnode.conf([
        configs.bridge_net("cluster", cnode.ipam_dir),
        configs.macvlan_net("macnet", cnode.macvlan_master, cnode.ipam_dir),
    ])
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
