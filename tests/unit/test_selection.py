import contextlib
import json

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from multinet.cni.errors import INVALID_CONFIG, CNIError
from multinet.k8s.selection import (
    NetworkSelection,
    assign_interface_names,
    is_interface_name,
    load_schema,
    parse_default_network_annotation,
    parse_networks_annotation,
)

PREFIX = "pod annotation k8s.v1.cni.cncf.io/networks: "


def parse(value, ns="pod-ns"):
    return parse_networks_annotation(value, ns)


def parse_error(value) -> str:
    with pytest.raises(CNIError) as info:
        parse(value)
    assert info.value.code == INVALID_CONFIG
    assert info.value.msg.startswith(PREFIX)
    return info.value.msg


def one(**fields) -> str:
    return json.dumps([{"name": "net-a", **fields}])


# --- schema file -----------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["items"] == {"$ref": "#/$defs/element"}
    assert schema["$defs"]["element"]["required"] == ["name"]


# --- text form -------------------------------------------------------------------


def test_text_form_resolves_namespaces_and_interfaces():
    """Checklist: NPWG-4.1.1-a, NPWG-4.1.1-b."""
    got = parse("net-a, other-ns/net-b@data0 ,net-a")
    assert [(s.namespace, s.name, s.interface, s.position) for s in got] == [
        ("pod-ns", "net-a", None, 1),
        ("other-ns", "net-b", "data0", 2),
        ("pod-ns", "net-a", None, 3),
    ]


def test_text_form_trims_whitespace_around_parts():
    """Checklist: NPWG-4.1.1-a."""
    assert parse(" ns / net-b @ data0 ")[0] == NetworkSelection(
        name="net-b", namespace="ns", interface="data0", position=1
    )


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_empty_annotation_selects_nothing(value):
    """Checklist: NPWG-4.1-a."""
    assert parse(value) == []


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a/b/c", 'element 1 "a/b/c": more than one "/"'),
        ("net-a@x@y", 'element 1 "net-a@x@y": more than one "@"'),
        ("net-a,,net-b", 'element 2 "": empty element'),
        ("net-a,", 'element 2 "": empty element'),
        ("/net-a", 'empty namespace before "/"'),
        ("net-a@", 'empty interface name after "@"'),
        ("ns/", 'name "" is not a valid DNS-1123 label'),
        ("Net_A", 'element 1 "Net_A": name "Net_A" is not a valid DNS-1123 label'),
        ("-net", 'name "-net" is not a valid DNS-1123 label'),
        ("Other/net-a", 'namespace "Other" is not a valid DNS-1123 label'),
        ("net-a@a:b", 'interface "a:b" is not a valid interface name'),
        ('"net-a"', 'name "\\"net-a\\"" is not a valid DNS-1123 label'),
        (
            "net-a@x, net-b@x",
            'element 2 "net-b@x": interface "x" is already requested by element 1',
        ),
    ],
)
def test_text_form_rejects(value, fragment):
    assert fragment in parse_error(value)


def test_dns_label_length_limit():
    """Checklist: NPWG-3.3-a."""
    assert parse("a" * 63)[0].name == "a" * 63
    assert "is not a valid DNS-1123 label" in parse_error("a" * 64)


# --- JSON form: structure ----------------------------------------------------------


def test_json_single_object_is_rejected():
    """Checklist: NPWG-4.1.2-a."""
    assert "must be a list of objects" in parse_error('{"name":"net-a"}')


def test_json_must_parse():
    assert "invalid JSON" in parse_error('[{"name":"net-a"')


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('[{"namespace":"x"}]', 'element 1 {"namespace":"x"}: name is required'),
        ('["net-a"]', 'element 1 "net-a": must be a JSON object'),
        ('[{"name":5}]', "name 5 must be a string"),
        ('[{"name":""}]', 'name "" is not a valid DNS-1123 label'),
        ('[{"name":"ok"},{"name":"Bad"}]', 'element 2 {"name":"Bad"}: name "Bad"'),
        ('[{"name":"a","namespace":"A_B"}]', 'namespace "A_B" is not a valid DNS-1123 label'),
    ],
)
def test_json_structure_errors(value, fragment):
    """Checklist: NPWG-4.1.2-a."""
    assert fragment in parse_error(value)


def test_json_empty_list_selects_nothing():
    assert parse("[]") == []


