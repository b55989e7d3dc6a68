"""The DEL policy of docs/reliability.md with the reference plugins: no record DEL can
never remove, no silent leak, no teardown that can never finish."""

from __future__ import annotations

import json
import os

import pytest

from multinet.testing import configs


def log_text(cnode) -> str:
    with open(cnode.log_file) as handle:
        return handle.read()


def assert_nothing_left(cnode, pod) -> None:
    cnode.assert_clean(pod)
    assert cnode.lock_files() == [], "the lock file went with the record"


def stored(cnode, container_id: str) -> dict:
    with open(os.path.join(cnode.cni_dir, container_id)) as handle:
        return json.load(handle)


def test_macvlan_without_master_fails_add_and_del_and_one_del_ends_it(cnode, pod):
    """(a) Debian's macvlan 1.1.1 with a missing master fails ADD and DEL alike; the
    runtime's one DEL after the failed ADD (containerd sends no other) gives it up."""
    delegates = [configs.bridge_net("cluster", cnode.ipam_dir),
                 configs.macvlan_net("mvgone", "no-such-master", cnode.ipam_dir)]
    conf = cnode.conf(delegates)
    add = cnode.cni("ADD", conf, "cmaster", pod.path)
    assert add.returncode != 0 and "Link not found" in add.json["msg"]
    left = stored(cnode, "cmaster")["attachments"]
    assert [(a["name"], a["delFailures"]) for a in left] == [("mvgone", 1)], \
        "the failed rollback is counted in the record"

    delete = cnode.cni("DEL", conf, "cmaster", pod.path)
    assert delete.returncode == 0, delete.stdout
    assert_nothing_left(cnode, pod)
    text = log_text(cnode)
    assert "DEL gave up on network 'mvgone' (net1) of container cmaster" in text
    assert "after 2 failed attempt(s)" in text and "its ADD never completed" in text


def test_delegate_type_not_installed_is_given_up_after_the_runtime_del(cnode, pod):
    """(b) A plugin that is not installed can never run its DEL."""
    delegates = [configs.bridge_net("cluster", cnode.ipam_dir),
                 {"cniVersion": "1.0.0", "name": "absent", "type": "not-installed"}]
    conf = cnode.conf(delegates)
    add = cnode.cni("ADD", conf, "cabsent", pod.path)
    assert add.returncode != 0 and add.json["code"] == 7
    assert cnode.records() == ["cabsent"]
    assert cnode.cni("DEL", conf, "cabsent", pod.path).returncode == 0
    assert_nothing_left(cnode, pod)
    assert "DEL gave up on network 'absent' (net1)" in log_text(cnode)


def test_del_killed_mid_add_keeps_the_record_until_a_second_del(cnode, pod, workdir):
    """An attachment that never completed, with no rollback (the process was killed):
    the first failed DEL keeps it and says so; the second gives it up."""
    blocker = os.path.join(workdir, "block")
    open(blocker, "w").close()
    stuck = {"cniVersion": "1.0.0", "name": "stuck", "type": "recorder",
             "failOn": ["DEL"], "failIfExists": blocker, "failCode": 11}
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), stuck])
    cnode.cni("ADD", conf, "ckilled", pod.path).ok()
    record = stored(cnode, "ckilled")
    record["state"] = "adding"
    record["attachments"][1]["result"] = None  # as an ADD killed in that delegate leaves it
    with open(os.path.join(cnode.cni_dir, "ckilled"), "w") as handle:
        json.dump(record, handle)

    first = cnode.cni("DEL", conf, "ckilled", pod.path)
    assert first.returncode != 0 and first.json["code"] == 11
    assert "'stuck' (net1, failed 1x)" in first.json["msg"]
    assert [a["delFailures"] for a in stored(cnode, "ckilled")["attachments"]] == [1]
    assert cnode.lock_files() == ["ckilled.lock"]
    assert cnode.cni("DEL", conf, "ckilled", pod.path).returncode == 0
    assert_nothing_left(cnode, pod)


