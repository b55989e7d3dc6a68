"""The engine's contract with runtimes, pinned so that a wrong change fails.

Each test names one promise (rollback order, durable records, error codes, the
interface-name limit, the merged result) and checks its exact value, not just
"it did not crash". Delegates are replaced by recording fakes here; the
end-to-end twins in tests/e2e/test_core_contract.py use the real plugins.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import pytest

from multinet import fileio
from multinet.attach import add as add_mod
from multinet.attach import check as check_mod
from multinet.attach import delegates, merge, routes
from multinet.attach.conf import load_conf
from multinet.attach.delete import run_del
from multinet.attach.plan import Attachment
from multinet.attach.record import ADDED, ADDING, AttachmentState, Record, RecordStore
from multinet.cni import exec as cniexec
from multinet.cni.errors import CNIError
from multinet.cni.netconf import load_network
from multinet.cni.request import Request, ifname_problem, request_from_env
from multinet.k8s.selection import (
    parse_default_network_annotation,
    parse_networks_annotation,
)

# --- fakes --------------------------------------------------------------------------


def network(name: str):
    return load_network({"cniVersion": "1.0.0", "name": name, "type": "bridge"}, name)


def plan_of(*names: str) -> list[Attachment]:
    return [Attachment(n, network(n), "eth0" if i == 0 else f"net{i}", i == 0)
            for i, n in enumerate(names)]


def result_for(name: str, index: int) -> dict:
    return {"cniVersion": "1.0.0",
            "interfaces": [{"name": f"if-{name}", "sandbox": "/ns"}],
            "ips": [{"address": f"198.18.{index}.2/24", "interface": 0}]}


class FakeDelegates:
    """Stands in for delegates.add/delete/check: records calls, fails on request."""

    def __init__(self, monkeypatch, fail_add=(), fail_del=()):
        self.calls: list[tuple[str, str]] = []
        self.fail_add, self.fail_del = set(fail_add), set(fail_del)
        self.order = {}
        monkeypatch.setattr(delegates, "add", self.add)
        monkeypatch.setattr(delegates, "delete", self.delete)
        monkeypatch.setattr(delegates, "check", self.check)
        # No delegate really ran, so the pod's table (a plain file here) has nothing
        # in it to check; the routes step has its own tests against a real netns.
        monkeypatch.setattr(routes, "enforce_default_routes", lambda *args, **kw: [])

    def add(self, ctx, attachment):
        self.calls.append(("ADD", attachment.name))
        if attachment.name in self.fail_add:
            raise CNIError(123, f"{attachment.name} refused ADD")
        index = self.order.setdefault(attachment.name, len(self.order))
        return result_for(attachment.name, index)

    def delete(self, ctx, attachment, result):
        self.calls.append(("DEL", attachment.name))
        if attachment.name in self.fail_del:
            raise CNIError(11, f"{attachment.name} refused DEL")

    def check(self, ctx, attachment, result):
        self.calls.append(("CHECK", attachment.name))


@pytest.fixture
def engine(tmp_path):
    netns = tmp_path / "netns"
    netns.write_text("")
    cni_dir = str(tmp_path / "cni")

    def make(names, **extra):
        raw = {"cniVersion": "1.1.0", "name": "mn", "type": "multinet", "cniDir": cni_dir,
               "delegates": [{"cniVersion": "1.0.0", "name": n, "type": "bridge"}
                             for n in names], "parallelAttachments": 1, **extra}
        conf = load_conf(raw)
        request = Request("ADD", "c1", str(netns), "eth0", "", ("/usr/lib/cni",), raw)
        return conf, request, RecordStore(cni_dir)

    return make


# --- rollback -----------------------------------------------------------------------


def test_rollback_deletes_the_failed_one_and_those_before_it_last_first(engine, monkeypatch):
    """Checklist: CNI-DLG-4."""
    names = ["cluster", "a", "b", "broken", "never"]
    conf, request, store = engine(names)
    fake = FakeDelegates(monkeypatch, fail_add={"broken"})
    with pytest.raises(CNIError) as err:
        add_mod.run_add(request, conf, plan_of(*names))
    assert err.value.code == 123 and err.value.msg == "broken refused ADD"
    assert fake.calls == [("ADD", "cluster"), ("ADD", "a"), ("ADD", "b"), ("ADD", "broken"),
                          ("DEL", "broken"), ("DEL", "b"), ("DEL", "a"), ("DEL", "cluster")]
    assert store.read("c1") is None, "a complete rollback leaves no record"


def test_rollback_keeps_only_what_it_could_not_undo(engine, monkeypatch):
    names = ["cluster", "a", "b", "broken"]
    conf, request, store = engine(names)
    fake = FakeDelegates(monkeypatch, fail_add={"broken"}, fail_del={"a", "cluster"})
    with pytest.raises(CNIError) as err:
        add_mod.run_add(request, conf, plan_of(*names))
    assert err.value.code == 123, "the ADD failure is reported, not the rollback's"
    assert "rollback: a refused DEL" in err.value.details
    assert "rollback: cluster refused DEL" in err.value.details
    left = store.read("c1")
    assert [s.attachment.name for s in left.attachments] == ["cluster", "a"], \
        "the plan's order, and nothing that was undone"
    assert left.state == ADDING
    fake.fail_del.clear()
    fake.calls.clear()
    run_del(request, conf)
    assert fake.calls == [("DEL", "a"), ("DEL", "cluster")]
    assert store.read("c1") is None


def test_a_failing_cluster_network_rolls_back_only_itself(engine, monkeypatch):
    names = ["cluster", "a"]
    conf, request, store = engine(names)
    fake = FakeDelegates(monkeypatch, fail_add={"cluster"})
    with pytest.raises(CNIError):
        add_mod.run_add(request, conf, plan_of(*names))
    assert fake.calls == [("ADD", "cluster"), ("DEL", "cluster")]
    assert store.read("c1") is None


def test_add_success_leaves_an_added_record_with_each_result(engine, monkeypatch):
    """Checklist: CNI-ADD-2."""
    names = ["cluster", "a"]
    conf, request, store = engine(names, result="all")
    FakeDelegates(monkeypatch)
    outcome = add_mod.run_add(request, conf, plan_of(*names))
    record = store.read("c1")
    assert record.state == ADDED
    assert [s.result for s in record.attachments] == [result_for("cluster", 0),
                                                      result_for("a", 1)]
    assert [i["name"] for i in outcome.output["interfaces"]] == ["if-cluster", "if-a"]
    assert [ip["interface"] for ip in outcome.output["ips"]] == [0, 1]


def test_second_add_of_the_same_container_is_105_and_runs_nothing(engine, monkeypatch):
    conf, request, store = engine(["cluster"])
    fake = FakeDelegates(monkeypatch)
    add_mod.run_add(request, conf, plan_of("cluster"))
    fake.calls.clear()
    with pytest.raises(CNIError) as err:
        add_mod.run_add(request, conf, plan_of("cluster"))
    assert err.value.code == 105
    assert "c1" in err.value.msg and "1 attachment" in err.value.msg
    assert fake.calls == []
    assert store.read("c1").state == ADDED, "the first ADD's record is kept"


def test_primary_result_mode_answers_with_the_cluster_network_alone(engine, monkeypatch):
    names = ["cluster", "a"]
    conf, request, _ = engine(names, result="primary")
    FakeDelegates(monkeypatch)
    outcome = add_mod.run_add(request, conf, plan_of(*names))
    assert [i["name"] for i in outcome.output["interfaces"]] == ["if-cluster"]
    assert [ip["address"] for ip in outcome.output["ips"]] == ["198.18.0.2/24"]
    assert len(outcome.merged["interfaces"]) == 2, "the merged result still has both"


# --- DEL ----------------------------------------------------------------------------


def test_del_keeps_exactly_the_attachments_whose_del_failed(engine, monkeypatch):
    names = ["cluster", "a", "b", "c"]
    conf, request, store = engine(names)
    fake = FakeDelegates(monkeypatch)
    add_mod.run_add(request, conf, plan_of(*names))
    fake.calls.clear()
    fake.fail_del = {"a", "c"}
    with pytest.raises(CNIError) as err:
        run_del(request, conf)
    assert fake.calls == [("DEL", "c"), ("DEL", "b"), ("DEL", "a"), ("DEL", "cluster")], \
        "secondaries last first, the cluster network last, past failures"
    assert err.value.code == 11
    assert err.value.msg == ("DEL incomplete: c refused DEL; still to delete: "
                             "'a' (net1, failed 1x), 'c' (net3, failed 1x)")
    left = store.read("c1")
    assert [s.attachment.name for s in left.attachments] == ["a", "c"]
    assert [s.result for s in left.attachments] == [result_for("a", 1), result_for("c", 3)]
    fake.fail_del = set()
    fake.calls.clear()
    run_del(request, conf)
    assert fake.calls == [("DEL", "c"), ("DEL", "a")]
    assert store.read("c1") is None


def test_del_of_an_unexpected_exception_keeps_the_attachment(engine, monkeypatch):
    conf, request, store = engine(["cluster", "a"])
    FakeDelegates(monkeypatch)
    add_mod.run_add(request, conf, plan_of("cluster", "a"))

    def explode(ctx, attachment, result):
        if attachment.name == "a":
            raise RuntimeError("boom")

    monkeypatch.setattr(delegates, "delete", explode)
    with pytest.raises(CNIError) as err:
        run_del(request, conf)
    assert err.value.code == 101 and "'a'" in err.value.msg and "boom" in err.value.msg
    assert [s.attachment.name for s in store.read("c1").attachments] == ["a"]


# --- CHECK --------------------------------------------------------------------------


def test_check_of_an_unfinished_add_fails_and_runs_no_delegate(engine, monkeypatch):
    """Checklist: CNI-CHECK-2."""
    conf, request, store = engine(["cluster"])
    fake = FakeDelegates(monkeypatch)
    store.write(Record("c1", request.netns, "eth0", "", ADDING,
                       [AttachmentState(plan_of("cluster")[0], None)]))
    with pytest.raises(CNIError) as err:
        check_mod.run_check(request, conf)
    assert err.value.code == 3
    assert "c1" in err.value.msg and "no completed ADD" in err.value.msg
    assert fake.calls == []


def test_check_of_a_completed_add_runs_every_delegate(engine, monkeypatch):
    conf, request, store = engine(["cluster", "a"])
    fake = FakeDelegates(monkeypatch)
    add_mod.run_add(request, conf, plan_of("cluster", "a"))
    fake.calls.clear()
    check_mod.run_check(request, conf)
    assert fake.calls == [("CHECK", "cluster"), ("CHECK", "a")]


# --- durable records ----------------------------------------------------------------


def test_atomic_write_syncs_the_file_then_renames_then_syncs_the_directory(tmp_path,
                                                                          monkeypatch):
    target = tmp_path / "rec"
    target.write_bytes(b"old")
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        if kind == "file":
            with open(f"/proc/self/fd/{fd}", "rb") as handle:
                events.append(("fsync-file", handle.read()))
        else:
            events.append(("fsync-dir", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.dirname(src), os.path.basename(src), dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    fileio.atomic_write(str(target), b"new")
    assert [e[0] for e in events] == ["fsync-file", "replace", "fsync-dir"]
    assert events[0][1] == b"new", "the data is on disk before the rename"
    _, tmp_dir, tmp_name, dst = events[1]
    assert tmp_dir == str(tmp_path), "the temp file is beside the record (same filesystem)"
    assert tmp_name.startswith(".rec.") and dst == str(target)
    assert events[2][1] == str(tmp_path)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["rec"]


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_a_failed_write_keeps_the_old_record_and_leaves_no_temp_file(tmp_path, monkeypatch,
                                                                     failing):
    store = RecordStore(str(tmp_path / "cni"))
    old = Record("c1", "/ns", "eth0", "", ADDED, [AttachmentState(plan_of("cluster")[0], {})])
    store.write(old)

    def fail(*_args, **_kw):
        raise OSError(28, "No space left on device")

    if failing == "write":
        real_fdopen = os.fdopen

        class Broken:
            def __init__(self, *args, **kw):
                self.handle = real_fdopen(*args, **kw)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

            def write(self, data):
                self.handle.write(data[: len(data) // 2])
                fail()

        monkeypatch.setattr(os, "fdopen", Broken)
    else:
        monkeypatch.setattr(os, failing, fail)
    new = Record("c1", "/ns", "eth0", "", ADDING, [])
    with pytest.raises(CNIError) as err:
        store.write(new)
    assert err.value.code == 5 and "c1" in err.value.msg  # an I/O error naming the record
    monkeypatch.undo()
    assert store.read("c1").to_dict() == old.to_dict()
    names = os.listdir(store.cni_dir)
    assert "c1" in names and not [n for n in names if n.startswith(".c1.")], \
        "no temp file left behind"


def test_removing_a_record_syncs_its_directory(tmp_path, monkeypatch):
    store = RecordStore(str(tmp_path))
    store.write(Record("c1", "/ns", "eth0", ""))
    synced = []
    monkeypatch.setattr(fileio, "fsync_dir", synced.append)
    monkeypatch.setattr("multinet.attach.record.fsync_dir", synced.append)
    store.remove("c1")
    assert synced == [str(tmp_path)]
    assert not os.path.exists(store.path("c1"))


def test_private_dir_is_made_0700_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        fileio.ensure_private_dir(str(tmp_path / "a" / "b"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b").st_mode) == 0o700


# --- error codes runtimes rely on ---------------------------------------------------


def test_a_delegate_that_overruns_is_killed_and_answers_11(tmp_path):
    marker = tmp_path / "child-alive"
    plugin = tmp_path / "slow"
    # The plugin's own child must die too: the whole process group is killed.
    plugin.write_text(f"#!/bin/sh\n(sleep 3; touch {marker}) &\nsleep 30\n")
    plugin.chmod(0o755)
    call = cniexec.PluginCall(str(plugin), {"CNI_COMMAND": "ADD"}, b"{}", 0.3)
    with pytest.raises(CNIError) as err:
        cniexec.run(call)
    assert err.value.code == 11
    assert err.value.msg == f"{plugin} did not finish within 0.3s"


def test_a_delegate_that_finishes_in_time_is_not_a_timeout(tmp_path):
    plugin = tmp_path / "quick"
    plugin.write_text("#!/bin/sh\necho '{\"cniVersion\": \"1.0.0\"}'\nexit 3\n")
    plugin.chmod(0o755)
    out = cniexec.run(cniexec.PluginCall(str(plugin), {}, b"{}", 10))
    assert out.returncode == 3 and json.loads(out.stdout) == {"cniVersion": "1.0.0"}


def test_a_missing_delegate_binary_is_100_naming_it(tmp_path):
    with pytest.raises(CNIError) as err:
        cniexec.run(cniexec.PluginCall(str(tmp_path / "nope"), {}, b"{}", 5))
    assert err.value.code == 100 and "nope" in err.value.msg


def test_a_netlink_failure_while_fixing_routes_is_102(tmp_path):
    not_a_netns = tmp_path / "file"
    not_a_netns.write_text("")
    with pytest.raises(CNIError) as err:
        routes.enforce_default_routes(str(not_a_netns), {4: "eth0", 6: None})
    assert err.value.code == 102
    assert "cannot set default routes in" in err.value.msg


# --- the 15-byte interface-name limit (IFNAMSIZ - 1) --------------------------------

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/p",
       "CNI_PATH": "/usr/lib/cni"}
CONF = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "multinet"}).encode()


@pytest.mark.parametrize("name", ["x" * 15, "ü" * 7 + "x"])
def test_cni_ifname_of_15_bytes_is_accepted(name):
    assert ifname_problem(name) is None
    assert request_from_env({**ENV, "CNI_IFNAME": name}, CONF).ifname == name


@pytest.mark.parametrize("name", ["x" * 16, "ü" * 8])
def test_cni_ifname_of_16_bytes_is_code_4_naming_the_variable(name):
    """Checklist: CNI-EXEC-4."""
    with pytest.raises(CNIError) as err:
        request_from_env({**ENV, "CNI_IFNAME": name}, CONF)
    assert err.value.code == 4
    assert err.value.msg == f"CNI_IFNAME {name!r} is longer than 15 bytes"


@pytest.mark.parametrize("name,problem", [
    ("", None),  # missing entirely: reported as a missing variable
    (".", "may not be '.' or '..'"), ("..", "may not be '.' or '..'"),
    ("a/b", "may not contain '/', ':' or whitespace"),
    ("a:b", "may not contain '/', ':' or whitespace"),
    ("a b", "may not contain '/', ':' or whitespace")])
def test_cni_ifname_other_rules(name, problem):
    with pytest.raises(CNIError) as err:
        request_from_env({**ENV, "CNI_IFNAME": name}, CONF)
    assert err.value.code == 4
    if problem:
        assert err.value.msg == f"CNI_IFNAME {name!r} {problem}"
    else:
        assert "CNI_IFNAME" in err.value.msg


@pytest.mark.parametrize("value", [
    "ns/net@" + "x" * 15,
    json.dumps([{"name": "net", "namespace": "ns", "interface": "x" * 15}]),
    json.dumps([{"name": "net", "namespace": "ns", "interfaceRequest": "x" * 15}]),
])
def test_annotation_interface_of_15_bytes_is_accepted(value):
    [selection] = parse_networks_annotation(value, "default")
    assert selection.interface == "x" * 15


@pytest.mark.parametrize("value,field", [
    ("ns/net@" + "x" * 16, "interface"),
    (json.dumps([{"name": "net", "namespace": "ns", "interface": "x" * 16}]), "interface"),
    (json.dumps([{"name": "net", "namespace": "ns", "interfaceRequest": "x" * 16}]),
     "interfaceRequest"),
])
def test_annotation_interface_of_16_bytes_is_code_7_naming_the_field(value, field):
    """Checklist: NPWG-4.1.2.1.5-a."""
    for parse in (parse_networks_annotation, parse_default_network_annotation):
        with pytest.raises(CNIError) as err:
            parse(value, "default")
        assert err.value.code == 7
        assert f'{field} "{"x" * 16}" is not a valid interface name' in err.value.msg


# --- the merged result --------------------------------------------------------------

DNS_A = {"nameservers": ["198.18.0.53"], "domain": "a.example", "search": ["a.example"]}
DNS_B = {"nameservers": ["198.18.1.53"], "options": ["ndots:2"]}


def two_results() -> list[dict]:
    return [
        {"interfaces": [{"name": "veth0"}, {"name": "eth0", "sandbox": "/ns"}],
         "ips": [{"address": "198.18.0.2/24", "interface": 1, "gateway": "198.18.0.1"},
                 {"address": "fd00:18::2/64", "interface": 1}],
         "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}, {"dst": "::/0"},
                    {"dst": "198.18.9.0/24"}],
         "dns": DNS_A},
        {"interfaces": [{"name": "net1", "sandbox": "/ns"}],
         "ips": [{"address": "198.18.1.2/24", "interface": 0},
                 {"address": "198.18.1.3/24"}],
         "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.1.1"}, {"dst": "::/0"},
                    {"dst": "198.19.0.0/16"}],
         "dns": DNS_B},
    ]


def test_merged_result_exact():
    results = two_results()
    owners = merge.default_route_owners([True, False], [(), ()])
    assert owners == {4: 0, 6: 0}
    merged = merge.merge(results, owners, dns_from=0)
    assert merged == {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "veth0"}, {"name": "eth0", "sandbox": "/ns"},
                       {"name": "net1", "sandbox": "/ns"}],
        "ips": [{"address": "198.18.0.2/24", "interface": 1, "gateway": "198.18.0.1"},
                {"address": "fd00:18::2/64", "interface": 1},
                {"address": "198.18.1.2/24", "interface": 2},
                {"address": "198.18.1.3/24"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}, {"dst": "::/0"},
                   {"dst": "198.18.9.0/24"}, {"dst": "198.19.0.0/16"}],
        "dns": DNS_A,
    }
    assert results == two_results(), "the inputs are not changed"


def test_merged_dns_is_the_default_networks_alone():
    results = two_results()
    owners = {4: 1, 6: 1}
    assert merge.merge(results, owners, dns_from=1)["dns"] == DNS_B
    assert merge.merge(results, owners, dns_from=0)["dns"] == DNS_A
    results[0].pop("dns")
    assert "dns" not in merge.merge(results, owners, dns_from=0), \
        "no DNS borrowed from a network that is not the default"
    assert "dns" not in merge.merge([], owners)


def test_one_default_route_per_family_the_owners():
    results = two_results()
    owners = {4: 1, 6: 0}  # the secondary asked for the IPv4 default route
    merged = merge.merge(results, owners)
    defaults = [r for r in merged["routes"] if merge.is_default_route(r)]
    assert defaults == [{"dst": "::/0"}, {"dst": "0.0.0.0/0", "gw": "198.18.1.1"}]
    assert merge.foreign_default_routes(results, owners) is True
    own_only = [{"routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]},
                {"routes": [{"dst": "198.19.0.0/16"}]}]
    assert merge.foreign_default_routes(own_only, {4: 0, 6: 0}) is False


def test_a_requested_gateway_takes_the_family_and_replaces_the_plugins_route():
    requested = [(), ("198.18.1.254",)]
    owners = merge.default_route_owners([True, False], requested)
    gateways = merge.requested_gateways(requested)
    assert owners == {4: 1, 6: 0} and gateways == {4: (1, "198.18.1.254")}
    results = two_results()
    assert merge.filter_routes(results[1], 1, owners, gateways) == [
        {"dst": "198.19.0.0/16"}, {"dst": "0.0.0.0/0", "gw": "198.18.1.254"}]
    assert merge.filter_routes(results[0], 0, owners, gateways) == [
        {"dst": "::/0"}, {"dst": "198.18.9.0/24"}]
    v6 = merge.requested_gateways([("fd00:19::1",)])
    assert v6 == {6: (0, "fd00:19::1")}
    assert merge.default_route_owners([False], [()]) == {4: None, 6: None}


def test_default_route_test_is_by_prefix_length():
    assert merge.is_default_route({"dst": "0.0.0.0/0"})
    assert merge.is_default_route({"dst": "::/0"})
    assert not merge.is_default_route({"dst": "0.0.0.0/1"})
    # A plugin may write host bits under /0 (Go's ParseCIDR takes them): still the default.
    assert merge.is_default_route({"dst": "198.18.0.1/0"})
    assert merge.is_default_route({"dst": "fd00::1/0"})
    assert merge.route_family({"dst": "::/0"}) == 6
    assert merge.route_family({"dst": "198.18.0.0/15"}) == 4


@pytest.mark.parametrize("code,expected", [(1, 1), (7, 7), (0, 100), (-3, 100), (True, 100),
                                           ("11", 100)])
def test_a_delegates_own_code_is_kept_unless_it_reads_as_success(code, expected):
    """Checklist: CNI-ERR-2."""
    out = cniexec.PluginOutput(json.dumps({"code": code, "msg": "no"}).encode(), b"", 1, 0.0)
    err = cniexec.plugin_error(out)
    assert (err.code, err.msg) == (expected, "no")


def test_every_verb_but_version_needs_a_string_cni_version():
    env = {**ENV, "CNI_IFNAME": "eth0"}
    no_version = json.dumps({"name": "n", "type": "multinet"}).encode()
    with pytest.raises(CNIError) as err:
        request_from_env(env, no_version)
    assert err.value.code == 7 and "cniVersion" in err.value.msg
    assert request_from_env({"CNI_COMMAND": "VERSION"}, b"").command == "VERSION"


def test_rollback_says_how_much_it_undid(engine, monkeypatch, caplog):
    names = ["cluster", "a", "broken"]
    conf, request, _ = engine(names)
    FakeDelegates(monkeypatch, fail_add={"broken"}, fail_del={"a"})
    with caplog.at_level("INFO", logger="multinet.add"), pytest.raises(CNIError):
        add_mod.run_add(request, conf, plan_of(*names))
    assert "ADD c1 rolled back (2 of 3 delegates undone)" in caplog.messages


# --- running attachments side by side -----------------------------------------------


def test_a_parallel_failure_skips_what_has_not_started(monkeypatch):
    """Width 2: item 0 fails at once, every other item blocks until every future has
    been offered a cancel. Item 1 holds the other worker; the freed worker can take
    at most one more before the cancels reach it, so at least three never run."""
    import concurrent.futures

    from multinet.attach import fanout

    items = list(range(6))
    cancels, released, ran = [], threading.Event(), []
    real_cancel = concurrent.futures.Future.cancel

    def cancel(self):
        cancels.append(self)
        if len(cancels) == len(items):
            released.set()
        return real_cancel(self)

    monkeypatch.setattr(concurrent.futures.Future, "cancel", cancel)

    def step(item):
        ran.append(item)
        if item == 0:
            raise CNIError(100, "first fails")
        released.wait(10)

    outcomes = fanout.run_each(items, step, 2, stop_on_error=True)
    assert isinstance(outcomes[0], CNIError) and outcomes[1] is None
    skipped = [i for i, o in enumerate(outcomes) if o is fanout.NOT_RUN]
    assert len(skipped) >= 3, outcomes
    assert sorted(ran) == [i for i in items if i not in skipped]
    assert all(outcomes[i] is None for i in ran if i != 0)


def test_without_stop_on_error_every_item_runs_past_a_failure():
    from multinet.attach import fanout

    ran = []

    def step(item):
        ran.append(item)
        if item == 0:
            raise CNIError(100, "first fails")
        time.sleep(0.02)

    outcomes = fanout.run_each(list(range(6)), step, 2)
    assert isinstance(outcomes[0], CNIError) and outcomes[1:] == [None] * 5
    assert sorted(ran) == list(range(6))


def test_a_lock_file_unlinked_while_waiting_is_taken_again(tmp_path, monkeypatch):
    from multinet.attach import lock

    real_stat, seen = os.stat, []

    def stat_once_gone(path, *args, **kw):
        if isinstance(path, str) and path.endswith("c1.lock") and not seen:
            seen.append(path)
            raise FileNotFoundError(path)  # its last holder unlinked it meanwhile
        return real_stat(path, *args, **kw)

    monkeypatch.setattr(lock.os, "stat", stat_once_gone)
    with lock.container_lock(str(tmp_path), "c1"):
        held = True
    assert held and seen, "the lock was taken on a second try"


# --- one delegate network ------------------------------------------------------------

RECORDER_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins")


def recorder_network(tmp_path, *plugins):
    from multinet.cni.netconf import load_network as load

    return load({"cniVersion": "1.1.0", "name": "gcnet", "plugins": [
        {"type": "recorder", "recordFile": str(tmp_path / "calls.jsonl"), **p}
        for p in plugins]}, "t")


def test_gc_carries_on_past_a_failing_plugin(tmp_path):
    """Checklist: CNI-GC-1."""
    from multinet.cni import invoke

    net = recorder_network(tmp_path, {"failOn": ["GC"], "failCode": 11}, {"tag": "second"})
    ctx = invoke.Context("", "", "", plugin_dirs=(RECORDER_DIR,), timeout=20)
    errors = invoke.gc(ctx, net, [{"containerID": "c1", "ifname": "eth0"}])
    assert [e.code for e in errors] == [11]
    with open(tmp_path / "calls.jsonl") as handle:
        seen = [json.loads(line) for line in handle]
    assert [c.get("failed", False) for c in seen] == [True, False]
    assert seen[1]["stdin"]["cni.dev/valid-attachments"] == [
        {"containerID": "c1", "ifname": "eth0"}]


def test_a_delegates_stderr_reaches_the_debug_log(tmp_path, caplog):
    """Checklist: CNI-DLG-3."""
    from multinet.cni import invoke

    net = recorder_network(tmp_path, {"stderr": "warming up"})
    ctx = invoke.Context("c1", "", "eth0", plugin_dirs=(RECORDER_DIR,), timeout=20)
    with caplog.at_level("DEBUG", logger="multinet.delegate"):
        invoke.add(ctx, net, {})
    assert "delegate ADD recorder stderr: warming up" in caplog.messages


def test_only_records_are_listed_never_temp_or_lock_files(tmp_path):
    store = RecordStore(str(tmp_path))
    store.write(Record("c2", "/ns", "eth0", ""))
    store.write(Record("c1", "/ns", "eth0", ""))
    with add_mod.container_lock(str(tmp_path), "c1"):
        pass
    (tmp_path / ".c1.k2j3h4").write_text("{")  # what a killed write leaves
    (tmp_path / "-odd").write_text("{}")
    assert set(os.listdir(tmp_path)) == {".c1.k2j3h4", ".locks", "-odd", "c1", "c2"}
    assert list(store.container_ids()) == ["c1", "c2"]
    assert list(RecordStore(str(tmp_path / "missing")).container_ids()) == []


def test_removing_a_record_that_is_gone_is_quiet(tmp_path):
    store = RecordStore(str(tmp_path))
    store.remove("never-written")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("msg,reason", [
    ("network 'ns1/macnet' not found", "NoNetworkFound"),
    ("pod annotation k8s.v1.cni.cncf.io/networks: element 1 \"Net_A\": bad name",
     "InvalidNetworkAnnotation"),
    ("network 'macnet': plugin 'macvlan': ADD failed: no master", "NetworkAttachFailed"),
])
def test_a_refused_pod_gets_an_event_reason_that_says_why(msg, reason):
    from multinet.attach.podadd import _refusal_reason

    assert _refusal_reason(CNIError(7, msg)) == reason


def test_a_device_info_file_without_a_device_is_left_to_the_plugin(tmp_path):
    """A NAD that declares CNIDeviceInfoFile but no resourceName: nothing to copy."""
    from multinet.attach import deviceinfo

    path = tmp_path / "net-c1-net1.json"
    attachment = Attachment("n", network("n"), "net1", extra={
        "deviceInfoFile": str(path), "deviceInfoBase": str(tmp_path)})
    deviceinfo.prepare(attachment, "c1")
    assert os.listdir(tmp_path) == []
    assert deviceinfo.read(attachment) is None
