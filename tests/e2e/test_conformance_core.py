"""Checklist items of the CNI runtime side, against real namespaces and plugins.

What multinet hands its delegates (environment, parameters, runtimeConfig), in
which order it calls them, and what it does with their failures. Each test names
the checklist items it shows.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
import threading

from support.plugin import TEST_PLUGINS
from support.recorder import read_calls, recorded, recorder

from multinet.testing import configs
from multinet.testing.runtime import CNI_BIN

# A plugin that writes its whole environment, netns inode and stdin to `envFile`.
ENV_PLUGIN = """#!/usr/bin/env python3
import json, os, sys
conf = json.load(sys.stdin)
entry = {"env": dict(os.environ), "netns": os.stat("/proc/self/ns/net").st_ino,
         "stdin": conf}
with open(conf["envFile"], "a") as handle:
    handle.write(json.dumps(entry) + "\\n")
if os.environ.get("CNI_COMMAND") == "ADD":
    print(json.dumps({"cniVersion": conf["cniVersion"]}))
"""

# A plugin that fails ADD with text on stderr and nothing on stdout.
TEXT_ONLY_PLUGIN = """#!/bin/sh
cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then echo 'starting' >&2; echo 'no uplink named eth9' >&2; exit 1; fi
"""


def plugin_dir(workdir: str, **scripts: str) -> str:
    """A binDir holding the test plugins plus the given scripts."""
    directory = os.path.join(workdir, "bin")
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(TEST_PLUGINS):
        os.symlink(os.path.join(TEST_PLUGINS, name), os.path.join(directory, name))
    for name, text in scripts.items():
        path = os.path.join(directory, name)
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o755)
    return directory


def test_the_cluster_network_finishes_before_any_other_starts(cnode, pod, workdir):
    """Checklist: NPWG-6.2-a.

    With the default settings, and a cluster network slow enough that any overlap
    would show, every secondary starts only after the cluster network's ADD ended."""
    record = os.path.join(workdir, "calls.jsonl")
    cluster = recorded(configs.bridge_net("cluster", cnode.ipam_dir), record, sleep=0.5)
    delegates = [cluster] + [recorder(f"side{i}", record) for i in range(3)]
    conf = cnode.conf(delegates)
    assert "parallelAttachments" not in conf
    cnode.cni("ADD", conf, "corder", pod.path).ok()
    adds = read_calls(record, "ADD")
    first = adds[0]
    assert (first["stdin"]["name"], first["env"]["CNI_IFNAME"]) == ("cluster", "eth0")
    assert len(adds) == 4
    assert all(c["start"] >= first["end"] for c in adds[1:]), \
        [(c["stdin"]["name"], c["start"] - first["end"]) for c in adds]
    cnode.cni("DEL", conf, "corder", pod.path).ok()
    cnode.assert_clean(pod)


def test_add_check_and_del_hand_each_delegate_the_same_parameters(cnode, pod, workdir):
    """Checklist: NPWG-4.2.1-a, CNI-DLG-2, CNI-EXEC-1, CONV-4, NPWG-7.1-a, CNI-CONF-5.

    Every verb of one attachment carries the same container id, netns, ifname,
    CNI_ARGS (unchanged) and CNI_PATH; each plugin of a list gets the list's name and
    version and its own unknown keys intact; delegates run in multinet's namespace
    with multinet's environment, minus stray CNI_* variables."""
    env_file = os.path.join(workdir, "env.jsonl")
    bin_dir = plugin_dir(workdir, envdump=ENV_PLUGIN)
    chain = {"cniVersion": "1.0.0", "name": "chain", "plugins": [
        {"type": "envdump", "envFile": env_file, "keyA": {"nested": [1, "x"]}},
        {"type": "envdump", "envFile": env_file, "keyB": "kept"}]}
    single = {"cniVersion": "1.0.0", "name": "single", "type": "envdump", "envFile": env_file}
    conf = {**cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), chain, single]),
            "binDir": bin_dir}
    cni_args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p1;K8S_POD_UID=u-1"
    env = {"MULTINET_TEST_MARK": "inherited", "CNI_STRAY": "not-for-delegates"}
    for verb in ("ADD", "CHECK", "DEL"):
        cnode.cni(verb, conf, "cparams", pod.path, args=cni_args, env=env).ok()

    seen = read_calls(env_file)
    verbs = {name: [c["env"]["CNI_COMMAND"] for c in seen if c["stdin"]["name"] == name]
             for name in ("chain", "single")}
    assert verbs == {"chain": ["ADD", "ADD", "CHECK", "CHECK", "DEL", "DEL"],
                     "single": ["ADD", "CHECK", "DEL"]}
    node_netns = os.stat(cnode.ns.path).st_ino
    tuple_of = {}
    for call in seen:
        env_seen = call["env"]
        key = (env_seen["CNI_CONTAINERID"], env_seen["CNI_NETNS"], env_seen["CNI_IFNAME"],
               env_seen["CNI_ARGS"], env_seen["CNI_PATH"])
        tuple_of.setdefault(call["stdin"]["name"], set()).add(key)
        assert env_seen["MULTINET_TEST_MARK"] == "inherited"
        assert "CNI_STRAY" not in env_seen
        assert call["netns"] == node_netns, "delegates run in multinet's own namespace"
        assert call["stdin"]["cniVersion"] == "1.0.0"
    assert tuple_of == {
        "chain": {("cparams", pod.path, "net1", cni_args, f"{bin_dir}:{CNI_BIN}")},
        "single": {("cparams", pod.path, "net2", cni_args, f"{bin_dir}:{CNI_BIN}")}}
    chain_adds = [c["stdin"] for c in seen if c["stdin"]["name"] == "chain"][:2]
    assert chain_adds[0]["keyA"] == {"nested": [1, "x"]} and "keyB" not in chain_adds[0]
    assert chain_adds[1]["keyB"] == "kept" and "keyA" not in chain_adds[1]
    cnode.assert_clean(pod)


