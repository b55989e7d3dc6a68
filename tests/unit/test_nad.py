import json
from pathlib import Path

import pytest
import yaml

from multinet.cni.errors import INVALID_CONFIG, CNIError
from multinet.k8s.nad import (
    NetworkAttachmentDefinition,
    nad_cni_config,
)

REPO = Path(__file__).resolve().parents[2]


def nad_object(config=None, name="net-a", namespace="ns1", annotations=None, spec=True):
    obj = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "u-1",
            "resourceVersion": "42",
            "annotations": annotations or {},
        },
    }
    if spec:
        obj["spec"] = {} if config is None else {"config": config}
    return obj


def from_obj(config=None, **kw):
    return NetworkAttachmentDefinition.from_object(nad_object(config, **kw))


# --- from_object -------------------------------------------------------------------


def test_from_object_fields():
    nad = from_obj(
        '{"cniVersion":"1.0.0","type":"bridge"}',
        annotations={"k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov"},
    )
    assert nad == NetworkAttachmentDefinition(
        namespace="ns1",
        name="net-a",
        config={"cniVersion": "1.0.0", "type": "bridge"},
        resource_name="intel.com/sriov",
        uid="u-1",
        resource_version="42",
        config_text='{"cniVersion":"1.0.0","type":"bridge"}',
    )
    assert nad.key == "ns1/net-a"


def test_from_object_without_spec_or_resource_name():
    nad = from_obj(spec=False)
    assert nad.config is None
    assert nad.resource_name is None
    assert from_obj(annotations={"k8s.v1.cni.cncf.io/resourceName": ""}).resource_name is None


def test_from_object_keeps_a_broken_config_for_later():
    nad = from_obj("{broken")
    assert nad.config is None
    assert nad.config_text == "{broken"


def test_from_object_needs_a_name():
    with pytest.raises(CNIError):
        NetworkAttachmentDefinition.from_object({"metadata": {"namespace": "x"}})


# --- nad_cni_config: spec.config -----------------------------------------------------


def test_name_is_injected_when_missing_or_empty(tmp_path):
    """Checklist: NPWG-3.4.2-a."""
    for config in ('{"cniVersion":"0.3.0","type":"recorder"}', '{"name":"","type":"recorder"}'):
        got = nad_cni_config(from_obj(config, name="a-bridge-network"), str(tmp_path))
        assert got["name"] == "a-bridge-network"
        assert got["type"] == "recorder"


def test_a_different_name_is_never_overwritten(tmp_path):
    """Checklist: NPWG-3.4.3-a."""
    got = nad_cni_config(from_obj('{"name":"y","type":"bridge"}', name="x"), str(tmp_path))
    assert got["name"] == "y"


def test_conflist_in_spec_config(tmp_path):
    """Checklist: NPWG-3.2-a."""
    config = {"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}, {"type": "portmap"}]}
    got = nad_cni_config(from_obj(json.dumps(config)), str(tmp_path))
    assert got == {**config, "name": "net-a"}


def test_result_is_a_copy(tmp_path):
    nad = from_obj('{"type":"bridge","ipam":{"type":"host-local"}}')
    nad_cni_config(nad, str(tmp_path))["ipam"]["type"] = "changed"
    assert nad.config == {"type": "bridge", "ipam": {"type": "host-local"}}
    assert nad_cni_config(nad, str(tmp_path))["ipam"]["type"] == "host-local"


def test_spec_config_wins_over_disk(tmp_path):
    """Checklist: NPWG-3.4.1-a."""
    (tmp_path / "10-a.conflist").write_text(
        json.dumps({"name": "net-a", "plugins": [{"type": "disk"}]})
    )
    got = nad_cni_config(from_obj('{"type":"from-nad"}'), str(tmp_path))
    assert got == {"type": "from-nad", "name": "net-a"}


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ("{broken", "spec.config is not valid JSON"),
        ("[1]", "spec.config is not a JSON object"),
        ('"bridge"', "spec.config is not a JSON object"),
        ('{"name":5,"type":"bridge"}', "name must be a string"),
        ('{"cniVersion":"1.0.0"}', 'neither "type" nor "plugins"'),
    ],
)
def test_bad_spec_config_names_the_nad(tmp_path, config, fragment):
    with pytest.raises(CNIError) as info:
        nad_cni_config(from_obj(config), str(tmp_path))
    assert info.value.code == INVALID_CONFIG
    assert "NetworkAttachmentDefinition ns1/net-a" in info.value.msg
    assert fragment in info.value.msg


