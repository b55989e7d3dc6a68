"""Reading Multus' scratch cache: what Multus v4.3 writes, and everything it does not."""

from __future__ import annotations

import base64
import json
import os

import pytest
from support import multus

from multinet.attach import multuscache, takeover
from multinet.attach.conf import load_conf
from multinet.cni.errors import DECODE_FAILURE, INVALID_CONFIG, IO_FAILURE, CNIError

CID = "0f3c9a2b7d6e"
MACVLAN = ('{"cniVersion":"0.3.1","name":"macnet","type":"macvlan","master":"eth1",'
           '"ipam":{"type":"host-local","subnet":"198.18.1.0/24"}}')
CLUSTER = {"cniVersion": "1.0.0", "name": "cluster",
           "plugins": [{"type": "bridge", "bridge": "mn0",
                        "ipam": {"type": "host-local", "subnet": "198.18.0.0/24"}},
                       {"type": "portmap", "capabilities": {"portMappings": True}}]}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# One element exactly as Go's json.Marshal writes a DelegateNetConf of a NAD's single
# plugin config with an interface, mac and ips requested (field order of the struct,
# Conf re-marshalled from Bytes, the zero NetworkConfigList, omitempty fields left out).
GO_ELEMENT = (
    '{"Conf":{"cniVersion":"0.3.1","name":"macnet","type":"macvlan",'
    '"ipam":{"type":"host-local"},"dns":{}},"ConfList":{},'
    '"CNINetworkConfigList":{"Name":"","CNIVersion":"","DisableCheck":false,'
    '"DisableGC":false,"LoadOnlyInlinedPlugins":false,"Plugins":null,"Bytes":null},'
    '"Name":"default/macnet","ifnameRequest":"data0","macRequest":"02:00:00:00:00:01",'
    '"ipRequest":["198.18.1.9/24"],"IsFilterV4Gateway":false,"IsFilterV6Gateway":false,'
    f'"Bytes":"{b64(MACVLAN)}"}}'
)


def cache_bytes(*elements: dict) -> bytes:
    return multus.marshal(list(elements))


def parse(data: bytes, version: str = "1.1.0") -> tuple[multuscache.MultusDelegate, ...]:
    return multuscache.parse(data, "/c/x", version)


def test_the_test_writer_writes_what_go_writes() -> None:
    element = multus.delegate(json.loads(MACVLAN), "default/macnet", ifname="data0",
                              mac="02:00:00:00:00:01", ips=["198.18.1.9/24"],
                              raw_bytes=MACVLAN.encode())
    assert multus.marshal([element]) == f"[{GO_ELEMENT}]".encode()


def test_a_go_written_file_is_read_field_by_field() -> None:
    cluster = multus.delegate(CLUSTER, from_libcni=True)
    data = b"[" + multus.marshal([cluster])[1:-1] + b"," + GO_ELEMENT.encode() + b"]"
    first, second = parse(data)
    assert (first.index, first.name, first.conflist, first.is_cluster_network) == \
        (0, "cluster", True, True)
    assert first.network.types == ["bridge", "portmap"]
    assert first.network.cni_version == "1.0.0"
    assert (second.index, second.name, second.conflist) == (1, "default/macnet", False)
    assert second.network.name == "macnet" and second.network.types == ["macvlan"]
    assert second.network.plugins[0]["master"] == "eth1"
    assert second.network.cni_version == "0.3.1"
    assert (second.ifname_request, second.mac_request, second.ip_request) == \
        ("data0", "02:00:00:00:00:01", ("198.18.1.9/24",))


def test_interface_names_follow_multus_rule() -> None:
    single = json.loads(MACVLAN)
    delegates = parse(cache_bytes(multus.delegate(CLUSTER), multus.delegate(single),
                                  multus.delegate(single, ifname="data0"),
                                  multus.delegate(single)))
    assert [d.ifname("eth0") for d in delegates] == ["eth0", "net1", "data0", "net3"]
    named_first = parse(cache_bytes(multus.delegate(CLUSTER, ifname="pod0")))
    assert named_first[0].ifname("eth0") == "pod0"


def test_conflist_is_told_by_plugins_in_bytes_not_by_type() -> None:
    single, listed = parse(cache_bytes(multus.delegate(json.loads(MACVLAN)),
                                       multus.delegate(CLUSTER)))
    assert not single.conflist and len(single.network.plugins) == 1
    assert listed.conflist and len(listed.network.plugins) == 2


