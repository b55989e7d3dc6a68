"""multinetctl validate FILE...: check configs before they reach a node.

Each file is told apart by its content: a NetworkAttachmentDefinition (YAML or JSON,
several documents allowed), a multinet config (`"type": "multinet"`), any other CNI
config or conflist, or the daemon's config. One line per problem on stdout,
`FILE[:document N]: network NAME: field PATH: problem`; a file with none gets one
`FILE: ok: ...` line. Exit 0 when every file is good, 1 when any has a problem, 2 when
a file cannot be read at all (or the daemon config given with --config cannot).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import stat
import sys
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import yaml

from multinet.attach.conf import field_path, load_conf
from multinet.cli.ctl import options
from multinet.cli.ctl.netcheck import Report, check_network
from multinet.cni import strictjson
from multinet.cni import version as versions
from multinet.cni.errors import CNIError
from multinet.daemon.config import DAEMON_KEYS, MULTUS_ONLY_KEYS, ConfigError, parse_config
from multinet.k8s.nad import RESOURCE_NAME_ANNOTATION, NetworkAttachmentDefinition
from multinet.k8s.selection import is_dns1123_label

NAD_KIND = "NetworkAttachmentDefinition"
NAD_API_VERSION = "k8s.cni.cncf.io/v1"
JSON_SUFFIXES = (".json", ".conf", ".conflist")
# Keys that say "daemon config" when a file has no type, plugins or kind.
_DAEMON_HINTS = DAEMON_KEYS | MULTUS_ONLY_KEYS | {"cniDir", "binDir", "confDir", "kubeconfig"}
# A device plugin's resource: vendor domain (a DNS-1123 subdomain) / name (as in
# Kubernetes' qualified names), e.g. intel.com/sriov_netdevice.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_RESOURCE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")


class Unreadable(Exception):
    """The file cannot be read at all."""


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "validate", help="check NADs, CNI configs, multinet and daemon configs",
        description="Check each FILE: schema, plugins present in the bin dirs, the "
                    "cniVersion each plugin speaks, capabilities, resourceName. One line "
                    "per problem; exit 1 if any, 2 if a file cannot be read.")
    cmd.add_argument("files", nargs="+", metavar="FILE")
    options.add_common(cmd)
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        node = options.settings(args)
    except options.OptionError as err:
        return options.fail("validate", err)
    worst = 0
    for path in args.files:
        try:
            reports, summary = check_file(path, node.bin_dirs, bool(args.bin_dir))
        except Unreadable as err:
            print(f"multinetctl validate: {path}: {err}", file=sys.stderr)
            worst = 2
            continue
        problems = [p for r in reports for p in r.problems]
        for problem in problems:
            print(problem.line())
        if problems:
            worst = max(worst, 1)
        else:
            print(f"{path}: ok: {summary}")
    sys.stdout.flush()
    return worst


# -- reading -------------------------------------------------------------------------------

def _read(path: str) -> str:
    """The file's text; never follows a symlink, never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        reason = "it is a symlink" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
        raise Unreadable(f"cannot read: {reason}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Unreadable("cannot read: not a regular file")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read()
        except OSError as exc:
            raise Unreadable(f"cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise Unreadable(f"cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})") \
            from None


def _json_problem(err: CNIError, what: str) -> str:
    """strictjson's message without the name it was given for the text."""
    return err.msg.removeprefix(f"{what} is not valid JSON: ").removeprefix(f"{what}: ")


def documents(path: str, text: str) -> tuple[list[Any], str]:
    """The documents of the file, or ([], why it cannot be parsed)."""
    try:
        return _unlisted([strictjson.loads(text, "file")]), ""
    except CNIError as err:
        json_problem = _json_problem(err, "file")
    if path.endswith(JSON_SUFFIXES) or text.lstrip().startswith(("{", "[")):
        return [], f"not valid JSON: {json_problem}"
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc)
        return [], f"not valid YAML: {what}{where}"
    if not docs:
        return [], "no document in the file"
    return _unlisted(docs), ""


def _unlisted(docs: list[Any]) -> list[Any]:
    """The items of a `kind: List` (what `kubectl get -o yaml` prints) as documents."""
    out = []
    for doc in docs:
        kind = doc.get("kind") if isinstance(doc, Mapping) else None
        if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
            out += doc["items"]
        else:
            out.append(doc)
    return out


def check_file(path: str, bin_dirs: tuple[str, ...], bins_chosen: bool
               ) -> tuple[list[Report], str]:
    """The reports of each document of `path`, and a summary of what it holds."""
    docs, problem = documents(path, _read(path))
    if problem:
        report = Report(path)
        report.add(problem)
        return [report], ""
    reports, kinds = [], []
    for number, doc in enumerate(docs, 1):
        where = f"{path}:document {number}" if len(docs) > 1 else path
        report = Report(where)
        kinds.append(check_document(doc, report, bin_dirs, bins_chosen))
        reports.append(report)
    return reports, ", ".join(kinds)


def check_document(doc: Any, report: Report, bin_dirs: tuple[str, ...],
                   bins_chosen: bool) -> str:
    """Check one document, whatever it is; returns what it was found to be."""
    if not isinstance(doc, Mapping):
        report.add(f"expected an object, got {type(doc).__name__}")
        return "?"
    if "kind" in doc or "apiVersion" in doc:
        return check_nad(doc, report, bin_dirs)
    if doc.get("type") == "multinet":
        return check_multinet(doc, report, bin_dirs, bins_chosen)
    if "type" in doc or "plugins" in doc:
        check_network(doc, report, bin_dirs)
        name = doc.get("name")
        return f"CNI {'conflist' if 'plugins' in doc else 'config'} {name}"
    if doc and set(doc) & _DAEMON_HINTS:
        return check_daemon(doc, report)
    report.add("cannot tell what this is: not a NetworkAttachmentDefinition (kind), a CNI "
               "config (type or plugins) or a daemon config")
    return "?"


