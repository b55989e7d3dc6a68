"""Values that used to pass validation: each is refused with its spec code, naming the field."""

from __future__ import annotations

import json

import pytest
from support.plugin import TEST_PLUGINS

from multinet.attach.conf import load_conf
from multinet.attach.plan import MAX_ATTACHMENTS, plan_from_delegates
from multinet.attach.verbs import respond
from multinet.cni import version as versions
from multinet.cni.errors import DECODE_FAILURE, INVALID_CONFIG, INVALID_ENV, CNIError
from multinet.cni.netconf import load_network, plugin_type_problem
from multinet.cni.request import MAX_CONTAINER_ID_LENGTH, Request, request_from_env
from multinet.daemon.config import ConfigError, apply_overlay, load_config, parse_config
from multinet.k8s.nad import NetworkAttachmentDefinition, nad_cni_config
from multinet.k8s.selection import parse_default_network_annotation, parse_networks_annotation

TIMEOUT_KEYS = ("delegateTimeoutSeconds", "readinessTimeoutSeconds", "statusRetrySeconds",
                "shimWaitSeconds")
NUMBER_KEYS = (*TIMEOUT_KEYS, "parallelAttachments")
NET = {"cniVersion": "1.1.0", "name": "net", "type": "recorder"}


def base_conf(tmp_path, **extra) -> dict:
    return {"cniVersion": "1.1.0", "name": "mn", "type": "multinet",
            "cniDir": str(tmp_path / "cni"), "binDir": TEST_PLUGINS,
            "delegates": [{**NET, "recordFile": str(tmp_path / "calls")}], **extra}


def env(command="ADD", **extra) -> dict:
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x",
            "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni", **extra}


def refused(call, code: int) -> CNIError:
    with pytest.raises(CNIError) as info:
        call()
    assert info.value.code == code, info.value
    return info.value


def answer(environ: dict, stdin: bytes) -> tuple[int, dict]:
    status, cni_code, out = respond(environ, stdin)
    assert status == 1, out
    reply = json.loads(out)
    assert reply["code"] == cni_code
    return cni_code, reply


# --- numbers: NaN, Infinity, negatives, absurd sizes ---------------------------------------


@pytest.mark.parametrize("key", NUMBER_KEYS)
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_number_in_the_stdin_config_is_a_decode_error(tmp_path, key, literal):
    text = json.dumps(base_conf(tmp_path))[:-1] + f', "{key}": {literal}}}'
    err = refused(lambda: request_from_env(env(), text.encode()), DECODE_FAILURE)
    assert key in err.msg


def test_a_non_finite_number_deep_in_a_delegate_is_named_by_its_path(tmp_path):
    text = json.dumps(base_conf(tmp_path)).replace('"type": "recorder"',
                                                   '"type": "recorder", "mtu": NaN')
    err = refused(lambda: request_from_env(env(), text.encode()), DECODE_FAILURE)
    assert "delegates[0].mtu" in err.msg


@pytest.mark.parametrize("key", NUMBER_KEYS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 1e300])
def test_an_unusable_number_in_the_multinet_config_is_refused(tmp_path, key, value):
    err = refused(lambda: load_conf(base_conf(tmp_path, **{key: value})), INVALID_CONFIG)
    assert key in err.msg


@pytest.mark.parametrize("key", TIMEOUT_KEYS)
def test_timeouts_over_an_hour_are_refused_and_an_hour_is_not(tmp_path, key):
    load_conf(base_conf(tmp_path, **{key: 3600}))
    err = refused(lambda: load_conf(base_conf(tmp_path, **{key: 3600.5})), INVALID_CONFIG)
    assert key in err.msg


def test_parallel_attachments_may_not_exceed_the_attachment_cap(tmp_path):
    load_conf(base_conf(tmp_path, parallelAttachments=MAX_ATTACHMENTS))
    err = refused(lambda: load_conf(base_conf(tmp_path, parallelAttachments=MAX_ATTACHMENTS + 1)),
                  INVALID_CONFIG)
    assert "parallelAttachments" in err.msg


