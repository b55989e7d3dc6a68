"""The deployment manifests: they parse, grant what multinet calls, and their
configs pass multinet's own validation."""

from __future__ import annotations

import json
import os

import yaml
from support.plugin import REPO

from multinet.attach.conf import load_conf
from multinet.daemon.config import parse_config

DEPLOY = os.path.join(REPO, "conf", "deploy")


def documents(name: str) -> list[dict]:
    with open(os.path.join(DEPLOY, name)) as handle:
        return [d for d in yaml.safe_load_all(handle) if d]


def granted(rules: list[dict], group: str, resource: str) -> set[str]:
    return {verb for rule in rules if group in rule["apiGroups"]
            and resource in rule["resources"] for verb in rule["verbs"]}


def test_rbac_grants_exactly_the_calls_multinet_makes():
    [role] = [d for d in documents("rbac.yaml") if d["kind"] == "ClusterRole"]
    rules = role["rules"]
    assert granted(rules, "", "pods") == {"get", "list", "watch"}
    assert granted(rules, "", "pods/status") == {"patch"}, "one merge PATCH, never a PUT"
    assert granted(rules, "k8s.cni.cncf.io", "network-attachment-definitions") == {
        "get", "list", "watch"}
    assert "create" in granted(rules, "", "events")
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in rules)


def test_configmap_configs_are_valid():
    [config_map] = documents("configmap.yaml")
    daemon = parse_config(json.loads(config_map["data"]["daemon-config.json"]), environ={})
    assert daemon.socket_path == "/run/multinet/multinet.sock"
    cni = json.loads(config_map["data"]["00-multinet.conf"])
    assert load_conf(cni).cni_version == "1.1.0"
    assert cni["socketPath"] == daemon.socket_path


def test_daemonset_mounts_what_the_daemon_uses():
    [daemonset] = documents("daemonset.yaml")
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True, "delegates run in the host's network namespace"
    [daemon] = spec["containers"]
    mounts = {m["mountPath"] for m in daemon["volumeMounts"]}
    assert {"/run/multinet", "/var/lib/cni/multinet", "/var/run/netns",
            "/var/lib/kubelet/pod-resources", "/opt/cni/bin"} <= mounts
    assert daemon["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"] for e in daemon["env"]}
    assert "MULTINET_NODE_NAME" in env, "the watch cache keeps this node's pods only"
