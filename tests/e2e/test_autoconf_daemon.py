"""The daemon configuring itself around the primary CNI, as a real process in a node
namespace: the generated 00-multinet.conflist follows its primary through create,
change, replace, rename and delete, an unusable primary never breaks it, the guard
puts it back, uninstall removes it, and an ADD made with it before the primary is
there waits and answers 11, then serves once it is."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from support.daemon import Daemon, metric
from support.k8s import NODE, cni_args, nad_obj, pod_obj
from support.plugin import REPO
from support.waiting import wait_for

from multinet.testing import configs
from multinet.testing.procs import can_connect

GENERATED = "00-multinet.conflist"
POLL = 0.2  # autoconfigPollSeconds for these tests: each wait is a few passes


def primary_conflist(cnode, name: str = "cluster", version: str = "1.0.0",
                     bandwidth: bool = False) -> dict:
    """The node's primary CNI: a bridge with portmap (and bandwidth) chained."""
    bridge = configs.bridge_net(name, cnode.ipam_dir)
    plugins = [{k: v for k, v in bridge.items() if k not in ("cniVersion", "name")},
               {"type": "portmap", "capabilities": {"portMappings": True}}]
    if bandwidth:
        plugins.append({"type": "bandwidth", "capabilities": {"bandwidth": True}})
    return {"cniVersion": version, "name": name, "plugins": plugins}