def test_a_nan_readiness_timeout_answers_at_once_instead_of_waiting_forever(tmp_path):
    text = json.dumps(base_conf(tmp_path, readinessindicatorfile=str(tmp_path / "never")))
    text = text[:-1] + ', "readinessTimeoutSeconds": NaN}'
    code, reply = answer(env(), text.encode())
    assert code == DECODE_FAILURE and "readinessTimeoutSeconds" in reply["msg"]
    assert not (tmp_path / "cni").exists() or not any((tmp_path / "cni").iterdir())


@pytest.mark.parametrize("key", ["readinessTimeoutSeconds", "delegateTimeoutSeconds",
                                 "shimWaitSeconds", "statusRetrySeconds"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e300, -5])
def test_the_daemon_does_not_start_with_an_unusable_number_in_its_overlay(key, value):
    with pytest.raises(ConfigError, match=key):
        parse_config({key: value})


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_the_daemon_config_file_may_not_hold_non_finite_numbers(tmp_path, literal):
    path = tmp_path / "daemon.json"
    path.write_text('{"socketPath": "/run/x.sock", "readinessTimeoutSeconds": ' + literal + "}")
    with pytest.raises(ConfigError, match="readinessTimeoutSeconds"):
        load_config(str(path))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 1e300])
def test_the_daemon_shutdown_grace_must_be_a_sane_number(value):
    with pytest.raises(ConfigError, match="shutdownGraceSeconds"):
        parse_config({"shutdownGraceSeconds": value})


@pytest.mark.parametrize("key", ["maxConcurrency", "connectionLimit"])
def test_the_daemon_concurrency_is_bounded(key):
    parse_config({key: 1024})
    with pytest.raises(ConfigError, match="maxConcurrency"):
        parse_config({key: 10**9})


def test_an_overlay_never_carries_nan_into_a_request():
    overlaid = apply_overlay(b'{"cniVersion": "1.1.0", "name": "n", "mtu": NaN}',
                             {"cniDir": "/tmp/x"})
    err = refused(lambda: request_from_env(env(), overlaid), DECODE_FAILURE)
    assert "mtu" in err.msg


def test_a_nad_config_with_nan_is_refused_naming_the_nad_and_the_field():
    nad = NetworkAttachmentDefinition.from_object({
        "metadata": {"name": "blue", "namespace": "ns1"},
        "spec": {"config": '{"cniVersion": "1.0.0", "type": "macvlan", "mtu": NaN}'}})
    err = refused(lambda: nad_cni_config(nad, "/nonexistent"), INVALID_CONFIG)
    assert "ns1/blue" in err.msg and "mtu" in err.msg


# --- identifiers: a trailing newline is not the end of a string -----------------------------


def test_a_container_id_with_a_trailing_newline_is_refused(tmp_path):
    stdin = json.dumps(base_conf(tmp_path)).encode()
    for command in ("ADD", "DEL", "CHECK"):
        err = refused(lambda c=command: request_from_env(env(c, CNI_CONTAINERID="a\n"), stdin),
                      INVALID_ENV)
        assert "CNI_CONTAINERID" in err.msg


def test_an_ifname_with_a_trailing_newline_is_refused(tmp_path):
    stdin = json.dumps(base_conf(tmp_path)).encode()
    err = refused(lambda: request_from_env(env(CNI_IFNAME="eth0\n"), stdin), INVALID_ENV)
    assert "CNI_IFNAME" in err.msg


def test_a_network_name_with_a_trailing_newline_is_refused():
    """Checklist: CNI-CONF-2."""
    err = refused(lambda: load_network({**NET, "name": "net\n"}, "delegates[0]"), INVALID_CONFIG)
    assert "name" in err.msg and "delegates[0]" in err.msg