def test_missing_versions_are_filled_as_multus_and_libcni_fill_them() -> None:
    conflist = {k: v for k, v in CLUSTER.items() if k != "cniVersion"}
    single = {k: v for k, v in json.loads(MACVLAN).items() if k != "cniVersion"}
    listed, alone = parse(cache_bytes(multus.delegate(conflist), multus.delegate(single)),
                          version="0.4.0")
    assert listed.network.cni_version == "0.4.0"  # Multus: its own config's version
    assert alone.network.cni_version == "0.1.0"  # libcni: none is the oldest


def test_optional_requests_and_nulls() -> None:
    element = multus.delegate(json.loads(MACVLAN), guid="00:11:22:33:44:55:66:77",
                              device_id="0000:03:00.1", resource_name="intel.com/sriov",
                              gateways=["198.18.1.1"])
    element["ipRequest"] = None
    element["ConfList"] = None
    (delegate,) = parse(cache_bytes(multus.delegate(CLUSTER), element))[1:]
    assert delegate.device_id == "0000:03:00.1"
    assert delegate.resource_name == "intel.com/sriov"
    assert delegate.infiniband_guid_request == "00:11:22:33:44:55:66:77"
    assert delegate.ip_request == ()


def good_element() -> dict:
    return multus.delegate(json.loads(MACVLAN))


def with_field(key: str, value: object) -> bytes:
    element = good_element()
    element[key] = value
    return cache_bytes(multus.delegate(CLUSTER), element)


@pytest.mark.parametrize(("data", "field"), [
    (b"", "not valid JSON"),
    (b'[{"Conf":{"cniVersion":"1.0.0"},"Name":"clu', "not valid JSON"),  # torn mid-write
    (b"\x00" * 64, "not valid JSON"),
    (b'{"Name":"cluster"}', "(top level): a JSON array"),
    (b"null", "(top level): a JSON array"),
    (b"[]", "(top level): no delegates"),
    (b"[null]", "[0]: an object is expected"),
    (b'[{"Name":"x","Bytes":"eyJ4IjogTmFOfQ=="}]', "NaN is not a finite number"),
    (with_field("Bytes", None), "[1].Bytes: missing"),
    (with_field("Bytes", 5), "[1].Bytes: a base64 string"),
    (with_field("Bytes", "not base64!"), "[1].Bytes: not base64"),
    # Go's decoder refuses characters outside the alphabet; so do we, never skipping them.
    (with_field("Bytes", "!" + b64('{"cniVersion":"1.0.0","name":"x","type":"bridge"}')),
     "[1].Bytes: not base64"),
    (with_field("Bytes", b64("{\"name\": ")), "[1].Bytes is not valid JSON"),
    (with_field("Bytes", b64("[1, 2]")), "[1].Bytes: a JSON object"),
    (with_field("Bytes", b64('{"cniVersion":"1.0.0","name":"x","plugins":[]}')),
     "[1].Bytes (network 'x'): plugins must be a non-empty list"),
    (with_field("Bytes", b64('{"cniVersion":"1.0.0","name":"x","type":"../sh"}')),
     "[1].Bytes"),
    (with_field("Bytes", b64('{"cniVersion":"1.0.0","type":"macvlan"}')),
     "[1].Bytes: name None is invalid"),
    (with_field("Name", 7), "[1].Name: a string"),
    (with_field("ifnameRequest", "../../etc"), "[1].ifnameRequest"),
    (with_field("ifnameRequest", "a-name-far-too-long"), "longer than 15 bytes"),
    (with_field("ipRequest", "198.18.1.9/24"), "[1].ipRequest: a list of strings"),
    (with_field("ipRequest", [1]), "[1].ipRequest: a list of strings"),
    (with_field("default-route", ["not-an-ip"]), "[1].default-route"),
    (with_field("deviceID", ["0000:03:00.1"]), "[1].deviceID: a string"),
    (with_field("ConfList", "plugins"), "[1].ConfList: an object"),
    (with_field("ConfList", {"plugins": [{"type": "bridge"}]}),
     "[1].ConfList: names plugins but Bytes is a single plugin config"),
])
def test_anything_multus_does_not_write_is_code_6_naming_file_and_field(
        data: bytes, field: str) -> None:
    with pytest.raises(CNIError) as caught:
        parse(data)
    assert caught.value.code == DECODE_FAILURE
    assert "Multus cache /c/x" in caught.value.msg
    assert field in caught.value.msg


# -- the file on disk ----------------------------------------------------------------------

def write(directory: str, data: bytes, mode: int = 0o600) -> str:
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, CID)
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)
    return path


