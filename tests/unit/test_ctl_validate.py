"""multinetctl validate: good files pass with one ok line, each bad input gets its line.

The plugins are the reference ones (they answer VERSION with 0.1.0 .. 1.0.0), plus a
plugin written here that answers VERSION with garbage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from multinet.cli.ctl.main import main
from multinet.testing.runtime import CNI_BIN

VENV_BIN = os.path.dirname(sys.executable)
RESOURCE = "k8s.v1.cni.cncf.io/resourceName"


def nad(name: str, config: dict | str | None, namespace: str = "default",
        annotations: dict | None = None) -> dict:
    meta: dict = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    spec = {} if config is None else {
        "config": config if isinstance(config, str) else json.dumps(config)}
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": meta, "spec": spec}


MACVLAN = {"cniVersion": "1.0.0", "type": "macvlan", "master": "eth0",
           "ipam": {"type": "host-local", "subnet": "198.18.5.0/24"}}
CONFLIST = {"cniVersion": "1.0.0", "name": "cluster", "plugins": [
    {"type": "bridge", "bridge": "cni0",
     "ipam": {"type": "host-local", "subnet": "198.18.0.0/24"}},
    {"type": "portmap", "capabilities": {"portMappings": True}}]}


@pytest.fixture
def write(tmp_path):
    def write(name: str, content) -> str:
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content)
        elif name.endswith((".yaml", ".yml")):
            path.write_text(yaml.safe_dump_all(content if isinstance(content, list)
                                               else [content]))
        else:
            path.write_text(json.dumps(content))
        return str(path)
    return write


def validate(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = main(["validate", "--bin-dir", CNI_BIN, *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_good_nads_in_one_yaml_file(capsys, write):
    path = write("nads.yaml", [
        nad("macnet", MACVLAN, annotations={RESOURCE: "intel.com/sriov_netdevice"}),
        nad("cluster", CONFLIST, namespace="kube-system"),
        nad("ondisk", None)])
    code, out, err = validate(capsys, path)
    assert (code, err) == (0, "")
    assert out == [f"{path}: ok: NetworkAttachmentDefinition default/macnet, "
                   "NetworkAttachmentDefinition kube-system/cluster, "
                   "NetworkAttachmentDefinition default/ondisk (no spec.config: a file "
                   "named ondisk in confDir)"]


def test_good_conflist_single_config_and_multinet_config(capsys, write):
    conflist = write("10-cluster.conflist", CONFLIST)
    single = write("20-mac.conf", {**MACVLAN, "name": "macnet"})
    multinet = write("00-multinet.conf", {
        "cniVersion": "1.0.0", "name": "multinet-net", "type": "multinet",
        "cniDir": "/var/lib/cni/multinet", "delegates": [CONFLIST]})
    daemon = write("daemon-config.json", {"metricsPort": 9091, "cniDir": "/var/lib/cni/mn",
                                          "multusConfigFile": "auto"})
    code, out, err = validate(capsys, conflist, single, multinet, daemon)
    assert (code, err) == (0, "")
    assert out == [f"{conflist}: ok: CNI conflist cluster",
                   f"{single}: ok: CNI config macnet",
                   f"{multinet}: ok: multinet config multinet-net (1 delegate)",
                   f"{daemon}: ok: daemon config"]


def test_the_console_script_as_a_subprocess(write):
    good = write("good.conflist", CONFLIST)
    bad = write("bad.conflist", {**CONFLIST, "plugins": [{"type": "nosuch"}]})
    proc = subprocess.run([os.path.join(VENV_BIN, "multinetctl"), "validate", "--bin-dir",
                           CNI_BIN, good, bad], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc
    assert proc.stdout.splitlines() == [
        f"{good}: ok: CNI conflist cluster",
        f"{bad}: network cluster: field plugins[0].type: plugin 'nosuch' not found in "
        f"{CNI_BIN}"]
    assert proc.stderr == ""


# Each bad input: (file name, content, the exact lines expected after "FILE").
BAD = {
    "nad-name": ("n.yaml", nad("Mac_Net", MACVLAN),
                 [": network default/Mac_Net: field metadata.name: 'Mac_Net' is not a "
                  "DNS-1123 label (lower case alphanumerics and '-', at most 63): pods "
                  "could not name it"]),
    "nad-namespace": ("n.yaml", nad("macnet", MACVLAN, namespace="Prod"),
                      [": network Prod/macnet: field metadata.namespace: 'Prod' is not a "
                       "DNS-1123 label"]),
    "resource-name-no-domain": (
        "n.yaml", nad("macnet", MACVLAN, annotations={RESOURCE: "sriov"}),
        [": network default/macnet: field metadata.annotations[k8s.v1.cni.cncf.io/"
         "resourceName]: 'sriov' must be one vendor domain and one name: like "
         "intel.com/sriov"]),
    "resource-name-bad-domain": (
        "n.yaml", nad("macnet", MACVLAN, annotations={RESOURCE: "Intel_com/sriov"}),
        [": network default/macnet: field metadata.annotations[k8s.v1.cni.cncf.io/"
         "resourceName]: 'Intel_com/sriov': 'Intel_com' is not a DNS-1123 subdomain"]),
    "spec-config-not-json": (
        "n.yaml", nad("macnet", '{"cniVersion": "1.0.0", "type": }'),
        [": network default/macnet: field spec.config: not valid JSON: Expecting value: "
         "line 1 column 33 (char 32)"]),
    "nad-wrong-api-version": (
        "n.yaml", {**nad("macnet", MACVLAN), "apiVersion": "v1"},
        [": network default/macnet: field apiVersion: 'v1' is not k8s.cni.cncf.io/v1"]),
    "unknown-capability": (
        "c.conflist", {**CONFLIST, "plugins": [
            CONFLIST["plugins"][0], {"type": "portmap", "capabilities": {"portMapping": True}}]},
        [": network cluster: field plugins[1].capabilities.portMapping: unknown capability "
         "'portMapping': no runtime fills it, so no plugin receives it (known: "
         "CNIDeviceInfoFile, aliases, bandwidth, cgroupPath, deviceID, dns, infinibandGUID, "
         "io.kubernetes.cri.pod-annotations, ipRanges, ips, mac, portMappings)"]),
    "capability-not-boolean": (
        "c.conflist", {**CONFLIST, "plugins": [
            CONFLIST["plugins"][0], {"type": "portmap", "capabilities": {"portMappings": "yes"}}]},
        [": network cluster: field plugins[1].capabilities.portMappings: must be true or "
         "false, got 'yes' (only true enables it)"]),
    "plugin-missing-and-ipam-missing": (
        "c.conf", {"cniVersion": "1.0.0", "name": "n", "type": "sriov",
                   "ipam": {"type": "whereabouts"}},
        [f": network n: field type: plugin 'sriov' not found in {CNI_BIN}",
         f": network n: field ipam.type: plugin 'whereabouts' not found in {CNI_BIN}"]),
    "plugin-too-old-for-version": (
        "c.conflist", {**CONFLIST, "cniVersion": "1.1.0"},
        [f": network cluster: field cniVersion: plugin '{p}' ({CNI_BIN}/{p}) does not speak "
         "cniVersion 1.1.0: it speaks 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0"
         for p in ("bridge", "host-local", "portmap")]),
    "version-newer-than-ours": (
        "c.conflist", {**CONFLIST, "cniVersion": "2.0.0"},
        [": network cluster: field cniVersion: 2.0.0 is newer than 1.1.0, the newest "
         "multinet speaks"]),
    "type-is-a-path": (
        "c.conf", {"cniVersion": "1.0.0", "name": "n", "type": "../../bin/sh"},
        [": network n: field type: '../../bin/sh' must be a plain file name "
         "([A-Za-z0-9._-]+), never a path"]),
    "empty-plugins": (
        "c.conflist", {"cniVersion": "1.0.0", "name": "n", "plugins": []},
        [": network n: field plugins: must be a non-empty list of plugin objects"]),
    "bad-network-name": (
        "c.conflist", {**CONFLIST, "name": "-x"},
        [": network -x: field name: '-x' is not a network name (^[a-zA-Z0-9][a-zA-Z0-9_.-]*$)"]),
    "multinet-schema": (
        "m.conf", {"cniVersion": "1.0.0", "name": "mn", "type": "multinet", "logLevel": "loud",
                   "delegates": [CONFLIST]},
        [": network mn: field logLevel: 'loud' is not one of ['panic', 'error', 'warning', "
         "'verbose', 'info', 'debug']"]),
    "multinet-delegate": (
        "m.conf", {"cniVersion": "1.0.0", "name": "mn", "type": "multinet",
                   "delegates": [{**CONFLIST, "plugins": [{"type": "nosuch"}]}]},
        [f": network cluster: field delegates[0].plugins[0].type: plugin 'nosuch' not found "
         f"in {CNI_BIN}"]),
    "multinet-delegate-not-an-object": (
        "m.conf", {"cniVersion": "1.0.0", "name": "mn", "type": "multinet", "delegates": [5]},
        [": network mn: field delegates[0]: 5 is not of type 'object'"]),
    "daemon-config": ("daemon-config.json", {"metricsPort": 70000, "cniDir": "/x"},
                      [": field metricsPort: 70000 is not a TCP port"]),
    "not-json": ("c.conf", '{"cniVersion": "1.0.0",',
                 [": not valid JSON: Expecting property name enclosed in double quotes: "
                  "line 1 column 24 (char 23)"]),
    "nan": ("c.conf", '{"cniVersion": "1.0.0", "name": "n", "type": "bridge", "mtu": NaN}',
            [": not valid JSON: mtu: NaN is not a finite number"]),
    "not-yaml": ("n.yaml", "kind: [NetworkAttachmentDefinition\n",
                 [": not valid YAML: expected ',' or ']', but got '<stream end>' at line 2, "
                  "column 1"]),
    "unknown-kind-of-file": ("x.json", {"foo": 1},
                             [": cannot tell what this is: not a NetworkAttachmentDefinition "
                              "(kind), a CNI config (type or plugins) or a daemon config"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_input_gets_its_line(capsys, write, case):
    name, content, expected = BAD[case]
    path = write(name, content)
    code, out, err = validate(capsys, path)
    assert code == 1
    assert out == [path + line for line in expected]
    assert err == ""


def test_problems_of_the_second_document_name_it(capsys, write):
    path = write("nads.yaml", [nad("good", MACVLAN), nad("bad", {**MACVLAN, "type": "nosuch"})])
    code, out, _ = validate(capsys, path)
    assert code == 1
    assert out == [f"{path}:document 2: network default/bad: field spec.config.type: "
                   f"plugin 'nosuch' not found in {CNI_BIN}"]


def test_a_plugin_answering_version_with_garbage(capsys, write, tmp_path):
    bins = tmp_path / "bin"
    bins.mkdir()
    (bins / "odd").write_text("#!/bin/sh\necho not json\n")
    (bins / "odd").chmod(0o755)
    path = write("c.conf", {"cniVersion": "1.0.0", "name": "n", "type": "odd"})
    code = main(["validate", "--bin-dir", str(bins), path])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out == [f"{path}: network n: field type: plugin 'odd' ({bins}/odd) did not answer "
                   f"VERSION: {bins}/odd answered VERSION without a list of supportedVersions"]


def test_unreadable_files_exit_2_without_a_traceback(capsys, write, tmp_path):
    good = write("good.conflist", CONFLIST)
    missing = str(tmp_path / "missing.yaml")
    link = str(tmp_path / "link.conflist")
    os.symlink(good, link)
    directory = str(tmp_path)
    code, out, err = validate(capsys, missing, good, link, directory)
    assert code == 2
    assert out == [f"{good}: ok: CNI conflist cluster"]
    assert err.splitlines() == [
        f"multinetctl validate: {missing}: cannot read: No such file or directory",
        f"multinetctl validate: {link}: cannot read: it is a symlink",
        f"multinetctl validate: {directory}: cannot read: not a regular file"]


def test_a_daemon_config_that_cannot_be_read_is_exit_2(capsys, write, tmp_path):
    good = write("good.conflist", CONFLIST)
    code = main(["validate", "--config", str(tmp_path / "nope.json"), good])
    _, err = capsys.readouterr()
    assert code == 2
    assert err == (f"multinetctl validate: daemon config: {tmp_path}/nope.json: "
                   "No such file or directory\n")


def test_bin_dir_comes_from_the_daemon_config(capsys, write):
    config = write("daemon-config.json", {"binDir": CNI_BIN})
    path = write("c.conflist", CONFLIST)
    code = main(["validate", "--config", config, path])
    out = capsys.readouterr().out
    assert (code, out) == (0, f"{path}: ok: CNI conflist cluster\n")


def test_the_daemon_config_may_come_from_the_environment(capsys, write, monkeypatch, tmp_path):
    bins = tmp_path / "empty-bin"
    bins.mkdir()
    monkeypatch.setenv("MULTINET_DAEMON_CONFIG", write("dc.json", {"binDir": str(bins)}))
    path = write("c.conf", {"cniVersion": "1.0.0", "name": "n", "type": "absent-plugin"})
    code = main(["validate", path])
    out = capsys.readouterr().out
    assert code == 1
    assert out == (f"{path}: network n: field type: plugin 'absent-plugin' not found in "
                   f"{bins}, /opt/cni/bin\n")


def test_a_list_as_kubectl_prints_it(capsys, write):
    listed = {"apiVersion": "v1", "kind": "List", "items": [
        nad("macnet", MACVLAN), nad("broken", {**MACVLAN, "cniVersion": "one"})]}
    path = write("list.json", listed)
    code, out, _ = validate(capsys, path)
    assert code == 1
    assert out == [f"{path}:document 2: network default/broken: field spec.config.cniVersion: "
                   "'one' is not a version (expected like 1.0.0)"]