def test_a_plugin_type_with_a_trailing_newline_is_refused():
    assert plugin_type_problem("bridge\n") is not None
    err = refused(lambda: load_network({**NET, "type": "bridge\n"}, "delegates[0]"),
                  INVALID_CONFIG)
    assert "plugins[0].type" in err.msg


@pytest.mark.parametrize("value", [
    json.dumps([{"name": "net-a\n"}]),
    json.dumps([{"name": "net-a", "namespace": "ns1\n"}]),
    json.dumps([{"name": "net-a", "interface": "eth1\n"}]),
    json.dumps([{"name": "net-a\nb"}]),
])
def test_annotation_names_with_a_newline_are_refused(value):
    refused(lambda: parse_networks_annotation(value, "pod-ns"), INVALID_CONFIG)
    refused(lambda: parse_default_network_annotation(value, "kube-system"), INVALID_CONFIG)


@pytest.mark.parametrize("value", ["ns1\n/net-a", "ns1/net-a\n@eth1\n", "ns1/net-a\n"])
def test_the_text_form_trims_whitespace_and_never_keeps_a_newline_in_a_name(value):
    (selection,) = parse_networks_annotation(value, "pod-ns")
    assert (selection.namespace, selection.name) == ("ns1", "net-a")
    assert selection.interface in (None, "eth1")
    refused(lambda: parse_networks_annotation("ns1/net\na", "pod-ns"), INVALID_CONFIG)


# --- container id length, netns path --------------------------------------------------------


def test_a_container_id_of_any_length_up_to_the_bound_is_accepted(tmp_path):
    stdin = json.dumps(base_conf(tmp_path)).encode()
    request = request_from_env(env(CNI_CONTAINERID="a" * MAX_CONTAINER_ID_LENGTH), stdin)
    assert len(request.container_id) == MAX_CONTAINER_ID_LENGTH


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_a_container_id_too_long_for_a_file_name_is_an_env_error(tmp_path, command):
    stdin = json.dumps(base_conf(tmp_path)).encode()
    code, reply = answer(env(command, CNI_CONTAINERID="a" * 300), stdin)
    assert code == INVALID_ENV and "CNI_CONTAINERID" in reply["msg"]
    assert str(MAX_CONTAINER_ID_LENGTH) in reply["msg"] + reply.get("details", "")


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
@pytest.mark.parametrize("netns", ["netns/x", "x", "./x", "../run/netns/x"])
def test_a_relative_netns_is_an_env_error(tmp_path, command, netns):
    stdin = json.dumps(base_conf(tmp_path)).encode()
    err = refused(lambda: request_from_env(env(command, CNI_NETNS=netns), stdin), INVALID_ENV)
    assert "CNI_NETNS" in err.msg


def test_del_may_come_without_a_netns(tmp_path):
    # containerd's RemovePodSandbox sends a second DEL with an empty CNI_NETNS.
    stdin = json.dumps(base_conf(tmp_path)).encode()
    request = request_from_env(env("DEL", CNI_NETNS=""), stdin)
    assert request.netns == ""


# --- VERSION ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [5, 1.0, True, None, [], {}, ["1.0.0"], "", "garbage",
                                   "9.9.9"])
def test_version_never_echoes_a_value_it_does_not_speak(value):
    status, code, out = respond({"CNI_COMMAND": "VERSION"},
                                json.dumps({"cniVersion": value}).encode())
    assert (status, code) == (0, 0)
    reply = json.loads(out)
    assert reply["cniVersion"] == versions.LATEST
    assert reply["supportedVersions"] == list(versions.SUPPORTED_VERSIONS)


@pytest.mark.parametrize("value", versions.SUPPORTED_VERSIONS)
def test_version_answers_in_the_version_asked_when_it_speaks_it(value):
    _, _, out = respond({"CNI_COMMAND": "VERSION"}, json.dumps({"cniVersion": value}).encode())
    assert json.loads(out)["cniVersion"] == value


# --- attachments per pod --------------------------------------------------------------------


