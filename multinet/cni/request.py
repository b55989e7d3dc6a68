"""One CNI invocation as the runtime made it: the CNI_* environment and the stdin config."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from multinet.cni import strictjson
from multinet.cni.errors import DECODE_FAILURE, INVALID_CONFIG, INVALID_ENV, CNIError

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")

# Which variables each verb needs (CNI spec section 2, "Parameters").
_REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
    "VERSION": (),
}

# Runtimes make 64-character ids; the bound keeps every file name made from one (record,
# `<id>.lock`, device-info `<net>-<id>_<ifname>`) under NAME_MAX (255 bytes).
MAX_CONTAINER_ID_LENGTH = 128
# \Z, not $: `$` also matches before a trailing newline. Callers may use match or fullmatch.
CONTAINER_ID_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")
# Verbs whose CNI_NETNS names a namespace that must exist (DEL may come without one).
_NETNS_REQUIRED = ("ADD", "CHECK")
_IFNAME_FORBIDDEN = re.compile(r"[/:\s]")


def ifname_problem(name: str) -> str | None:
    """Why `name` cannot be a Linux interface name, or None if it can."""
    if not name:
        return "is empty"
    if len(name.encode("utf-8", "surrogateescape")) > 15:
        return "is longer than 15 bytes"
    if name in (".", ".."):
        return "may not be '.' or '..'"
    if _IFNAME_FORBIDDEN.search(name):
        return "may not contain '/', ':' or whitespace"
    return None


def parse_cni_args(raw: str) -> list[tuple[str, str]]:
    """Split CNI_ARGS ("K=V;K2=V2") into pairs; a malformed pair is an env error."""
    pairs: list[tuple[str, str]] = []
    for item in raw.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CNIError(INVALID_ENV, f"CNI_ARGS: invalid pair {item!r}", "expected K=V;K2=V2")
        pairs.append((key, value))
    return pairs


@dataclass(frozen=True)
class Request:
    """A parsed CNI request. `config` is the decoded stdin JSON object."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    path: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    raw_config: bytes = b""

    @property
    def cni_args(self) -> dict[str, str]:
        return dict(parse_cni_args(self.args))

    @property
    def cni_version(self) -> str:
        version = self.config.get("cniVersion", "")
        return version if isinstance(version, str) and version else "0.1.0"


def decode_config(stdin: bytes) -> dict[str, Any]:
    """Decode the stdin config; an empty stdin is an empty object (VERSION allows it)."""
    if not stdin.strip():
        return {}
    config = strictjson.loads(stdin, "stdin config", DECODE_FAILURE)
    if not isinstance(config, dict):
        raise CNIError(DECODE_FAILURE, "stdin config must be a JSON object")
    return config


_ENV_KEYS = ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")


def _env_value_problem(value: object) -> str | None:
    """Why `value` could not be a process environment value (a daemon frame can carry
    anything); None if it could. Invalid UTF-8 from a real environment arrives as
    surrogate escapes, which are kept."""
    if not isinstance(value, str):
        return "must be a string"
    try:
        raw = os.fsencode(value)
    except UnicodeError:
        return "is not encodable as an environment value"
    if b"\0" in raw:
        return "may not contain a NUL byte"
    return None


def request_from_env(env: Mapping[str, str], stdin: bytes) -> Request:
    """Build and validate a Request from a process environment and stdin."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CNIError(INVALID_ENV, "required env variables [CNI_COMMAND] missing")
    if command not in COMMANDS:
        raise CNIError(INVALID_ENV, f"unknown CNI_COMMAND: {command}")
    for name in _ENV_KEYS:
        problem = _env_value_problem(env.get(name, ""))
        if problem:
            raise CNIError(INVALID_ENV, f"{name} {problem}")
    missing = [name for name in _REQUIRED_ENV[command] if not env.get(name)]
    if missing:
        raise CNIError(INVALID_ENV, f"required env variables [{', '.join(missing)}] missing")
    config = decode_config(stdin)
    request = Request(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        args=env.get("CNI_ARGS", ""),
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
        config=config,
        raw_config=stdin,
    )
    validate_request(request)
    return request


def container_id_problem(container_id: str) -> str | None:
    """Why `container_id` is not a CNI container id we can name files after; None if it is."""
    if len(container_id) > MAX_CONTAINER_ID_LENGTH:
        return f"is {len(container_id)} characters long, at most {MAX_CONTAINER_ID_LENGTH}"
    if not CONTAINER_ID_RE.match(container_id):
        return "is invalid: it must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (CNI spec)"
    return None


def validate_request(request: Request) -> None:
    """Check identifiers the runtime handed us before anything uses them in a path."""
    if request.command in ("ADD", "DEL", "CHECK"):
        problem = container_id_problem(request.container_id)
        if problem:
            shown = request.container_id[:MAX_CONTAINER_ID_LENGTH + 8]
            raise CNIError(INVALID_ENV, f"CNI_CONTAINERID {shown!r} {problem}")
        problem = ifname_problem(request.ifname)
        if problem:
            raise CNIError(INVALID_ENV, f"CNI_IFNAME {request.ifname!r} {problem}")
        parse_cni_args(request.args)
    if request.command in _NETNS_REQUIRED and not os.path.isabs(request.netns):
        raise CNIError(INVALID_ENV, f"CNI_NETNS {request.netns!r} must be an absolute path",
                       "the path of the container's network namespace, e.g. /run/netns/NAME")
    if request.command != "VERSION" and not isinstance(request.config.get("cniVersion"), str):
        raise CNIError(INVALID_CONFIG, "config: cniVersion is required and must be a string")