def test_del_stops_at_the_first_error_inside_one_list_but_not_across_attachments(
        cnode, pod, workdir):
    """Checklist: CNI-DEL-4, CNI-DEL-1, NPWG-7.2-b.

    DEL runs a list last plugin first, each with the cached result as prevResult;
    the first failing plugin ends that list (the plugins before it are left for the
    next DEL), while the other attachments are still deleted."""
    record = os.path.join(workdir, "calls.jsonl")
    blocker = os.path.join(workdir, "fail-del")
    open(blocker, "w").close()
    chain = {"cniVersion": "1.0.0", "name": "chain", "plugins": [
        {"type": "recorder", "recordFile": record, "tag": "first"},
        {"type": "recorder", "recordFile": record, "tag": "middle", "failOn": ["DEL"],
         "failIfExists": blocker, "failCode": 11, "failMsg": "busy"},
        {"type": "recorder", "recordFile": record, "tag": "last"}]}
    macnet = configs.macvlan_net("macnet", cnode.macvlan_master, cnode.ipam_dir)
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), chain, macnet])
    cnode.cni("ADD", conf, "cdel4", pod.path).ok()

    first = cnode.cni("DEL", conf, "cdel4", pod.path)
    assert first.returncode != 0 and first.json["code"] == 11
    dels = read_calls(record, "DEL")
    assert [c["stdin"]["tag"] for c in dels] == ["last", "middle"], "stopped at the error"
    assert all(c["stdin"]["prevResult"]["cniVersion"] == "1.0.0" for c in dels)
    assert set(pod.links()) == {"lo"}, "the other attachments were deleted all the same"
    assert cnode.leased_ips() == []

    os.unlink(blocker)
    cnode.cni("DEL", conf, "cdel4", pod.path).ok()
    dels = read_calls(record, "DEL")
    assert [c["stdin"]["tag"] for c in dels][2:] == ["last", "middle", "first"]
    cnode.assert_clean(pod)


def test_the_runtimes_runtime_config_reaches_only_the_cluster_network(cnode, pod, workdir):
    """Checklist: NPWG-7.5-a, CONV-1.

    portMappings and bandwidth the runtime put in multinet's runtimeConfig go to the
    cluster network's plugins that declare them, never to a secondary that also
    declares them."""
    record = os.path.join(workdir, "calls.jsonl")
    caps = {"portMappings": True, "bandwidth": True}
    cluster = recorded(configs.bridge_net("cluster", cnode.ipam_dir), record,
                       capabilities=caps)
    side = recorder("side", record, capabilities=caps)
    runtime = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
               "bandwidth": {"ingressRate": 2048000, "ingressBurst": 160000}}
    conf = cnode.conf([cluster, side], runtimeConfig=runtime)
    cnode.cni("ADD", conf, "crtc", pod.path).ok()
    adds = {c["stdin"]["name"]: c["stdin"] for c in read_calls(record, "ADD")}
    assert adds["cluster"]["runtimeConfig"] == runtime
    assert "runtimeConfig" not in adds["side"]
    cnode.cni("DEL", conf, "crtc", pod.path).ok()
    cnode.assert_clean(pod)