def test_json_missing_or_empty_namespace_means_pod_namespace():
    """Checklist: NPWG-4.1.2.1.2-a."""
    got = parse(
        '[{"name":"net-a"},{"name":"net-a","namespace":""},{"name":"net-a","namespace":null}]'
    )
    assert {s.namespace for s in got} == {"pod-ns"}


def test_error_quotes_the_offending_element_and_field():
    msg = parse_error('[{"name":"net-a"},{"name":"net-b","mac":"zz"}]')
    assert msg == (
        PREFIX + 'element 2 {"name":"net-b","mac":"zz"}: mac "zz" is not a valid MAC address'
    )


def test_long_elements_are_shortened_in_messages():
    msg = parse_error(one(mac="zz", note="x" * 1000))
    assert len(msg) < 400
    assert 'mac "zz"' in msg


def test_unknown_and_reverse_dns_keys_are_tolerated_but_not_kept():
    got = parse(one(**{"org.example.note": "x", "unknownKey": {"a": 1}}))
    assert got == [NetworkSelection(name="net-a", namespace="pod-ns", position=1)]


# --- JSON form: each field ---------------------------------------------------------


def test_all_fields_are_carried():
    sel = parse(
        json.dumps(
            [
                {
                    "name": "net-b",
                    "namespace": "other-ns",
                    "interface": "data0",
                    "ips": ["198.18.34.42/24", "2001:db8::5/64"],
                    "mac": "02:23:45:67:89:01",
                    "default-route": ["198.18.34.1"],
                    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "TCP"}],
                    "bandwidth": {"ingressRate": 2048000, "ingressBurst": 160000},
                    "cni-args": {"spoofchk": "on"},
                    "infiniband-guid": "24:8a:07:03:00:8d:ae:2f",
                    "deviceID": "0000:18:02.5",
                }
            ]
        )
    )[0]
    assert sel == NetworkSelection(
        name="net-b",
        namespace="other-ns",
        interface="data0",
        ips=("198.18.34.42/24", "2001:db8::5/64"),
        mac="02:23:45:67:89:01",
        default_route=("198.18.34.1",),
        port_mappings=({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},),
        bandwidth={"ingressRate": 2048000, "ingressBurst": 160000},
        cni_args={"spoofchk": "on"},
        infiniband_guid="24:8a:07:03:00:8d:ae:2f",
        device_id="0000:18:02.5",
        position=1,
    )
    assert sel.key == "other-ns/net-b"


def test_interface_request_is_an_alias_used_only_without_interface():
    assert parse(one(interfaceRequest="data1"))[0].interface == "data1"
    assert parse(one(interface="data0", interfaceRequest="data1"))[0].interface == "data0"
    assert parse(one(interface="", interfaceRequest="data1"))[0].interface == "data1"
    assert "interfaceRequest" in parse_error(one(interfaceRequest="a/b"))


@pytest.mark.parametrize("name", ["eth0", "a", "x" * 15, "net-1.100", "vlan@1", "ü" * 7])
def test_valid_interface_names(name):
    assert parse(one(interface=name))[0].interface == name


@pytest.mark.parametrize(
    "name", ["x" * 16, ".", "..", "a/b", "a:b", "a b", "a\tb", "ü" * 8, "à", "a\x00"]
)
def test_invalid_interface_names(name):
    """Checklist: NPWG-4.1.2.1.5-a."""
    assert "is not a valid interface name" in parse_error(one(interface=name))
    assert not is_interface_name(name)


@pytest.mark.parametrize(
    "ips",
    [["198.18.34.42"], ["198.18.34.42/24"], ["2001:db8::5"], ["2001:db8::5/128"], ["198.18.0.1/0"]],
)
def test_valid_ips(ips):
    assert parse(one(ips=ips))[0].ips == tuple(ips)


@pytest.mark.parametrize(
    ("ips", "fragment"),
    [
        ([], "ips must not be an empty list"),
        (["300.1.1.1"], 'ips[0] "300.1.1.1" is not a valid IP address'),
        (["198.18.0.1", "198.18.0.1/33"], 'ips[1] "198.18.0.1/33"'),
        (["2001:db8::5/129"], 'ips[0] "2001:db8::5/129"'),
        (["198.18.0.1/255.255.255.0"], "is not a valid IP address"),
        (["198.18.0.1/024"], "is not a valid IP address"),
        (["198.18.0.1/"], "is not a valid IP address"),
        (["fe80::1%eth0"], "is not a valid IP address"),
        (["010.0.0.1"], "is not a valid IP address"),
        ([5], "ips[0] 5 must be a string"),
        ("198.18.0.1", 'ips "198.18.0.1" must be a list'),
    ],
)
def test_invalid_ips(ips, fragment):
    """Checklist: NPWG-4.1.2.1.3-a."""
    assert fragment in parse_error(one(ips=ips))


