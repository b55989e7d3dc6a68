"""Secondary attachments run one after another by default (NPWG 7.2, 7.3);
`parallelAttachments` above 1 is an opt-in with its documented trade-off."""

from __future__ import annotations

import json
import os

from multinet.testing import configs


def _net(name: str, record: str, **knobs) -> dict:
    return {"cniVersion": "1.0.0", "name": name, "type": "recorder", "recordFile": record,
            "sleep": 0.3, "result": {"cniVersion": "1.0.0", "interfaces": [
                {"name": name, "sandbox": "/x"}]}, **knobs}


def _calls(record: str) -> list[dict]:
    if not os.path.exists(record):
        return []
    with open(record) as handle:
        return [json.loads(line) for line in handle]


def _overlap(calls: list[dict]) -> bool:
    spans = sorted((c["start"], c["end"]) for c in calls)
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


def test_npwg_7_3_a_default_runs_secondaries_one_after_another(cnode, pod, workdir):
    """NPWG-7.3-a: with no `parallelAttachments` key, no two delegate ADDs overlap,
    and DEL too runs them one at a time."""
    record = os.path.join(workdir, "calls")
    secondaries = [_net(f"sec{i}", record, sleepOn=["ADD", "DEL"]) for i in range(1, 4)]
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), *secondaries])
    assert "parallelAttachments" not in conf
    result = cnode.cni("ADD", conf, "cstdseq", pod.path).ok()
    adds = [c for c in _calls(record) if c["command"] == "ADD"]
    assert [c["stdin"]["name"] for c in adds] == ["sec1", "sec2", "sec3"]
    assert not _overlap(adds), "secondary ADDs overlapped by default"
    assert {"eth0"} <= set(pod.links())
    assert "eth0" in [i["name"] for i in result["interfaces"] if i.get("sandbox")]
    cnode.cni("DEL", conf, "cstdseq", pod.path).ok()
    dels = [c for c in _calls(record) if c["command"] == "DEL"]
    assert [c["stdin"]["name"] for c in dels] == ["sec3", "sec2", "sec1"]
    assert not _overlap(dels), "secondary DELs overlapped by default"
    cnode.assert_clean(pod)


def test_npwg_7_2_a_default_never_starts_a_network_after_a_failing_one(cnode, pod, workdir):
    """NPWG-7.2-a: net-a, a failing network, net-c: ADD fails, net-c is never
    invoked (not even rolled back), net-a is undone, the pod is left clean."""
    record = os.path.join(workdir, "calls")
    secondaries = [_net("net-a", record), _net("broken", record, failOn=["ADD"]),
                   _net("net-c", record)]
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), *secondaries])
    run = cnode.cni("ADD", conf, "cstdfail", pod.path)
    assert run.returncode != 0 and "'broken'" in run.json["msg"]
    seen = [(c["command"], c["stdin"]["name"]) for c in _calls(record)]
    assert ("ADD", "net-c") not in seen and ("DEL", "net-c") not in seen, seen
    assert seen == [("ADD", "net-a"), ("ADD", "broken"), ("DEL", "broken"), ("DEL", "net-a")]
    cnode.assert_clean(pod)


def test_npwg_7_2_a_opt_in_parallel_starts_later_networks_then_rolls_them_back(
        cnode, pod, workdir):
    """NPWG-7.2-a, opt-in: with `parallelAttachments: 3` the networks after a failing
    one are started at the same time and then rolled back, as docs/conformance-choices.md
    says; nothing is left behind."""
    record = os.path.join(workdir, "calls")
    secondaries = [_net("net-a", record), _net("broken", record, failOn=["ADD"]),
                   _net("net-c", record)]
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), *secondaries],
                      parallelAttachments=3)
    run = cnode.cni("ADD", conf, "cstdpar", pod.path)
    assert run.returncode != 0 and "'broken'" in run.json["msg"]
    calls = _calls(record)
    adds = [c for c in calls if c["command"] == "ADD"]
    assert {c["stdin"]["name"] for c in adds} == {"net-a", "broken", "net-c"}
    assert _overlap(adds), "parallelAttachments: 3 ran the secondaries one at a time"
    assert {c["stdin"]["name"] for c in calls if c["command"] == "DEL"} == \
        {"net-a", "broken", "net-c"}
    cnode.assert_clean(pod)