def test_directly_built_nad_with_config_dict(tmp_path):
    nad = NetworkAttachmentDefinition("ns", "n", {"type": "bridge"}, None)
    assert nad_cni_config(nad, str(tmp_path)) == {"type": "bridge", "name": "n"}


# --- nad_cni_config: on-disk lookup ---------------------------------------------------


@pytest.mark.parametrize("spec", [{"spec": False}, {"config": ""}, {"config": "  "}, {}])
def test_empty_spec_config_uses_disk_conflist_first(tmp_path, spec):
    """Checklist: NPWG-3.4.1-c."""
    (tmp_path / "00-a.conf").write_text(json.dumps({"name": "net-a", "type": "conf"}))
    (tmp_path / "50-a.conflist").write_text(
        json.dumps({"name": "net-a", "plugins": [{"type": "conflist"}]})
    )
    got = nad_cni_config(from_obj(**spec), str(tmp_path))
    assert got["plugins"] == [{"type": "conflist"}]


def test_disk_lookup_falls_back_to_conf(tmp_path):
    (tmp_path / "00-a.conf").write_text(json.dumps({"name": "net-a", "type": "conf"}))
    assert nad_cni_config(from_obj(), str(tmp_path)) == {"name": "net-a", "type": "conf"}


def test_nothing_on_disk_names_nad_and_directory(tmp_path):
    """Checklist: NPWG-3.4.1-d."""
    with pytest.raises(CNIError) as info:
        nad_cni_config(from_obj(), str(tmp_path))
    assert info.value.code == INVALID_CONFIG
    assert "ns1/net-a" in info.value.msg
    assert str(tmp_path) in info.value.msg


# --- shipped YAML: CRD and example NADs ------------------------------------------------


def test_crd_has_the_required_fields():
    """Checklist: NPWG-3.1-a."""
    crd = yaml.safe_load((REPO / "crds" / "network-attachment-definition.yaml").read_text())
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "network-attachment-definitions.k8s.cni.cncf.io"
    spec = crd["spec"]
    assert spec["group"] == "k8s.cni.cncf.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "plural": "network-attachment-definitions",
        "singular": "network-attachment-definition",
        "kind": "NetworkAttachmentDefinition",
        "shortNames": ["net-attach-def"],
    }
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["type"] == "object"
    assert schema["properties"]["spec"]["type"] == "object"
    assert schema["properties"]["spec"]["properties"]["config"]["type"] == "string"


def _structural(node, where="openAPIV3Schema"):
    """Every schema node has a type (the structural-schema rule for v1 CRDs)."""
    assert "type" in node, where
    for key, child in node.get("properties", {}).items():
        _structural(child, f"{where}.{key}")


def test_crd_schema_is_structural():
    """Checklist: NPWG-3.1-a."""
    crd = yaml.safe_load((REPO / "crds" / "network-attachment-definition.yaml").read_text())
    _structural(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


NAD_FILES = sorted((REPO / "conf" / "nads").glob("*.yaml"))


def test_example_nads_cover_the_documented_plugins():
    assert {p.stem for p in NAD_FILES} >= {"bridge", "macvlan", "ipvlan", "host-device", "sriov"}


@pytest.mark.parametrize("path", NAD_FILES, ids=lambda p: p.name)
def test_example_nad_config_parses(path, tmp_path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        assert doc["apiVersion"] == "k8s.cni.cncf.io/v1"
        assert doc["kind"] == "NetworkAttachmentDefinition"
        config = json.loads(doc["spec"]["config"])
        assert "type" in config or "plugins" in config
        assert config["name"] == doc["metadata"]["name"]
        nad = NetworkAttachmentDefinition.from_object(doc)
        assert nad_cni_config(nad, str(tmp_path))["name"] == doc["metadata"]["name"]
        for plugin in config.get("plugins", [config]):
            assert isinstance(plugin["type"], str)


def test_sriov_example_carries_resource_name():
    doc = yaml.safe_load((REPO / "conf" / "nads" / "sriov.yaml").read_text())
    assert NetworkAttachmentDefinition.from_object(doc).resource_name


def test_macvlan_example_declares_the_ips_capability():
    doc = yaml.safe_load((REPO / "conf" / "nads" / "macvlan.yaml").read_text())
    plugins = json.loads(doc["spec"]["config"])["plugins"]
    macvlan = next(p for p in plugins if p["type"] == "macvlan")
    assert macvlan["capabilities"]["ips"] is True
    assert macvlan["ipam"]["type"] == "static"