def test_completed_attachment_is_retried_and_counted_never_given_up(cnode, pod, workdir):
    """What completed ADD may hold addresses: the runtime's DEL keeps answering the
    error, with the count, until the delegate's DEL works."""
    blocker = os.path.join(workdir, "block")
    open(blocker, "w").close()
    flaky = {"cniVersion": "1.0.0", "name": "flaky", "type": "recorder",
             "failOn": ["DEL"], "failIfExists": blocker, "failCode": 11}
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), flaky])
    cnode.cni("ADD", conf, "cdone", pod.path).ok()
    for attempt in range(1, 5):
        run = cnode.cni("DEL", conf, "cdone", pod.path)
        assert run.returncode != 0 and f"failed {attempt}x" in run.json["msg"]
        assert stored(cnode, "cdone")["attachments"][0]["delFailures"] == attempt
    assert "gave up" not in log_text(cnode)
    os.unlink(blocker)
    assert cnode.cni("DEL", conf, "cdone", pod.path).returncode == 0
    assert_nothing_left(cnode, pod)


def test_ipam_section_on_a_plugin_that_ignores_it_with_the_netns_gone(cnode, make_pod):
    """(c) loopback ignores `ipam`; its ADD result has no address, so with the sandbox
    gone no IPAM plugin is sent a DEL it cannot parse (host-local: no ranges)."""
    pod = make_pod()
    lo = {"cniVersion": "1.0.0", "name": "lonet", "type": "loopback",
          "ipam": {"type": "host-local", "dataDir": cnode.ipam_dir}}
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), lo])
    cnode.cni("ADD", conf, "cignored", pod.path).ok()
    assert len(cnode.leased_ips()) == 2
    netns = pod.path
    pod.delete()
    delete = cnode.cni("DEL", conf, "cignored", netns)
    assert delete.returncode == 0, delete.stdout
    assert cnode.leased_ips() == [], "the cluster network's lease was still released"
    assert cnode.host_veths() == [] and cnode.records() == [] and cnode.lock_files() == []


def test_macvlan_del_failure_with_the_netns_gone_still_releases_its_lease(cnode, make_pod):
    """With the sandbox gone, a plugin whose own DEL fails still gets its lease freed:
    the IPAM plugin's DEL runs anyway (the lease is what outlives the sandbox)."""
    pod = make_pod()
    master = "mv-late"
    cnode.ns.veth(master, "mv-late-peer")
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir),
                       configs.macvlan_net("mvlate", master, cnode.ipam_dir)])
    cnode.cni("ADD", conf, "clate", pod.path).ok()
    assert len(cnode.leased_ips()) == 4
    cnode.ns.ip("link", "del", master)  # its DEL now fails: Link not found
    netns = pod.path
    pod.delete()
    run = cnode.cni("DEL", conf, "clate", netns)
    assert run.returncode != 0 and "Link not found" in run.json["msg"]
    assert cnode.leased_ips() == [], "every lease was released"
    assert [a["name"] for a in stored(cnode, "clate")["attachments"]] == ["mvlate"]