@pytest.mark.parametrize("mac", ["02:23:45:67:89:01", "02-23-45-67-89-AB", "aa:bb:cc:dd:ee:ff"])
def test_valid_mac(mac):
    assert parse(one(mac=mac))[0].mac == mac


@pytest.mark.parametrize(
    "mac", ["zz", "02:23:45:67:89", "02:23:45:67:89:01:02", "02:23-45:67:89:01", "0223.4567.8901"]
)
def test_invalid_mac(mac):
    """Checklist: NPWG-4.1.2.1.4-a."""
    assert f'mac "{mac}" is not a valid MAC address' in parse_error(one(mac=mac))


def test_empty_mac_means_not_set():
    assert parse(one(mac=""))[0].mac is None


def test_infiniband_guid():
    """Checklist: NPWG-4.1.2.1.10-a."""
    assert parse(one(**{"infiniband-guid": "24:8A:07:03:00:8d:ae:2f"}))[0].infiniband_guid
    for bad in ["24:8a:07:03:00:8d:ae", "02:23:45:67:89:01", "24:8a:07:03:00:8d:ae:2g"]:
        assert "infiniband-guid" in parse_error(one(**{"infiniband-guid": bad}))


def test_default_route_values():
    assert parse(one(**{"default-route": ["198.18.0.1", "fd00::1"]}))[0].default_route == (
        "198.18.0.1",
        "fd00::1",
    )
    # An empty list is allowed and still counts as a request.
    assert parse(one(**{"default-route": []}))[0].default_route == ()
    assert parse(one())[0].default_route is None
    assert 'default-route[0] "198.18.0.1/24"' in parse_error(
        one(**{"default-route": ["198.18.0.1/24"]})
    )


def test_default_route_at_most_one_gateway_per_family():
    msg = parse_error(one(**{"default-route": ["198.18.0.1", "198.18.0.2"]}))
    assert 'more than one IPv4 gateway ("198.18.0.1", "198.18.0.2")' in msg
    assert "IPv6" in parse_error(one(**{"default-route": ["fd00::1", "198.18.0.1", "fd00::2"]}))


def test_default_route_on_two_elements_is_rejected():
    """Checklist: NPWG-4.1.2.1.9-a."""
    value = json.dumps(
        [
            {"name": "a", "default-route": ["198.18.0.1"]},
            {"name": "b"},
            {"name": "c", "default-route": []},
        ]
    )
    msg = parse_error(value)
    assert 'element 3 {"name":"c","default-route":[]}' in msg
    assert "already set by element 1" in msg


def test_port_mappings():
    pm = [
        {"hostPort": 8080, "containerPort": 80},
        {"hostPort": 65535, "containerPort": 1, "protocol": "SCTP", "hostIP": "198.18.0.5"},
        {"hostPort": 53, "containerPort": 53, "protocol": "Udp", "extra": 1, "hostIP": ""},
    ]
    assert parse(one(portMappings=pm))[0].port_mappings == (
        {"hostPort": 8080, "containerPort": 80},
        {"hostPort": 65535, "containerPort": 1, "protocol": "sctp", "hostIP": "198.18.0.5"},
        {"hostPort": 53, "containerPort": 53, "protocol": "udp"},
    )


@pytest.mark.parametrize(
    ("pm", "fragment"),
    [
        ([], "portMappings must not be an empty list"),
        ({"hostPort": 1}, 'portMappings {"hostPort":1} must be a list'),
        ([{"hostPort": 0, "containerPort": 80}], "portMappings[0].hostPort 0 is out of range"),
        ([{"hostPort": 80, "containerPort": 65536}], "portMappings[0].containerPort 65536"),
        ([{"containerPort": 80}], "portMappings[0].hostPort is required"),
        ([{"hostPort": 80}], "portMappings[0].containerPort is required"),
        ([{"hostPort": "80", "containerPort": 80}], 'hostPort "80" must be an integer'),
        ([{"hostPort": 80.0, "containerPort": 80}], "hostPort 80.0 must be an integer"),
        ([{"hostPort": True, "containerPort": 80}], "hostPort true must be an integer"),
        (
            [{"hostPort": 1, "containerPort": 1, "protocol": "icmp"}],
            'protocol "icmp" is not a valid',
        ),
        ([{"hostPort": 1, "containerPort": 1, "hostIP": "x"}], 'hostIP "x" is not a valid IP'),
    ],
)
def test_invalid_port_mappings(pm, fragment):
    """Checklist: NPWG-4.1.2.1.7-a."""
    assert fragment in parse_error(one(portMappings=pm))