def test_read_gives_path_and_delegates_and_none_when_absent(workdir: str) -> None:
    directory = os.path.join(workdir, "multus")
    assert multuscache.read(directory, CID, "1.1.0") is None  # no directory
    os.makedirs(directory, mode=0o700)
    assert multuscache.read(directory, CID, "1.1.0") is None  # no file
    path = multus.write_cache(directory, CID, [multus.delegate(CLUSTER), good_element()])
    cache = multuscache.read(directory, CID, "1.1.0")
    assert cache is not None and cache.path == path
    assert [d.name for d in cache.delegates] == ["cluster", "macnet"]
    multuscache.remove(cache)
    assert not os.path.exists(path)


def test_a_torn_file_is_code_6_naming_it(workdir: str) -> None:
    directory = os.path.join(workdir, "multus")
    path = write(directory, cache_bytes(multus.delegate(CLUSTER))[:40])
    with pytest.raises(CNIError) as caught:
        multuscache.read(directory, CID, "1.1.0")
    assert caught.value.code == DECODE_FAILURE and path in caught.value.msg
    assert os.path.exists(path)  # kept: it is the only description of the pod


@pytest.mark.parametrize("problem", ["symlink", "fifo", "directory", "group-writable",
                                     "world-writable", "not-root", "dir-not-root",
                                     "dir-symlink", "too-large"])
def test_unsafe_files_are_refused_unread(workdir: str, problem: str) -> None:
    directory = os.path.join(workdir, "multus")
    good = cache_bytes(multus.delegate(CLUSTER))
    if problem == "symlink":
        target = write(os.path.join(workdir, "elsewhere"), good)
        os.makedirs(directory, mode=0o700)
        os.symlink(target, os.path.join(directory, CID))
    elif problem == "fifo":
        os.makedirs(directory, mode=0o700)
        os.mkfifo(os.path.join(directory, CID), 0o600)
    elif problem == "directory":
        os.makedirs(os.path.join(directory, CID), mode=0o700)
    elif problem == "group-writable":
        write(directory, good, 0o620)
    elif problem == "world-writable":
        write(directory, good, 0o602)
    elif problem == "not-root":
        os.chown(write(directory, good), 65534, 65534)
    elif problem == "dir-not-root":
        write(directory, good)
        os.chown(directory, 65534, 65534)
    elif problem == "dir-symlink":
        write(os.path.join(workdir, "real"), good)
        os.symlink(os.path.join(workdir, "real"), directory)
    elif problem == "too-large":
        write(directory, b" " * (multuscache.MAX_FILE_BYTES + 1) + good)
    with pytest.raises(CNIError) as caught:
        multuscache.read(directory, CID, "1.1.0")
    assert caught.value.code == IO_FAILURE
    assert "Multus cache" in caught.value.msg and "refus" in caught.value.msg \
        or "not a regular file" in caught.value.msg


def test_libcni_result_is_read_when_usable_and_forgotten(workdir: str) -> None:
    directory = os.path.join(workdir, "multus")
    results = os.path.join(directory, "results")
    os.makedirs(results, mode=0o700)
    name = f"cluster-{CID}-eth0"
    result = {"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.5/24"}]}
    with open(os.path.join(results, name), "w") as handle:
        json.dump({"kind": "cniCacheV1", "containerId": CID, "config": b64("{}"),
                   "ifName": "eth0", "networkName": "cluster", "result": result}, handle)
    assert multuscache.cached_result(directory, "cluster", CID, "eth0") == result
    assert multuscache.cached_result(directory, "cluster", CID, "net1") is None
    with open(os.path.join(results, name), "w") as handle:
        handle.write('{"kind": "cniCacheV1", "resu')  # torn: libcni goes on without it
    assert multuscache.cached_result(directory, "cluster", CID, "eth0") is None
    multuscache.forget_result(directory, "cluster", CID, "eth0")
    assert os.listdir(results) == []


# -- what the delegates are handed ---------------------------------------------------------

def test_cni_args_as_multus_builds_them() -> None:
    args = ("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;"
            "K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1;EXTRA=x")
    assert takeover.multus_cni_args(args) == (
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;"
        "K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1;EXTRA=x")
    assert takeover.multus_cni_args("") == (
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=;K8S_POD_NAME=;K8S_POD_INFRA_CONTAINER_ID=;"
        "K8S_POD_UID=")