@pytest.mark.parametrize("damage", [
    pytest.param(lambda raw: raw[: len(raw) // 2], id="truncated"),
    pytest.param(lambda raw: b"", id="empty"),
    pytest.param(lambda raw: b"\x00\xff garbage", id="garbage"),
    pytest.param(lambda raw: b'["a", "list"]', id="a-list"),
    pytest.param(lambda raw: raw.replace(b'"attachments":[', b'"attachments":[7,'),
                 id="wrong-shape"),
    pytest.param(lambda raw: raw.replace(b'"isDefault":true', b'"isDefault":NaN', 1),
                 id="nan"),
])
def test_damaged_record_uses_its_previous_version(cnode, pod, damage):
    """(d) DEL works from the last good version when the record is damaged."""
    conf = cnode.conf(cnode.three_networks()[:2])
    cnode.cni("ADD", conf, "cdamaged", pod.path).ok()
    assert len(cnode.leased_ips()) == 4 and "net1" in pod.links()
    path = os.path.join(cnode.cni_dir, "cdamaged")
    with open(path, "rb") as handle:
        raw = handle.read()
    with open(path, "wb") as handle:
        handle.write(damage(raw))

    delete = cnode.cni("DEL", conf, "cdamaged", pod.path)
    assert delete.returncode == 0, delete.stdout
    assert_nothing_left(cnode, pod)
    assert not os.path.exists(os.path.join(cnode.cni_dir, ".prev", "cdamaged"))
    assert "is unreadable" in log_text(cnode) and "using its previous version" in log_text(cnode)


def test_damaged_record_without_a_previous_version_is_quarantined_and_said(cnode, pod):
    """(d) Nothing to fall back on: moved aside, reported, answered as an error; the
    retried DEL then finds nothing (and says nothing false)."""
    os.makedirs(cnode.cni_dir, mode=0o700, exist_ok=True)
    with open(os.path.join(cnode.cni_dir, "cnoprev"), "w") as handle:
        handle.write('{"kind": "multinetRecordV1", "contai')
    conf = cnode.conf(cnode.three_networks()[:1])
    first = cnode.cni("DEL", conf, "cnoprev", pod.path)
    assert first.returncode != 0 and first.json["code"] == 6
    assert "moved aside to" in first.json["msg"]
    quarantine = os.path.join(cnode.cni_dir, ".quarantine")
    [kept] = os.listdir(quarantine)
    assert kept.startswith("cnoprev.")
    with open(os.path.join(quarantine, kept)) as handle:
        assert handle.read().startswith('{"kind"'), "kept for a person to see"
    assert cnode.records() == [] and cnode.lock_files() == []
    assert cnode.cni("DEL", conf, "cnoprev", pod.path).returncode == 0


def test_gc_quarantines_a_damaged_record_of_a_forgotten_container(cnode, pod):
    """(d) GC: a damaged record of a container the runtime no longer lists is set
    aside, and the rest of GC goes on (IPAM frees that container's leases)."""
    conf = cnode.conf(cnode.three_networks()[:1])
    cnode.cni("ADD", conf, "clive", pod.path).ok()
    with open(os.path.join(cnode.cni_dir, "cstale"), "w") as handle:
        handle.write("garbage")
    valid = [{"containerID": "clive", "ifname": "eth0"}]
    gc_conf = {**conf, "cni.dev/valid-attachments": valid}
    first = cnode.cni("GC", gc_conf)
    assert first.returncode != 0 and first.json["code"] == 6 and "cstale" in first.json["msg"]
    assert cnode.records() == ["clive"]
    assert os.listdir(os.path.join(cnode.cni_dir, ".quarantine"))[0].startswith("cstale.")
    assert cnode.cni("GC", gc_conf).returncode == 0, "the next GC is clean"
    assert len(cnode.leased_ips()) == 2, "the live pod kept its addresses"
    cnode.cni("DEL", conf, "clive", pod.path).ok()
    assert_nothing_left(cnode, pod)


def test_gc_with_a_host_local_data_dir_inside_cni_dir(cnode, pod):
    """host-local keeps a directory per network in its dataDir: inside cniDir, GC
    must skip it, not answer 101 for the whole node."""
    inside = os.path.join(cnode.cni_dir, "leases")
    conf = cnode.conf([configs.bridge_net("cluster", cnode.cni_dir),
                       configs.macvlan_net("macnet", cnode.macvlan_master, inside)])
    cnode.cni("ADD", conf, "cdatadir", pod.path).ok()
    assert os.path.isdir(os.path.join(cnode.cni_dir, "cluster"))
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": "cdatadir",
                                                      "ifname": "eth0"}]}
    run = cnode.cni("GC", gc_conf)
    assert run.returncode == 0, run.stdout
    delete = cnode.cni("DEL", conf, "cdatadir", pod.path)
    assert delete.returncode == 0, delete.stdout
    assert set(pod.links()) == {"lo"} and cnode.host_veths() == []
    own = (".locks", ".prev", ".plugin-versions")  # multinet's bookkeeping, kept
    assert not [n for n in os.listdir(cnode.cni_dir)
                if n not in (*own, "cluster", "leases")], "only IPAM's own"
    assert os.listdir(os.path.join(cnode.cni_dir, ".prev")) == []
    leases = [n for d in ("cluster", "leases/macnet")
              for n in os.listdir(os.path.join(cnode.cni_dir, d))
              if not n.startswith(("lock", "last_reserved_ip"))]
    assert leases == [], "every address was released"
    assert cnode.lock_files() == []