def test_bandwidth():
    bw = {"egressRate": 10, "egressBurst": 20, "other": 1}
    assert parse(one(bandwidth=bw))[0].bandwidth == {"egressRate": 10, "egressBurst": 20}
    assert parse(one(bandwidth={"ingressRate": 1}))[0].bandwidth == {"ingressRate": 1}


@pytest.mark.parametrize(
    ("bw", "fragment"),
    [
        ({"ingressRate": 0}, "bandwidth.ingressRate 0 is out of range"),
        ({"ingressRate": -5}, "bandwidth.ingressRate -5"),
        ({"egressRate": 1.5}, "bandwidth.egressRate 1.5 must be an integer"),
        ({"ingressBurst": 5}, "bandwidth.ingressBurst requires bandwidth.ingressRate"),
        (
            {"ingressRate": 5, "egressBurst": 5},
            "bandwidth.egressBurst requires bandwidth.egressRate",
        ),
        ({}, "bandwidth must set at least one of ingressRate, egressRate"),
        ([1], "bandwidth [1] must be an object"),
    ],
)
def test_invalid_bandwidth(bw, fragment):
    """Checklist: NPWG-4.1.2.1.8-a."""
    assert fragment in parse_error(one(bandwidth=bw))


def test_cni_args():
    """Checklist: NPWG-4.1.2.1.6-a."""
    args = {"spoofchk": "on", "nested": {"a": [1, 2]}}
    assert parse(one(**{"cni-args": args}))[0].cni_args == args
    assert "cni-args [] must be an object" in parse_error(one(**{"cni-args": []}))


def test_ipam_claim_reference():
    assert (
        parse(one(**{"ipam-claim-reference": "vm-a.net3"}))[0].ipam_claim_reference == "vm-a.net3"
    )
    msg = parse_error(one(ips=["198.18.0.1"], **{"ipam-claim-reference": "vm-a.net3"}))
    assert "ips and ipam-claim-reference cannot both be set" in msg
    assert "ipam-claim-reference 5 must be a string" in parse_error(
        one(**{"ipam-claim-reference": 5})
    )


def test_device_id():
    assert parse(one(deviceID="0000:18:02.5"))[0].device_id == "0000:18:02.5"
    assert "deviceID 7 must be a string" in parse_error(one(deviceID=7))


def test_duplicate_explicit_interfaces_in_json():
    """Checklist: NPWG-4.1.2.1.5-b."""
    value = json.dumps([{"name": "a", "interface": "x1"}, {"name": "b", "interface": "x1"}])
    assert 'element 2 {"name":"b","interface":"x1"}: interface "x1" is already requested' in (
        parse_error(value)
    )


def test_first_bad_element_is_reported():
    value = json.dumps([{"name": "ok"}, {"name": "b", "mac": "zz"}, {"name": "C"}])
    assert "element 2 " in parse_error(value)