def test_disable_check_and_disable_gc_lists_are_never_checked_or_collected(
        cnode, make_pod, workdir):
    """Checklist: CNI-CONF-7, CNI-CHECK-2.

    CHECK succeeds without calling a `disableCheck` list; GC never reaches a
    `disableGC` list; lists without the flags are checked and collected."""
    record = os.path.join(workdir, "calls.jsonl")

    def net(name: str, **flags) -> dict:
        return {"cniVersion": "1.1.0", "name": name, **flags,
                "plugins": [{"type": "recorder", "recordFile": record}]}

    delegates = [configs.bridge_net("cluster", cnode.ipam_dir), net("plain"),
                 net("nocheck", disableCheck=True), net("nogc", disableGC="true")]
    conf = cnode.conf(delegates)
    keep, stale = make_pod(), make_pod()
    cnode.cni("ADD", conf, "ckeep", keep.path).ok()
    cnode.cni("ADD", conf, "cstale", stale.path).ok()

    cnode.cni("CHECK", conf, "ckeep", keep.path).ok()
    checked = [c["stdin"]["name"] for c in read_calls(record, "CHECK")]
    assert sorted(checked) == ["nogc", "plain"]

    gc = {**conf, "cni.dev/valid-attachments": [{"containerID": "ckeep", "ifname": "eth0"}]}
    cnode.cni("GC", gc).ok()
    collected = [c["stdin"]["name"] for c in read_calls(record, "GC")]
    assert sorted(collected) == ["nocheck", "plain"]
    assert cnode.records() == ["ckeep"], "the stale pod was still deleted"
    cnode.cni("DEL", conf, "ckeep", keep.path).ok()
    assert cnode.leased_ips() == []


def test_a_failing_delegates_stderr_is_logged_at_the_default_level(cnode, pod, workdir):
    """Checklist: CNI-DLG-3, CNI-ERR-2.

    At Multus' default level (error) the log still holds what a failing delegate
    wrote to stderr; a delegate that prints no JSON is reported by its stderr text."""
    record = os.path.join(workdir, "calls.jsonl")
    chatty = recorder("chatty", record, failOn=["ADD"], failCode=7,
                      stderr="cannot find uplink eth9")
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), chatty])
    conf.pop("logLevel")
    run = cnode.cni("ADD", conf, "cerr", pod.path)
    assert run.returncode != 0 and run.json["code"] == 7
    with open(cnode.log_file) as handle:
        log = handle.read()
    assert "cannot find uplink eth9" in log
    assert "rc=0" not in log, "the default level keeps successful calls out"
    cnode.assert_clean(pod)

    silent = {"cniVersion": "1.0.0", "name": "silent", "type": "textonly"}
    conf = {**cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), silent]),
            "binDir": plugin_dir(workdir, textonly=TEXT_ONLY_PLUGIN)}
    run = cnode.cni("ADD", conf, "cerr2", pod.path)
    assert run.returncode != 0
    assert run.json["code"] == 100
    assert "ADD failed: no uplink named eth9" in run.json["msg"], run.json
    cnode.assert_clean(pod)


def test_a_plugin_binary_busy_being_written_is_waited_for(cnode, pod, workdir):
    """Checklist: LIB-4.

    While a plugin binary is open for writing, exec gives "text file busy"; the ADD
    retries until the writer has closed it, then succeeds."""
    bin_dir = plugin_dir(workdir)
    busy = os.path.join(bin_dir, "busy")
    shutil.copy(os.path.join(TEST_PLUGINS, "recorder"), busy)
    os.chmod(busy, 0o755)
    record = os.path.join(workdir, "calls.jsonl")
    cluster = recorded(configs.bridge_net("cluster", cnode.ipam_dir), record, type="busy")
    conf = {**cnode.conf([cluster]),
            "binDir": bin_dir}
    writer = open(busy, "r+b")  # noqa: SIM115 - closed by the timer below
    closer = threading.Timer(2.0, writer.close)
    closer.start()
    try:
        cnode.cni("ADD", conf, "cbusy", pod.path).ok()
    finally:
        closer.cancel()
        writer.close()
    assert [c["command"] for c in read_calls(record)] == ["ADD"]
    cnode.cni("DEL", conf, "cbusy", pod.path).ok()
    cnode.assert_clean(pod)