def test_more_delegates_than_the_cap_are_refused_before_anything_runs(tmp_path):
    delegates = [{**NET, "name": f"n{i}"} for i in range(MAX_ATTACHMENTS + 1)]
    conf = load_conf(base_conf(tmp_path, delegates=delegates))
    request = Request("ADD", "c1", "/var/run/netns/x", "eth0", config=conf.raw)
    err = refused(lambda: plan_from_delegates(conf, request), INVALID_CONFIG)
    assert "delegates" in err.msg and str(MAX_ATTACHMENTS) in err.msg
    assert len(plan_from_delegates(load_conf(base_conf(
        tmp_path, delegates=delegates[:MAX_ATTACHMENTS])), request)) == MAX_ATTACHMENTS


class FakeKube:
    """Pods and NADs from dicts; counts the NAD lookups."""

    def __init__(self, pod: dict) -> None:
        self.pod = pod
        self.nad_reads = 0
        self.events: list[tuple[str, str]] = []

    def get_pod(self, namespace, name):
        return self.pod

    def get_nad(self, namespace, name):
        self.nad_reads += 1
        return {"metadata": {"name": name, "namespace": namespace},
                "spec": {"config": json.dumps({"cniVersion": "1.0.0", "type": "recorder"})}}

    def patch_pod_status(self, namespace, name, patch, content_type=None):
        return None

    def create_event(self, pod, reason, message, event_type="Normal"):
        self.events.append((reason, message))


@pytest.mark.parametrize("form", ["text", "json"])
def test_a_pod_asking_for_more_networks_than_the_cap_is_refused(tmp_path, form):
    count = MAX_ATTACHMENTS  # with the cluster network, one over the cap
    names = [f"net{i}" for i in range(count)]
    value = ",".join(names) if form == "text" else json.dumps([{"name": n} for n in names])
    kube = FakeKube({"metadata": {"name": "p", "namespace": "pod-ns", "uid": "u1",
                                  "annotations": {"k8s.v1.cni.cncf.io/networks": value}}})
    stdin = json.dumps(base_conf(tmp_path)).encode()
    environ = env(CNI_ARGS="K8S_POD_NAMESPACE=pod-ns;K8S_POD_NAME=p;K8S_POD_UID=u1")
    status, code, out = respond(environ, stdin, kube_for=lambda _r: kube)
    assert (status, code) == (1, INVALID_CONFIG), out
    msg = json.loads(out)["msg"]
    assert "k8s.v1.cni.cncf.io/networks" in msg and str(MAX_ATTACHMENTS) in msg
    assert kube.nad_reads == 0, "refused before the NADs are looked up"
    assert not (tmp_path / "calls").exists(), "no delegate ran"


def test_a_pod_at_the_cap_is_not_refused_for_its_count(tmp_path):
    names = [f"net{i}" for i in range(MAX_ATTACHMENTS - 1)]  # the cluster network makes the cap
    kube = FakeKube({"metadata": {"name": "p", "namespace": "pod-ns", "uid": "u1",
                                  "annotations": {"k8s.v1.cni.cncf.io/networks": ",".join(names)}}})
    stdin = json.dumps(base_conf(tmp_path)).encode()
    environ = env(CNI_ARGS="K8S_POD_NAMESPACE=pod-ns;K8S_POD_NAME=p;K8S_POD_UID=u1")
    status, _, out = respond(environ, stdin, kube_for=lambda _r: kube)
    assert status == 1 and "at most" not in json.loads(out)["msg"], out
    assert kube.nad_reads > 0, "the NADs are looked up: the count passed"


def test_the_schema_bounds_match_the_documented_constants():
    from importlib import resources

    from multinet.attach.conf import MAX_TIMEOUT_SECONDS
    text = resources.files("multinet.attach").joinpath("schemas/multinet-conf.json").read_text()
    props = json.loads(text)["properties"]
    assert props["parallelAttachments"]["maximum"] == MAX_ATTACHMENTS
    for key in TIMEOUT_KEYS:
        assert props[key]["maximum"] == MAX_TIMEOUT_SECONDS