def test_runtime_config_cluster_gets_the_runtimes_others_their_requests() -> None:
    conf = load_conf({"cniVersion": "1.1.0", "name": "m", "runtimeConfig": {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        "ips": ["198.18.0.9/24"], "io.kubernetes.cri.pod-annotations": {"a": "b"}}})
    cluster, second = parse(cache_bytes(
        multus.delegate(CLUSTER),
        multus.delegate(json.loads(MACVLAN), "default/macnet", ips=["198.18.1.9/24"],
                        mac="02:00:00:00:00:01", device_id="0000:03:00.1")))
    assert takeover._runtime_config(conf, cluster, CID, "eth0") == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        "ips": ["198.18.0.9/24"]}
    assert takeover._runtime_config(conf, second, CID, "net1") == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        "ips": ["198.18.1.9/24"], "mac": "02:00:00:00:00:01", "deviceID": "0000:03:00.1",
        "CNIDeviceInfoFile": f"/var/run/k8s.cni.cncf.io/devinfo/cni/default-macnet-{CID}_net1"}


def test_the_config_key_is_validated() -> None:
    base = {"cniVersion": "1.1.0", "name": "m"}
    assert load_conf(base).multus_cache_dir == "/var/lib/cni/multus"
    assert load_conf({**base, "multusCacheDir": "/x/y"}).multus_cache_dir == "/x/y"
    for bad in ("relative/dir", "", 5):
        with pytest.raises(CNIError) as caught:
            load_conf({**base, "multusCacheDir": bad})
        assert "multusCacheDir" in caught.value.msg


@pytest.mark.parametrize("same", [{"cniDir": "/var/lib/cni/multus"},
                                  {"cniDir": "/x/m/", "multusCacheDir": "/x/m"}])
def test_records_and_multus_cache_may_not_share_a_directory(same: dict) -> None:
    """A Multus file reused with its cniDir would have multinet read Multus' cache as
    its own records (and move them aside as unreadable): refused, naming both keys."""
    with pytest.raises(CNIError) as caught:
        load_conf({"cniVersion": "1.1.0", "name": "m", **same})
    assert caught.value.code == INVALID_CONFIG
    assert "cniDir" in caught.value.msg and "multusCacheDir" in caught.value.msg


def test_a_daemon_config_that_keeps_multus_cnidir_is_refused_at_start() -> None:
    from multinet.daemon.config import ConfigError, parse_config

    assert parse_config({"multusCacheDir": "/var/lib/cni/multus"}, {}).overlay
    with pytest.raises(ConfigError, match="cniDir and multusCacheDir"):
        parse_config({"cniDir": "/var/lib/cni/multus"}, {})


def request_for(container_id: str = CID):
    from multinet.cni.request import Request

    return Request(command="DEL", container_id=container_id, netns="", ifname="eth0",
                   args="", config={})


def test_an_unexpected_failure_is_an_answer_and_keeps_the_file(workdir: str,
                                                               monkeypatch) -> None:
    directory = os.path.join(workdir, "multus")
    path = multus.write_cache(directory, CID, [multus.delegate(CLUSTER), good_element()])
    conf = load_conf({"cniVersion": "1.1.0", "name": "m", "multusCacheDir": directory,
                      "cniDir": os.path.join(workdir, "cni")})
    tried: list[str] = []

    def delete(ctx, attachment, prev_result) -> None:
        tried.append(attachment.ifname)
        if attachment.ifname == "net1":
            raise KeyError("a bug")

    monkeypatch.setattr(takeover.delegates, "delete", delete)
    with pytest.raises(CNIError) as caught:
        takeover.multus_del(request_for(), conf)
    assert caught.value.code == 101 and "macnet" in caught.value.msg
    assert tried == ["net1", "eth0"], "carried on past the failure, last first"
    assert os.path.exists(path)
    monkeypatch.setattr(takeover.delegates, "delete", lambda *a: tried.append("again"))
    assert takeover.multus_del(request_for(), conf) is True
    assert not os.path.exists(path)
    assert takeover.multus_del(request_for(), conf) is False


def test_libcni_result_is_handed_in_the_networks_version(workdir: str) -> None:
    directory = os.path.join(workdir, "multus")
    os.makedirs(os.path.join(directory, "results"), mode=0o700)
    old = {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "198.18.0.5/24"}]}
    with open(os.path.join(directory, "results", f"cluster-{CID}-eth0"), "w") as handle:
        json.dump({"kind": "cniCacheV1", "result": old}, handle)
    (cluster,) = parse(cache_bytes(multus.delegate(CLUSTER)))
    prev = takeover._prev_result(directory, cluster, CID, "eth0")
    assert prev["cniVersion"] == "1.0.0"
    assert prev["ips"] == [{"address": "198.18.0.5/24"}]
    (older,) = parse(cache_bytes(multus.delegate({**CLUSTER, "cniVersion": "0.3.1"})))
    assert takeover._prev_result(directory, older, CID, "eth0") is None, \
        "no prevResult on DEL before 0.4.0"