# -- the kinds -----------------------------------------------------------------------------

def _resource_name_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"must be a non-empty string, got {value!r}"
    domain, slash, name = value.partition("/")
    if not slash or "/" in name:
        return f"{value!r} must be one vendor domain and one name: like intel.com/sriov"
    if len(domain) > 253 or not _SUBDOMAIN.match(domain):
        return f"{value!r}: {domain!r} is not a DNS-1123 subdomain"
    if len(name) > 63 or not _RESOURCE.match(name):
        return (f"{value!r}: {name!r} must be 63 characters or fewer, alphanumeric at both "
                "ends, '-', '_' or '.' between")
    return None


def check_nad(doc: Mapping[str, Any], report: Report, bin_dirs: tuple[str, ...]) -> str:
    kind = doc.get("kind")
    meta = doc.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name, namespace = meta.get("name"), meta.get("namespace")
    label = (f"{namespace}/{name}" if isinstance(namespace, str) and namespace else
             name if isinstance(name, str) else "")
    if kind != NAD_KIND:
        report.add(f"kind {kind!r} is not {NAD_KIND}", label, "kind")
        return f"{kind}"
    if doc.get("apiVersion") != NAD_API_VERSION:
        report.add(f"{doc.get('apiVersion')!r} is not {NAD_API_VERSION}", label, "apiVersion")
    if "metadata" in doc and not isinstance(doc["metadata"], Mapping):
        report.add("must be an object", label, "metadata")
    if not isinstance(name, str) or not is_dns1123_label(name):
        report.add(f"{name!r} is not a DNS-1123 label (lower case alphanumerics and '-', "
                   "at most 63): pods could not name it", label, "metadata.name")
    if namespace is not None and (not isinstance(namespace, str)
                                  or not is_dns1123_label(namespace)):
        report.add(f"{namespace!r} is not a DNS-1123 label", label, "metadata.namespace")
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        report.add("must be an object", label, "metadata.annotations")
        annotations = {}
    if RESOURCE_NAME_ANNOTATION in annotations:
        problem = _resource_name_problem(annotations[RESOURCE_NAME_ANNOTATION])
        if problem:
            report.add(problem, label, f"metadata.annotations[{RESOURCE_NAME_ANNOTATION}]")
    spec = doc.get("spec") or {}
    if not isinstance(spec, Mapping):
        report.add("must be an object", label, "spec")
        return f"{NAD_KIND} {label}"
    text = spec.get("config")
    if text is None or (isinstance(text, str) and not text.strip()):
        # Allowed (NPWG 3.4): the network is the file of that name in confDir.
        return f"{NAD_KIND} {label} (no spec.config: a file named {name} in confDir)"
    if not isinstance(text, str):
        report.add("must be a string holding JSON", label, "spec.config")
        return f"{NAD_KIND} {label}"
    try:
        config = strictjson.loads(text, "spec.config")
    except CNIError as err:
        report.add(f"not valid JSON: {_json_problem(err, 'spec.config')}", label,
                   "spec.config")
        return f"{NAD_KIND} {label}"
    before = len(report.problems)
    check_network(config, report, bin_dirs, "spec.config.",
                  default_name=name if isinstance(name, str) else "", label=label)
    if len(report.problems) == before:
        try:  # the engine's reading of the object, for parity
            NetworkAttachmentDefinition.from_object(json.loads(json.dumps(doc, default=str)))
        except CNIError as err:
            report.add(err.msg, label)
    return f"{NAD_KIND} {label}"


@cache
def _multinet_schema() -> jsonschema.Draft202012Validator:
    text = resources.files("multinet.attach").joinpath("schemas/multinet-conf.json").read_text()
    return jsonschema.Draft202012Validator(json.loads(text))


def check_multinet(doc: Mapping[str, Any], report: Report, bin_dirs: tuple[str, ...],
                   bins_chosen: bool) -> str:
    name = doc.get("name") if isinstance(doc.get("name"), str) else ""
    before = len(report.problems)
    for error in sorted(_multinet_schema().iter_errors(doc), key=lambda e: list(e.path)):
        report.add(error.message, name, field_path(error.absolute_path))
    version = doc.get("cniVersion")
    if isinstance(version, str) and version not in versions.SUPPORTED_VERSIONS:
        report.add(f"{version!r} is not one multinet speaks "
                   f"({', '.join(versions.SUPPORTED_VERSIONS)})", name, "cniVersion")
    dirs = bin_dirs
    if not bins_chosen and isinstance(doc.get("binDir"), str) and doc["binDir"]:
        dirs = tuple(dict.fromkeys((doc["binDir"], *bin_dirs)))
    delegates = doc.get("delegates")
    for index, delegate in enumerate(delegates if isinstance(delegates, list) else []):
        if isinstance(delegate, Mapping):  # the schema has said it of anything else
            check_network(delegate, report, dirs, f"delegates[{index}].")
    if len(report.problems) == before:
        try:
            load_conf(doc)
        except CNIError as err:
            report.add(err.msg, name)
    count = len(delegates) if isinstance(delegates, list) else 0
    return f"multinet config {name} ({count} delegate{'s' if count != 1 else ''})"


def check_daemon(doc: Mapping[str, Any], report: Report) -> str:
    try:
        parse_config(doc, environ={})
    except ConfigError as err:
        message = str(err)
        key, sep, rest = message.partition(": ")
        if sep and (key in doc or key.startswith("multinet config")):
            report.add(rest, "", key if key in doc else "")
        else:
            report.add(message)
    return "daemon config"