# --- both forms -------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
_ifname = st.from_regex(r"[a-zA-Z0-9_.-]{1,15}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)


@st.composite
def _selections(draw):
    items = draw(st.lists(st.tuples(st.none() | _label, _label, st.none() | _ifname), max_size=6))
    ifnames = [i for _, _, i in items if i]
    if len(set(ifnames)) != len(ifnames):
        items = [(ns, name, None) for ns, name, _ in items]
    return items


@given(_selections(), st.sampled_from(["", " ", "  "]))
def test_text_and_json_forms_give_identical_selections(items, pad):
    """Checklist: NPWG-4.1-b."""
    text = ",".join(
        pad + (f"{ns}/" if ns else "") + name + (f"@{ifn}" if ifn else "") + pad
        for ns, name, ifn in items
    )
    objects = []
    for ns, name, ifn in items:
        obj = {"name": name}
        if ns:
            obj["namespace"] = ns
        if ifn:
            obj["interface"] = ifn
        objects.append(obj)
    from_text = parse(text, "pod-ns")
    from_json = parse(json.dumps(objects), "pod-ns")
    assert from_text == from_json
    assert [(s.namespace, s.name, s.interface) for s in from_text] == [
        (ns or "pod-ns", name, ifn) for ns, name, ifn in items
    ]
    assert [s.position for s in from_text] == list(range(1, len(items) + 1))


@given(st.text(max_size=40))
def test_parser_only_ever_raises_cni_errors(value):
    try:
        result = parse(value)
    except CNIError as exc:
        assert exc.code == INVALID_CONFIG
    else:
        assert all(isinstance(s, NetworkSelection) for s in result)


# --- default-network annotation ----------------------------------------------------


def test_default_network_annotation_uses_given_namespace():
    sel = parse_default_network_annotation("calico", "kube-system")
    assert (sel.namespace, sel.name) == ("kube-system", "calico")
    other = parse_default_network_annotation('[{"name":"c","namespace":"x"}]', "kube-system")
    assert other.key == "x/c"


@pytest.mark.parametrize("value", ["a,b", "", "[]", '[{"name":"a"},{"name":"b"}]'])
def test_default_network_annotation_needs_exactly_one(value):
    with pytest.raises(CNIError) as info:
        parse_default_network_annotation(value, "kube-system")
    assert info.value.msg.startswith("pod annotation v1.multus-cni.io/default-network: ")
    assert "exactly one network" in info.value.msg


def test_default_network_annotation_errors_name_that_annotation():
    with pytest.raises(CNIError) as info:
        parse_default_network_annotation("Bad", "kube-system")
    assert 'v1.multus-cni.io/default-network: element 1 "Bad"' in info.value.msg


# --- interface names --------------------------------------------------------------


def sels(*interfaces):
    return [
        NetworkSelection(name=f"n{i}", namespace="p", interface=ifn, position=i + 1)
        for i, ifn in enumerate(interfaces)
    ]


def test_generated_names_follow_positions():
    """Checklist: NPWG-4.2.1-b."""
    assert assign_interface_names(sels(None, None, None)) == ["net1", "net2", "net3"]


def test_explicit_names_are_kept_and_use_up_their_position():
    assert assign_interface_names(sels("foo", None)) == ["foo", "net2"]
    assert assign_interface_names([]) == []


def test_collision_with_primary_interface():
    """Checklist: NPWG-4.1.2.1.5-b."""
    with pytest.raises(CNIError) as info:
        assign_interface_names(sels(None, "eth0"))
    assert info.value.code == INVALID_CONFIG
    assert 'interface "eth0" requested for element 2 (p/n1)' in info.value.msg
    assert "the primary interface" in info.value.msg


def test_collision_with_custom_primary_and_taken():
    with pytest.raises(CNIError, match="net1.*primary"):
        assign_interface_names(sels(None), primary_ifname="net1")
    with pytest.raises(CNIError, match='"net2" generated for element 2.*existing attachment'):
        assign_interface_names(sels(None, None), taken=["net2"])
    assert assign_interface_names(sels(None), primary_ifname="ens3", taken=["eth0"]) == ["net1"]


def test_collision_between_explicit_names():
    with pytest.raises(CNIError) as info:
        assign_interface_names(sels("x1", None, "x1"))
    assert 'interface "x1" requested for element 3 (p/n2) collides with element 1 (p/n0)' in (
        info.value.msg
    )


def test_generated_name_colliding_with_a_later_explicit_one():
    with pytest.raises(CNIError) as info:
        assign_interface_names(sels(None, "net1"))
    assert 'interface "net1" generated for element 1 (p/n0)' in info.value.msg
    assert "element 2 (p/n1), which requests it" in info.value.msg


def test_generated_name_colliding_with_an_earlier_explicit_one():
    with pytest.raises(CNIError) as info:
        assign_interface_names(sels("net2", None))
    assert 'interface "net2" generated for element 2 (p/n1) collides with element 1 (p/n0)' in (
        info.value.msg
    )


# --- exact messages and edges a mutation run found unchecked ------------------------


@pytest.mark.parametrize(("value", "message"), [
    ("net-a, /net-b", 'element 2 "/net-b": empty namespace before "/"'),
    ("net-a, net-b@", 'element 2 "net-b@": empty interface name after "@"'),
    (one(ips=["198.18.1.2"], **{"ipam-claim-reference": "claim"}),
     'element 1 {"name":"net-a","ips":["198.18.1.2"],"ipam-claim-reference":"claim"}: '
     "ips and ipam-claim-reference cannot both be set"),
    (json.dumps([{"name": "a"}, {"name": "b", "default-route": ["198.18.0.1", "198.18.0.2"]}]),
     'element 2 {"name":"b","default-route":["198.18.0.1","198.18.0.2"]}: default-route has '
     'more than one IPv4 gateway ("198.18.0.1", "198.18.0.2")'),
    (json.dumps([{"name": "a", "default-route": []}, {"name": "b", "default-route": []}]),
     'element 2 {"name":"b","default-route":[]}: default-route is already set by element 1;'
     " at most one element may carry default-route"),
    (one(portMappings=[{"hostPort": 0, "containerPort": 80}]),
     'element 1 {"name":"net-a","portMappings":[{"hostPort":0,"containerPort":80}]}: '
     "portMappings[0].hostPort 0 is out of range (1-65535)"),
    (one(bandwidth={"egressBurst": 5}),
     'element 1 {"name":"net-a","bandwidth":{"egressBurst":5}}: '
     "bandwidth.egressBurst requires bandwidth.egressRate"),
    (one(portMappings=[1]),
     'element 1 {"name":"net-a","portMappings":[1]}: portMappings[0] 1 must be an object'),
    ("Xnet", 'element 1 "Xnet": name "Xnet" is not a valid DNS-1123 label'),
    ("XX[{XX", 'element 1 "XX[{XX": name "XX[{XX" is not a valid DNS-1123 label'),
])
def test_exact_messages(value, message):
    assert parse_error(value) == PREFIX + message


def test_single_object_message():
    assert parse_error('{"name":"net-a"}') == (
        PREFIX + "JSON form must be a list of objects, not a single object")
    with pytest.raises(CNIError) as info:
        parse_default_network_annotation('{"name":"net-a"}', "ns")
    assert info.value.msg == ("pod annotation v1.multus-cni.io/default-network: "
                              "JSON form must be a list of objects, not a single object")


def test_messages_quote_non_ascii_as_written():
    assert parse_error("nét") == (
        PREFIX + 'element 1 "nét": name "nét" is not a valid DNS-1123 label')
    assert parse_error(one(mac="é")) == (
        PREFIX + 'element 1 {"name":"net-a","mac":"é"}: mac "é" is not a valid MAC address')


def test_quotes_are_cut_at_200_characters():
    # The element quote is cut to 197 characters plus "..."; 200 exactly are kept whole.
    def element(size: int) -> str:
        bare = json.dumps({"name": "net-a", "mac": "zz", "n": ""}, separators=(",", ":"))
        return json.dumps([{"name": "net-a", "mac": "zz", "n": "x" * (size - len(bare))}],
                          separators=(",", ":"))

    fits = element(200)
    assert len(fits) - 2 == 200
    bad_mac = 'mac "zz" is not a valid MAC address'
    assert parse_error(fits) == PREFIX + f"element 1 {fits[1:-1]}: {bad_mac}"
    long = element(201)
    quote = long[1:198] + "..."
    assert parse_error(long) == PREFIX + f"element 1 {quote}: {bad_mac}"


def test_empty_protocol_and_host_ip_mean_not_set():
    got = parse(one(portMappings=[{"hostPort": 1, "containerPort": 2, "protocol": "",
                                   "hostIP": ""}]))
    assert got[0].port_mappings == ({"hostPort": 1, "containerPort": 2},)
    got = parse(one(portMappings=[{"hostPort": 1, "containerPort": 2, "protocol": None,
                                   "hostIP": None}]))
    assert got[0].port_mappings == ({"hostPort": 1, "containerPort": 2},)


def test_lone_surrogates_never_raise_anything_but_cni_errors():
    assert isinstance(is_interface_name("\udc80x"), bool)
    with contextlib.suppress(CNIError):
        parse(json.dumps([{"name": "net-a", "interface": "\udc80x"}]))


def test_collision_messages_name_the_owner_exactly():
    with pytest.raises(CNIError) as info:
        assign_interface_names(sels(None, "eth0"))
    assert info.value.msg == (
        'interface "eth0" requested for element 2 (p/n1) collides with the primary interface')
    with pytest.raises(CNIError) as info:
        assign_interface_names(sels(None, None), taken=["net2"])
    assert info.value.msg == (
        'interface "net2" generated for element 2 (p/n1) collides with an existing attachment')