def replace(path: str, content) -> None:
    """Written as a CNI installs its config: temp file in the same dir, renamed over."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.new")
    with open(tmp, "w") as handle:
        handle.write(content if isinstance(content, str) else json.dumps(content))
    os.replace(tmp, path)


def rewrite(path: str, content) -> None:
    """Written in place, truncated first: what a careless installer does."""
    with open(path, "w") as handle:
        handle.write(content if isinstance(content, str) else json.dumps(content))


class Conf:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        os.makedirs(directory, mode=0o755)
        os.chmod(directory, 0o755)
        self.generated = os.path.join(directory, GENERATED)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def read(self) -> dict | None:
        try:
            with open(self.generated) as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None

    def raw(self) -> bytes | None:
        try:
            with open(self.generated, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def cluster(self) -> str | None:
        conf = self.read()
        return None if conf is None else conf["plugins"][0]["clusterNetwork"]


@pytest.fixture
def conf(workdir) -> Conf:
    return Conf(os.path.join(workdir, "net.d"))


def auto_daemon(cnode, workdir, conf: Conf, **extra) -> Daemon:
    settings = {"multusConfigFile": "auto", "cniConfigDir": conf.dir,
                "autoconfigPollSeconds": POLL, "cniDir": cnode.cni_dir, "binDir": "/usr/lib/cni",
                **extra}
    return Daemon(cnode.ns, os.path.join(workdir, "daemon"), **settings)


@pytest.fixture
def kube_extra(api):
    return {"kubeconfig": str(api.kubeconfig), "nodeName": NODE}


def node_events(api, reason: str) -> list[dict]:
    return [e for e in api.events("default") if e["reason"] == reason]


def runtime_stdin(conflist: dict, runtime_config: dict | None = None) -> bytes:
    """What libcni hands the first plugin of a conflist: its config, the list's name
    and cniVersion, and runtimeConfig for the capabilities it declares."""
    plugin = dict(conflist["plugins"][0])
    out = {**plugin, "cniVersion": conflist["cniVersion"], "name": conflist["name"]}
    caps = plugin.pop("capabilities", {})
    wanted = {k: v for k, v in (runtime_config or {}).items() if caps.get(k)}
    if wanted:
        out["runtimeConfig"] = wanted
    out.pop("capabilities", None)
    return json.dumps(out).encode()


def test_generated_config_follows_its_primary(cnode, workdir, conf):
    first = conf.path("10-bridge.conflist")
    replace(first, primary_conflist(cnode))
    daemon = auto_daemon(cnode, workdir, conf).start()
    try:
        # Written before the socket served: there when start() returns.
        generated = conf.read()
        assert generated == {"cniVersion": "1.0.0", "name": "multinet-cni-network", "plugins": [
            {"type": "multinet", "clusterNetwork": first, "socketPath": daemon.socket_path,
             "capabilities": {"portMappings": True}}]}
        assert stat.S_IMODE(os.stat(conf.generated).st_mode) == 0o644
        assert daemon.http("/readyz") == (200, f"cluster network {first}")

        replace(first, primary_conflist(cnode, version="0.4.0", bandwidth=True))  # replaced
        wait_for(lambda: (conf.read() or {}).get("cniVersion") == "0.4.0", what="replace")
        assert conf.read()["plugins"][0]["capabilities"] == {"bandwidth": True,
                                                             "portMappings": True}
        rewrite(first, primary_conflist(cnode, version="1.0.0"))  # changed in place
        wait_for(lambda: "bandwidth" not in conf.read()["plugins"][0]["capabilities"],
                 what="in-place change")
        assert conf.read()["cniVersion"] == "1.0.0"

        renamed = conf.path("20-bridge.conflist")
        os.rename(first, renamed)
        wait_for(lambda: conf.cluster() == renamed, what="rename")
        earlier = conf.path("05-other.conf")
        replace(earlier, {**configs.bridge_net("other", cnode.ipam_dir), "cniVersion": "0.4.0"})
        wait_for(lambda: conf.cluster() == earlier, what="a new, lexically first primary")
        assert conf.read()["cniVersion"] == "0.4.0" and "capabilities" not in \
            conf.read()["plugins"][0]

        os.unlink(earlier)
        wait_for(lambda: conf.cluster() == renamed, what="back to the remaining one")
        os.unlink(renamed)
        wait_for(lambda: conf.read() is None, what="removal with no primary left")
        status, why = daemon.http("/readyz")
        assert status == 503 and why == f"no primary CNI config in {conf.dir}"
        assert metric(daemon.http("/metrics")[1], "multinet_autoconf_restored_total") == 0

        replace(first, primary_conflist(cnode))  # created
        wait_for(lambda: conf.cluster() == first, what="create")
        assert daemon.http("/readyz")[0] == 200
        assert not [n for n in os.listdir(conf.dir) if n.startswith(f".{GENERATED}")]
    finally:
        daemon.stop()


def test_an_unusable_primary_never_breaks_the_generated_config(cnode, workdir, conf, api,
                                                               kube_extra):
    primary = conf.path("10-bridge.conflist")
    replace(primary, primary_conflist(cnode))
    daemon = auto_daemon(cnode, workdir, conf, **kube_extra).start()
    try:
        good = conf.raw()
        for broken in ("", '{"cniVersion": "1.0.0", "name": "cluster", "plugins": [{"type"',
                       "\0\0\0"):
            rewrite(primary, broken)
            errors = metric(daemon.http("/metrics")[1],
                            "multinet_autoconf_primary_errors_total") or 0
            wait_for(lambda e=errors: (metric(daemon.http("/metrics")[1],
                                              "multinet_autoconf_primary_errors_total") or 0)
                     > e, what="the error counted")
            assert conf.raw() == good, "the last good config stays, byte for byte"
            assert daemon.http("/readyz")[0] == 200
        [event] = wait_for(lambda: node_events(api, "PrimaryCNIConfigInvalid"),
                           what="the Node event")
        assert event["type"] == "Warning"
        assert event["involvedObject"]["kind"] == "Node"
        assert event["involvedObject"]["name"] == NODE
        assert primary in event["message"] and "is empty" in event["message"]
        assert any(line.get("level") == "error" and primary in line.get("msg", "")
                   for line in daemon.log_lines())
        replace(primary, primary_conflist(cnode, version="0.4.0"))
        wait_for(lambda: conf.read()["cniVersion"] == "0.4.0", what="recovery")
    finally:
        daemon.stop()


def test_guard_puts_the_config_back(cnode, workdir, conf, api, kube_extra):
    replace(conf.path("10-bridge.conflist"), primary_conflist(cnode))
    daemon = auto_daemon(cnode, workdir, conf, **kube_extra).start()
    try:
        good = conf.raw()
        os.rename(conf.generated, conf.generated + ".cilium_bak")  # Cilium's cni.exclusive
        wait_for(lambda: conf.raw() == good, what="put back after a rename")
        rewrite(conf.generated, {"cniVersion": "1.0.0", "name": "cilium",
                                 "plugins": [{"type": "cilium-cni"}]})
        wait_for(lambda: conf.raw() == good, what="put back after a rewrite")
        os.unlink(conf.generated)
        wait_for(lambda: conf.raw() == good, what="put back after a delete")
        text = daemon.http("/metrics")[1]
        assert metric(text, "multinet_autoconf_restored_total") == 3
        assert metric(text, "multinet_autoconf_writes_total", reason="restored") == 3
        [event] = wait_for(lambda: node_events(api, "CNIConfigRestored"), what="the event")
        assert event["type"] == "Warning" and event["involvedObject"]["kind"] == "Node"
        assert conf.generated in event["message"]
        restored = [line for line in daemon.log_lines() if "put it back" in line.get("msg", "")]
        assert len(restored) == 3 and {line["level"] for line in restored} == {"warning"}
    finally:
        daemon.stop()


def run_daemon_with_flag(cnode, workdir, conf) -> subprocess.Popen:
    """The daemon with --cleanup-config-on-exit on its command line, as a DaemonSet
    would start it."""
    socket_path = os.path.join(workdir, "flag", "multinet.sock")
    config = os.path.join(workdir, "flag-config.json")
    with open(config, "w") as handle:
        json.dump({"multusConfigFile": "auto", "cniConfigDir": conf.dir, "socketPath": socket_path,
                   "metricsPort": 0, "logFile": os.path.join(workdir, "flag.log")}, handle)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", cnode.ns.name, sys.executable, "-m", "multinet.daemon.main",
         "--config", config, "--cleanup-config-on-exit"],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": REPO}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    wait_for(lambda: can_connect(socket_path) or proc.poll() is not None, what="serving")
    assert proc.poll() is None, proc.stderr.read().decode()
    return proc


def test_uninstall_removes_the_config_it_wrote(cnode, workdir, conf):
    replace(conf.path("10-bridge.conflist"), primary_conflist(cnode))
    proc = run_daemon_with_flag(cnode, workdir, conf)
    try:
        assert conf.read() is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert conf.read() is None, "removed on SIGTERM"
        assert os.path.exists(conf.path("10-bridge.conflist")), "the primary is not ours"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()

    # Without the flag or key the file stays: a restart must not leave pods NotReady.
    daemon = auto_daemon(cnode, workdir, conf).start()
    assert daemon.stop() == 0
    assert conf.read() is not None

    # With the key, and another daemon's content in place (guard too slow to see it):
    # left alone, not ours to remove.
    daemon = auto_daemon(cnode, workdir, conf, cleanupConfigOnExit=True,
                         autoconfigPollSeconds=60).start()
    rewrite(conf.generated, {"cniVersion": "1.0.0", "name": "newer", "plugins": []})
    assert daemon.stop() == 0
    assert conf.read()["name"] == "newer"
    assert any("not the content this daemon wrote" in line.get("msg", "")
               for line in daemon.log_lines())

    daemon = auto_daemon(cnode, workdir, conf, cleanupConfigOnExit=True).start()
    assert conf.read()["name"] == "multinet-cni-network"
    assert daemon.stop() == 0
    assert conf.read() is None


def test_flag_without_auto_mode_is_refused(workdir):
    config = os.path.join(workdir, "c.json")
    with open(config, "w") as handle:
        json.dump({"metricsPort": 0}, handle)
    proc = subprocess.run([sys.executable, "-m", "multinet.daemon.main", "--config", config,
                           "--cleanup-config-on-exit"], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": REPO}, timeout=30,
                          check=False)
    assert proc.returncode == 2 and "multusConfigFile" in proc.stderr


def test_readiness_file_gates_the_config(cnode, workdir, conf):
    ready = os.path.join(workdir, "primary-ready")
    replace(conf.path("10-bridge.conflist"), primary_conflist(cnode))
    daemon = auto_daemon(cnode, workdir, conf, readinessindicatorfile=ready).start()
    try:
        assert conf.read() is None
        assert daemon.http("/readyz")[1] == f"readiness indicator file {ready} does not exist"
        open(ready, "w").close()
        wait_for(conf.read, what="written once ready")
        os.unlink(ready)
        wait_for(lambda: conf.read() is None, what="removed when the primary is not ready")
    finally:
        daemon.stop()


def test_add_before_the_primary_is_there_waits_then_answers_11(cnode, workdir, conf, pod,
                                                              api, kube_extra):
    primary = conf.path("10-bridge.conflist")
    replace(primary, primary_conflist(cnode))
    created = api.create(pod_obj("ns1", "early"))
    args = cni_args(created, "c-early")
    daemon = auto_daemon(cnode, workdir, conf, readinessTimeoutSeconds=1, **kube_extra).start()
    try:
        stdin = runtime_stdin(conf.read())
        os.unlink(primary)  # a pod started while the primary is (re)installing
        wait_for(lambda: conf.read() is None, what="removal")
        started = time.monotonic()
        run = daemon.shim("ADD", stdin, "c-early", pod.path, args=args)
        assert run.returncode != 0 and run.json["code"] == 11, run
        assert time.monotonic() - started >= 1.0, "it waited, bounded"
        assert primary in run.json["msg"] and "not ready" in run.json["msg"]
        assert set(pod.links()) == {"lo"} and cnode.leased_ips() == []
        assert daemon.shim("DEL", stdin, "c-early", pod.path, args=args).returncode == 0
    finally:
        daemon.stop()

    # The same ADD while the primary appears: it waits, then serves.
    daemon = auto_daemon(cnode, workdir, conf, readinessTimeoutSeconds=60, **kube_extra).start()
    try:
        wait_for(lambda: daemon.http("/readyz")[1].startswith("no primary"), what="caches")
        waiting = daemon.shim_async("ADD", json.loads(stdin), "c-early", pod.path,
                                    env={"CNI_ARGS": args})
        wait_for(lambda: metric(daemon.http("/metrics")[1],
                                "multinet_inflight_operations") == 1, what="the ADD waiting")
        replace(primary, primary_conflist(cnode))
        out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, (out, err)
        assert json.loads(out)["interfaces"][-1]["name"] == "eth0"
        assert "eth0" in pod.links()
        assert daemon.shim("DEL", stdin, "c-early", pod.path, args=args).returncode == 0
        cnode.assert_clean(pod)
    finally:
        daemon.stop()


def test_the_generated_config_serves_an_add_with_a_nad_secondary(cnode, workdir, conf, api,
                                                                 kube_extra, pod):
    api.create(nad_obj("ns1", "macnet", configs.macvlan_net(
        "macnet", cnode.macvlan_master, cnode.ipam_dir, subnets=("198.18.1.0/24",))))
    replace(conf.path("10-bridge.conflist"), primary_conflist(cnode))
    daemon = auto_daemon(cnode, workdir, conf, **kube_extra).start()
    try:
        wait_for(lambda: daemon.http("/readyz")[0] == 200, what="caches synced")
        created = api.create(pod_obj("ns1", "p1", {"k8s.v1.cni.cncf.io/networks": "macnet"}))
        stdin = runtime_stdin(conf.read(), {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
        assert json.loads(stdin)["runtimeConfig"]["portMappings"], "the capability reaches us"
        args = cni_args(created, "c1")
        result = daemon.shim("ADD", stdin, "c1", pod.path, args=args).ok()
        # The answer is the cluster network's (NPWG 6); the pod has both.
        assert [i["name"] for i in result["interfaces"] if i.get("sandbox")] == ["eth0"]
        assert {"eth0", "net1"} <= set(pod.links())
        addrs = {link: pod.addresses(link) for link in ("eth0", "net1")}
        assert any(a.startswith("198.18.0.") for a in addrs["eth0"]), addrs
        assert any(a.startswith("198.18.1.") for a in addrs["net1"]), addrs
        assert daemon.shim("DEL", stdin, "c1", pod.path, args=args).returncode == 0
        cnode.assert_clean(pod)
    finally:
        daemon.stop()


def test_a_config_file_named_by_path_is_copied_in(cnode, workdir, conf):
    source = os.path.join(workdir, "mine.conflist")
    with open(source, "w") as handle:
        json.dump({"cniVersion": "1.0.0", "name": "mine", "plugins": [{"type": "multinet"}]},
                  handle)
    daemon = Daemon(cnode.ns, os.path.join(workdir, "daemon"), multusConfigFile=source,
                    cniConfigDir=conf.dir).start()
    try:
        with open(conf.path("mine.conflist")) as handle:
            assert json.load(handle)["name"] == "mine"
        assert stat.S_IMODE(os.stat(conf.path("mine.conflist")).st_mode) == 0o644
        assert conf.read() is None, "nothing generated"
    finally:
        daemon.stop()