def test_add_runs_a_list_in_order_and_stops_at_its_first_error(cnode, pod, workdir):
    """Checklist: CNI-ADD-1, CNI-DEL-1.

    The first plugin of a list gets no prevResult, each later one the result before
    it; a failing plugin ends the list (the one after it never runs) and the ADD.
    The rollback DELs the list last first; a list older than 0.4.0 gets no
    prevResult on DEL."""
    record = os.path.join(workdir, "calls.jsonl")
    given = {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "198.18.13.5/24"}]}
    chain = {"cniVersion": "0.3.1", "name": "chain", "plugins": [
        {"type": "recorder", "recordFile": record, "tag": "first", "result": given},
        {"type": "recorder", "recordFile": record, "tag": "second", "failOn": ["ADD"],
         "failIfExists": os.path.join(workdir, "fail"), "failCode": 7},
        {"type": "recorder", "recordFile": record, "tag": "third"}]}
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), chain])

    cnode.cni("ADD", conf, "cchain", pod.path).ok()
    adds = [c["stdin"] for c in read_calls(record, "ADD")]
    assert [a["tag"] for a in adds] == ["first", "second", "third"]
    assert "prevResult" not in adds[0]
    assert adds[1]["prevResult"] == given and adds[2]["prevResult"] == given
    cnode.cni("DEL", conf, "cchain", pod.path).ok()
    dels = [c["stdin"] for c in read_calls(record, "DEL")]
    assert [d["tag"] for d in dels] == ["third", "second", "first"]
    assert not any("prevResult" in d for d in dels), "0.3.1 has no prevResult on DEL"
    cnode.assert_clean(pod)

    os.unlink(record)
    open(os.path.join(workdir, "fail"), "w").close()
    run = cnode.cni("ADD", conf, "cchain2", pod.path)
    assert run.returncode != 0 and run.json["code"] == 7
    assert [(c["command"], c["stdin"]["tag"]) for c in read_calls(record)] == [
        ("ADD", "first"), ("ADD", "second"),
        ("DEL", "third"), ("DEL", "second"), ("DEL", "first")]
    cnode.assert_clean(pod)


def test_a_failing_status_never_stops_add_or_del(cnode, pod, workdir):
    """Checklist: CNI-STATUS-3.

    A delegate that answers STATUS with 50 makes multinet's STATUS fail, while ADD
    and DEL go on as if STATUS had never been asked."""
    record = os.path.join(workdir, "calls.jsonl")
    down = {"cniVersion": "1.1.0", "name": "down", "type": "recorder", "recordFile": record,
            "failOn": ["STATUS"], "failCode": 50, "failMsg": "no leases left"}
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), down])
    assert cnode.cni("STATUS", conf).json["code"] == 50
    cnode.cni("ADD", conf, "cstat", pod.path).ok()
    assert "eth0" in pod.links()
    cnode.cni("DEL", conf, "cstat", pod.path).ok()
    assert [c["command"] for c in read_calls(record)] == ["STATUS", "ADD", "DEL"]
    cnode.assert_clean(pod)


def test_the_engine_without_the_daemon_asks_a_plugin_its_versions_once(cnode, pod, workdir):
    """Every ADD is a process of its own here (no daemon): the VERSION answer kept in
    cniDir (root-only) spares asking the plugin again on the next ADD; a binary
    replaced on disk is asked again."""
    asked = os.path.join(workdir, "asked")
    wrapper = (f'#!/bin/sh\n[ "$CNI_COMMAND" = VERSION ] && echo x >> {asked}\n'
               f'exec {CNI_BIN}/bridge\n')
    bin_dir = plugin_dir(workdir, **{"counted-bridge": wrapper})
    conf = {**cnode.conf([{**configs.bridge_net("cluster", cnode.ipam_dir),
                           "type": "counted-bridge"}]), "binDir": bin_dir}

    def add_and_del(container: str) -> int:
        cnode.cni("ADD", conf, container, pod.path).ok()
        assert "eth0" in pod.links()
        cnode.cni("DEL", conf, container, pod.path).ok()
        cnode.assert_clean(pod)
        with open(asked) as handle:
            return handle.read().count("x")

    assert [add_and_del(c) for c in ("cv1", "cv2", "cv3")] == [1, 1, 1]
    cache = os.path.join(cnode.cni_dir, ".plugin-versions")
    assert [stat.S_IMODE(os.lstat(p).st_mode) for p in (cache, *glob.glob(f"{cache}/*"))] \
        == [0o700, 0o600]
    replaced = os.path.join(bin_dir, "counted-bridge.new")
    with open(replaced, "w") as handle:
        handle.write(wrapper + "# a new build\n")
    os.chmod(replaced, 0o755)
    os.replace(replaced, os.path.join(bin_dir, "counted-bridge"))
    assert add_and_del("cv4") == 2
