"""The deployment manifests: they parse, grant what multinet calls, their configs
pass multinet's own validation, and they agree with each other and with the image
hack/image.sh builds (every path a config names is mounted from the host, the
image is the one the script tags)."""

from __future__ import annotations

import json
import os
import re
import shlex

import pytest
import yaml
from support.plugin import REPO

from multinet.daemon.config import parse_config

DEPLOY = os.path.join(REPO, "conf", "deploy")


def documents(name: str) -> list[dict]:
    with open(os.path.join(DEPLOY, name)) as handle:
        return [d for d in yaml.safe_load_all(handle) if d]


def granted(rules: list[dict], group: str, resource: str) -> set[str]:
    return {verb for rule in rules if group in rule["apiGroups"]
            and resource in rule["resources"] for verb in rule["verbs"]}


def pod_spec() -> dict:
    [daemonset] = documents("daemonset.yaml")
    return daemonset["spec"]["template"]["spec"]


def container(name: str) -> dict:
    spec = pod_spec()
    [found] = [c for c in spec["containers"] + spec["initContainers"] if c["name"] == name]
    return found


def daemon_config() -> dict:
    [config_map] = documents("configmap.yaml")
    return json.loads(config_map["data"]["daemon-config.json"])


def host_path_of(container_name: str, path: str) -> str:
    """The host path that `path` inside the container is, through its hostPath mounts
    (the deepest mount that holds it); AssertionError when none does."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    best = None
    for mount in container(container_name)["volumeMounts"]:
        inside = mount["mountPath"].rstrip("/")
        if (path == inside or path.startswith(inside + "/")) and (
                best is None or len(inside) > len(best[0])):
            best = (inside, volumes[mount["name"]])
    assert best is not None, f"{container_name}: nothing mounted at {path}"
    inside, volume = best
    assert "hostPath" in volume, f"{container_name}: {path} is on {volume['name']}, not the host"
    return volume["hostPath"]["path"].rstrip("/") + path[len(inside):]


def image_sh_name() -> str:
    with open(os.path.join(REPO, "hack", "image.sh")) as handle:
        [name] = re.findall(r"^IMAGE_NAME=(\S+)$", handle.read(), re.MULTILINE)
    return name


def normalized(image: str) -> str:
    """How containerd and the kubelet name an image given without a registry."""
    if "/" not in image:
        image = f"docker.io/library/{image}"
    return image if ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"


def test_rbac_grants_exactly_the_calls_multinet_makes():
    [role] = [d for d in documents("rbac.yaml") if d["kind"] == "ClusterRole"]
    rules = role["rules"]
    assert granted(rules, "", "pods") == {"get", "list", "watch"}
    assert granted(rules, "", "pods/status") == {"patch"}, "one merge PATCH, never a PUT"
    assert granted(rules, "k8s.cni.cncf.io", "network-attachment-definitions") == {
        "get", "list", "watch"}
    assert granted(rules, "", "events") == {"create", "patch"}
    assert granted(rules, "", "nodes") == {"get"}, "Events about the Node need its uid"
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in rules)


def test_rbac_binds_the_daemonsets_service_account():
    docs = documents("rbac.yaml")
    [account] = [d for d in docs if d["kind"] == "ServiceAccount"]
    [binding] = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert pod_spec()["serviceAccountName"] == account["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]


def test_configmap_daemon_config_is_valid_and_configures_itself():
    raw = daemon_config()
    daemon = parse_config(raw, environ={})
    assert daemon.socket_path == "/run/multinet/multinet.sock"
    assert raw["multusConfigFile"] == "auto"
    assert "parallelAttachments" not in raw, "sequential attachments are the default"
    [config_map] = documents("configmap.yaml")
    # A hand-written 00-multinet.conf sorts before the generated .conflist and would
    # shadow it: the shipped ConfigMap has one or the other.
    assert "00-multinet.conf" not in config_map["data"]


@pytest.mark.parametrize("key", ["cniDir", "confDir", "binDir", "cniConfigDir",
                                 "multusAutoconfigDir"])
def test_every_directory_the_daemon_config_names_is_the_hosts(key):
    raw = daemon_config()
    path = raw.get(key, raw["cniConfigDir"] if key == "multusAutoconfigDir" else None)
    assert path, key
    host = host_path_of("daemon", path)
    if key in ("cniConfigDir", "multusAutoconfigDir"):
        assert host == "/etc/cni/net.d", "where the runtime reads its CNI config"
    elif key == "binDir":
        assert host == "/opt/cni/bin", "the node's own plugins"
    else:
        assert host == path, f"{key}: the node's {path}, so records survive the container"


def test_socket_and_readiness_files_are_on_the_host():
    raw = daemon_config()
    assert host_path_of("daemon", os.path.dirname(raw["socketPath"])) == "/run/multinet"
    indicator = raw.get("readinessindicatorfile")
    if indicator:
        host_path_of("daemon", indicator)


@pytest.mark.parametrize("path", ["/var/lib/cni/multus", "/var/lib/cni/networks",
                                  "/var/run/netns", "/var/lib/kubelet/pod-resources",
                                  "/var/run/k8s.cni.cncf.io/devinfo"])
def test_node_state_the_daemon_reads_is_the_hosts(path):
    # Multus' cache (DEL of pods it attached), host-local's leases (delegates run in
    # the container), the pod namespaces, device ids.
    assert host_path_of("daemon", path) == path


def test_pod_namespaces_made_after_the_daemon_started_are_seen():
    [mount] = [m for m in container("daemon")["volumeMounts"]
               if m["mountPath"] == "/var/run/netns"]
    assert mount["mountPropagation"] == "HostToContainer"


def test_mounts_name_volumes_and_every_volume_is_used():
    spec = pod_spec()
    volumes = {v["name"] for v in spec["volumes"]}
    used = {m["name"] for c in spec["containers"] + spec["initContainers"]
            for m in c["volumeMounts"]}
    assert used <= volumes, used - volumes
    assert volumes <= used, volumes - used


def test_the_init_container_installs_onto_the_host_it_names():
    command = container("install")["command"]
    assert command[:2] == ["sh", "-ec"], "a failing step fails the init container"
    words = shlex.split(command[2].replace(";", " ; "))
    install = words[words.index("multinet.daemon.install") + 1:]
    dest, options = install[0], dict(zip(install[1::2], install[2::2], strict=False))
    host_root = options["--host-root"]
    # Every /host/X mount is the host's X: the paths written into the shim hold.
    for mount in container("install")["volumeMounts"]:
        if mount["mountPath"].startswith(host_root + "/"):
            assert host_path_of("install", mount["mountPath"]) == \
                mount["mountPath"][len(host_root):]
    assert host_path_of("install", dest) == "/opt/cni/bin/multinet"
    assert host_path_of("install", host_root + options["--root"]) == options["--root"]
    assert options["--python"] == "/usr/bin/python3", "the host's interpreter"
    # The init and the daemon see the same CNI dirs of the host.
    config = daemon_config()
    assert host_path_of("install", "/host/etc/cni/net.d") == \
        host_path_of("daemon", config["cniConfigDir"])
    assert os.path.dirname(host_path_of("install", dest)) == \
        host_path_of("daemon", config["binDir"])


def test_the_daemon_removes_its_config_when_it_stops():
    command = container("daemon")["command"]
    assert command[0] == "multinet-daemon"
    assert "--cleanup-config-on-exit" in command
    config_file = command[command.index("--config") + 1]
    assert config_file.startswith("/config/")
    [config_map] = documents("configmap.yaml")
    assert os.path.basename(config_file) in config_map["data"]


def test_the_containers_run_the_image_hack_image_sh_builds():
    name = image_sh_name()
    spec = pod_spec()
    for each in spec["containers"] + spec["initContainers"]:
        assert normalized(each["image"]) == name, each["name"]
        # A tag the kubelet would otherwise pull for ":latest": the image is imported.
        assert each["imagePullPolicy"] == "IfNotPresent", each["name"]
        assert each["securityContext"] == {"privileged": True}, each["name"]
    assert spec["hostNetwork"] is True, "delegates run in the host's network namespace"


def test_probes_reach_the_daemons_metrics_endpoint():
    raw = daemon_config()
    daemon = container("daemon")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = daemon[probe]["httpGet"]
        assert (get["host"], get["port"], get["path"]) == (
            raw["metricsAddress"], raw["metricsPort"], path)
    env = {e["name"] for e in daemon["env"]}
    assert "MULTINET_NODE_NAME" in env, "the watch cache keeps this node's pods only"


def test_containerfile_matches_the_image_sh_image():
    with open(os.path.join(REPO, "Containerfile")) as handle:
        text = handle.read()
    assert re.search(r"^FROM python:3\.11-slim-bookworm", text, re.MULTILINE)
    # The shim is compiled statically at install: the compiler and libc.a are there.
    assert "gcc" in text and "libc6-dev" in text
    assert "containernetworking-plugins" not in text, "nodes bring their own plugins"
    assert re.search(r"^USER root$", text, re.MULTILINE)
    assert re.search(r'^CMD \["multinet-daemon", "--config", "/config/daemon-config.json"\]$',
                     text, re.MULTILINE)
