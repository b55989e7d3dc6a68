"""Pod annotations (both forms, both annotations) and NAD objects: a parse or a CNI error."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from prop_support import assert_cni_error, json_values, names, network_confs, profile

from multinet.cni.errors import CNIError
from multinet.k8s.nad import NetworkAttachmentDefinition, nad_cni_config
from multinet.k8s.selection import (
    assign_interface_names,
    is_dns1123_label,
    parse_default_network_annotation,
    parse_networks_annotation,
)

text_forms = st.lists(st.tuples(st.sampled_from(["", "ns1/", "ns1\n/", "/", "a/b/"]) | names,
                                names, st.sampled_from(["", "@eth1", "@", "@eth1\n", "@a@b"])
                                | names).map(lambda t: "".join(t)),
                      min_size=1, max_size=4).map(",".join)
elements = st.fixed_dictionaries({"name": names | json_values}, optional={
    "namespace": names | json_values, "interface": names | json_values,
    "ips": st.lists(st.sampled_from(["198.18.0.5/24", "fd00::5/64", "x", "198.18.0.5"]),
                    max_size=2) | json_values,
    "mac": st.sampled_from(["02:00:00:00:00:01", "02-00-00-00-00-01", "x"]) | json_values,
    "default-route": st.lists(st.sampled_from(["198.18.0.1", "fd00::1", "x"]), max_size=2)
    | json_values,
    "cni-args": json_values, "portMappings": json_values, "bandwidth": json_values,
    "infiniband-guid": json_values, "ipam-claim-reference": json_values,
    "deviceID": json_values}) | json_values
json_forms = st.lists(elements, max_size=4).map(lambda e: json.dumps(e, allow_nan=True)) \
    | json_values.map(lambda v: json.dumps(v, allow_nan=True))
annotations = text_forms | json_forms | st.text(max_size=40)


@profile()
@given(annotations, st.sampled_from(["ns1", "kube-system"]))
@example('[{"name": "net-a\\n"}]', "ns1")
@example('[{"name": "net-a", "interface": "eth1\\n"}]', "ns1")
@example('[{"name": "net-a", "ips": [NaN]}]', "ns1")
@example("[" * 10000, "ns1")
def test_the_networks_annotation_parses_or_is_refused(value: str, namespace: str) -> None:
    try:
        selections = parse_networks_annotation(value, namespace)
        ifnames = assign_interface_names(selections, "eth0")
    except CNIError as err:
        assert_cni_error(err)
        assert "k8s.v1.cni.cncf.io/networks" in err.msg or "interface" in err.msg
        return
    for selection in selections:
        assert is_dns1123_label(selection.name) or "\n" not in selection.name
        assert "\n" not in selection.namespace and "\n" not in (selection.interface or "")
    assert len(set(ifnames)) == len(ifnames) and "eth0" not in ifnames


@profile()
@given(annotations)
def test_the_default_network_annotation_parses_or_is_refused(value: str) -> None:
    try:
        selection = parse_default_network_annotation(value, "kube-system")
    except CNIError as err:
        assert_cni_error(err)
        return
    assert selection.name and "\n" not in selection.name + selection.namespace


spec_configs = network_confs().map(lambda c: json.dumps(c, allow_nan=True)) \
    | json_values.map(lambda v: json.dumps(v, allow_nan=True)) | st.text(max_size=30) \
    | json_values
nad_objects = st.fixed_dictionaries({
    "metadata": st.fixed_dictionaries({}, optional={
        "name": names | json_values, "namespace": names | json_values,
        "annotations": st.dictionaries(st.just("k8s.v1.cni.cncf.io/resourceName"),
                                       names | json_values) | json_values,
        "uid": json_values, "resourceVersion": json_values}) | json_values,
    "spec": st.fixed_dictionaries({}, optional={"config": spec_configs}) | json_values,
})


@profile()
@given(nad_objects)
@example({"metadata": {"name": "n"}, "spec": {"config": '{"type": "x", "mtu": NaN}'}})
@example({"metadata": {"name": "n"}, "spec": {"config": '{"type": "x", "name": 5}'}})
@example({"metadata": {"name": "n", "annotations": "x"}, "spec": {}})
@example({"metadata": [], "spec": {}})
@example({"metadata": {"name": "n"}, "spec": []})
def test_a_nad_object_gives_a_config_or_a_cni_error(tmp_path_factory, obj: dict[str, Any]) \
        -> None:
    conf_dir = str(tmp_path_factory.getbasetemp())
    try:
        nad = NetworkAttachmentDefinition.from_object(obj)
        config = nad_cni_config(nad, conf_dir)
    except CNIError as err:
        assert_cni_error(err)
        return
    assert isinstance(config, dict)
    assert isinstance(config.get("name"), str)
    json.dumps(config, allow_nan=False)
