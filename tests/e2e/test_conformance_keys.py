"""Configuration keys that had no test of their own: statusRetrySeconds, logToStderr."""

from __future__ import annotations

import json
import os
import threading
import time

from support.k8s import cni_args, nad_obj, network_status, pod_obj

from multinet.testing import configs


def wait_for(predicate, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _add_during_an_outage(cnode, api, pod, workdir, retry_seconds: float,
                          hold: float) -> list[dict]:
    """ADD a pod while the API is down from the moment its last delegate starts
    until `hold` seconds after the first status PATCH was refused; return the pod's
    network-status once the API is back."""
    started = os.path.join(workdir, "slow-started")
    down = os.path.join(workdir, "api-down")  # the slow delegate ends once it exists
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("ns1", "slow", {"cniVersion": "1.0.0", "name": "slow",
                                       "type": "recorder", "pidFile": started,
                                       "holdUntil": down}))
    p = api.create(pod_obj("ns1", "p1", {"k8s.v1.cni.cncf.io/networks": "slow"}))
    conf = cnode.conf([], kubeconfig=str(api.kubeconfig), clusterNetwork="cluster",
                      statusRetrySeconds=retry_seconds)
    refused = threading.Event()

    def outage() -> None:
        try:
            if wait_for(lambda: os.path.exists(started)):
                api.outage(True)
                open(down, "w").close()
                if wait_for(lambda: api.count("PATCH", "/status") > 0):
                    refused.set()
                    time.sleep(hold)
        finally:
            api.outage(False)
            open(down, "a").close()  # never left holding the delegate

    thread = threading.Thread(target=outage)
    thread.start()
    try:
        cnode.cni("ADD", conf, "c1", pod.path, args=cni_args(p, "c1")).ok()
    finally:
        thread.join()
    assert refused.is_set(), "the status write met the outage"
    assert "eth0" in pod.links(), "the ADD succeeded whatever the status"
    status = network_status(api.get("Pod", "ns1", "p1"))
    cnode.cni("DEL", conf, "c1", pod.path).ok()
    cnode.assert_clean(pod)
    return status


def test_status_retry_seconds_rides_out_an_api_outage(cnode, api, pod, workdir):
    """statusRetrySeconds longer than the outage (and than the 3 s default): the
    status write outlasts it."""
    status = _add_during_an_outage(cnode, api, pod, workdir, retry_seconds=30, hold=4)
    assert [e["interface"] for e in status] == ["eth0", "net1"]
    assert api.count("PATCH", "/status") >= 2


def test_status_retry_seconds_short_gives_up_and_the_add_still_succeeds(
        cnode, api, pod, workdir):
    """statusRetrySeconds shorter than the outage: no status, and no failed ADD."""
    status = _add_during_an_outage(cnode, api, pod, workdir, retry_seconds=0.2, hold=1.5)
    assert status == []


def test_log_to_stderr_adds_stderr_to_the_log_file(cnode, pod):
    """logToStderr: with a logFile, logs reach stderr only when asked; stdout only ever
    holds the result."""
    net = [configs.bridge_net("cluster", cnode.ipam_dir)]
    for container, log_to_stderr in (("cboth", True), ("cfile", None), ("cnone", False)):
        extra = {} if log_to_stderr is None else {"logToStderr": log_to_stderr}
        conf = cnode.conf(net, **extra)
        if container == "cnone":
            conf.pop("logFile")
        add = cnode.cni("ADD", conf, container, pod.path)
        assert json.loads(add.stdout)["cniVersion"] == "1.1.0"
        line = f"ADD container={container} ok"
        assert (line in add.stderr) is (log_to_stderr is True), (container, add.stderr)
        if container != "cnone":
            with open(cnode.log_file) as handle:
                assert line in handle.read()
        cnode.cni("DEL", conf, container, pod.path).ok()
    cnode.assert_clean(pod)