def test_del_with_a_nan_timeout_in_the_config_still_deletes(cnode, pod):
    """(e) A DEL runs whatever timeout the config says: NaN cannot make it fail."""
    conf = cnode.conf(cnode.three_networks()[:2])
    cnode.cni("ADD", conf, "cnan", pod.path).ok()
    raw = json.dumps({**conf, "delegateTimeoutSeconds": 12345.5}).replace("12345.5", "NaN")
    assert '"delegateTimeoutSeconds": NaN' in raw
    delete = cnode.cni("DEL", raw.encode(), "cnan", pod.path)
    # NaN is not JSON (RFC 8259): the config is refused up front, naming the field,
    # and the record stays for the DEL of a config that can be read.
    assert delete.returncode != 0
    assert delete.json["code"] == 6 and "delegateTimeoutSeconds" in delete.json["msg"]
    assert cnode.records() == ["cnan"]
    delete = cnode.cni("DEL", conf, "cnan", pod.path)
    assert delete.returncode == 0, delete.stdout
    assert_nothing_left(cnode, pod)


def test_an_intent_that_cannot_be_written_leaves_nothing(cnode, pod):
    """A capability value JSON cannot carry (NaN) is refused before any delegate
    runs (stdin is not JSON: code 6 naming the field), with no record and no lock
    file left. (A record holding NaN is never written either:
    tests/unit/test_records.py.)"""
    conf = cnode.conf(cnode.three_networks()[:1])
    raw = json.dumps({**conf, "runtimeConfig": {"bandwidth": {"ingressRate": 12345.5}}})
    run = cnode.cni("ADD", raw.replace("12345.5", "NaN").encode(), "cintent", pod.path)
    assert run.returncode != 0 and run.json["code"] == 6, run.stdout
    assert "runtimeConfig.bandwidth.ingressRate" in run.json["msg"]
    assert_nothing_left(cnode, pod)


def test_a_del_that_hangs_is_stopped_answered_and_counted(cnode, pod):
    hang = {"cniVersion": "1.0.0", "name": "hang", "type": "recorder", "sleep": 30,
            "sleepOn": ["DEL"]}
    # Room for the bridge plugin on a loaded machine; far short of the 30 s hang.
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), hang],
                      delegateTimeoutSeconds=6)
    cnode.cni("ADD", conf, "chang", pod.path).ok()
    run = cnode.cni("DEL", conf, "chang", pod.path, timeout=25)
    assert run.returncode != 0 and run.json["code"] == 11, run.stdout
    assert "'hang' (net1, failed 1x)" in run.json["msg"]
    assert cnode.leased_ips() == [] and "eth0" not in pod.links()
    assert [a["name"] for a in stored(cnode, "chang")["attachments"]] == ["hang"]


def test_add_and_del_with_a_nan_timeout_leave_nothing(cnode, pod):
    """(e) ADD with NaN in delegateTimeoutSeconds fails (refused up front, or once its
    first delegate ran), and the runtime's one DEL with the same config leaves
    nothing behind."""
    conf = cnode.conf(cnode.three_networks()[:2])
    raw = json.dumps({**conf, "delegateTimeoutSeconds": 12345.5}).replace("12345.5", "NaN")
    add = cnode.cni("ADD", raw.encode(), "cnanadd", pod.path)
    assert add.returncode != 0
    cnode.cni("DEL", raw.encode(), "cnanadd", pod.path)
    assert_nothing_left(cnode, pod)