@pytest.mark.parametrize("info", [
    {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:00:01.0\n"}},
    {"type": "pci", "version": "1.1.0\n", "pci": {"pci-address": "0000:00:01.0"}},
    {"type": "vdpa", "version": "1.1.0",
     "vdpa": {"parent-device": "v", "driver": "vhost", "path": "/d",
              "pf-pci-address": "0000:00:01.0\n"}},
])
def test_device_info_fields_with_a_trailing_newline_are_refused(info):
    from multinet.k8s.devinfo import validate_device_info
    validate_device_info({"type": "pci", "version": "1.1.0",
                          "pci": {"pci-address": "0000:00:01.0"}})
    refused(lambda: validate_device_info(info), DECODE_FAILURE)


@pytest.mark.parametrize("key", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS",
                                 "CNI_PATH"])
@pytest.mark.parametrize("bad", ["a\0b", "a\ud800"])
def test_env_values_a_process_environment_cannot_hold_are_refused(tmp_path, key, bad):
    # Only a daemon frame can carry these; a delegate could never be given them.
    value = "/" + bad if key == "CNI_NETNS" else bad
    stdin = json.dumps(base_conf(tmp_path)).encode()
    err = refused(lambda: request_from_env(env(**{key: value}), stdin), INVALID_ENV)
    assert key in err.msg
    code, reply = answer(env(**{key: value}), stdin)
    assert code == INVALID_ENV


@pytest.mark.parametrize("value", [5, True, [], {}, "garbage", None])
def test_the_shim_answers_version_in_a_version_it_speaks(value):
    from multinet import shim
    status, out = shim.run({"CNI_COMMAND": "VERSION"}, json.dumps({"cniVersion": value}).encode())
    assert status == 0 and json.loads(out)["cniVersion"] == versions.LATEST
    _, out = shim.run({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert json.loads(out)["cniVersion"] == "0.4.0"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_an_annotation_may_not_hand_a_non_finite_number_to_a_delegate(literal):
    value = '[{"name": "net-a", "cni-args": {"rate": %s}}]'.replace("%s", literal)
    err = refused(lambda: parse_networks_annotation(value, "pod-ns"), INVALID_CONFIG)
    assert "k8s.v1.cni.cncf.io/networks" in err.msg and literal in err.msg


@pytest.mark.parametrize(("text", "path"), [
    ('{"a": [1, {"b": NaN}]}', "a[1].b"),
    ("[Infinity]", "[0]"),
    ("-Infinity", "(top level)"),
    ('{"x": {"y": 1e400}}', "x.y"),
])
def test_strict_json_names_the_first_non_finite_number(text, path):
    from multinet.cni import strictjson
    err = refused(lambda: strictjson.loads(text, "thing", INVALID_CONFIG), INVALID_CONFIG)
    assert err.msg.startswith(f"thing: {path}: ")
    assert strictjson.loads('{"a": [1.5, -2e10, 0]}', "thing") == {"a": [1.5, -2e10, 0]}


def test_a_pod_whose_network_fails_gets_a_warning_event_naming_the_failure(tmp_path, pod):
    kube = FakeKube({"metadata": {"name": "p", "namespace": "pod-ns", "uid": "u1"}})
    failing = {**NET, "recordFile": str(tmp_path / "calls"), "failOn": ["ADD"],
               "failMsg": "no address left"}
    stdin = json.dumps(base_conf(tmp_path, delegates=[failing])).encode()
    environ = env(CNI_ARGS="K8S_POD_NAMESPACE=pod-ns;K8S_POD_NAME=p;K8S_POD_UID=u1",
                  CNI_NETNS=pod.path)
    status, _, out = respond(environ, stdin, kube_for=lambda _r: kube)
    assert status == 1 and "no address left" in json.loads(out)["msg"], out
    assert [r for r, m in kube.events if "no address left" in m] == ["NetworkAttachFailed"]
