"""URL routing and discovery documents of the API server stand-in."""

from __future__ import annotations

import base64
import json
from typing import Any, NamedTuple

from multinet.testing.resources import RESOURCES, ApiError, ResourceType, bad_request, find

VERSION_INFO = {
    "major": "1", "minor": "31", "gitVersion": "v1.31.0-multinet", "gitCommit": "",
    "gitTreeState": "clean", "buildDate": "2024-08-13T00:00:00Z", "goVersion": "go1.22.5",
    "compiler": "gc", "platform": "linux/amd64",
}
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class Route(NamedTuple):
    """A request path resolved to a resource."""

    rtype: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    watch: bool


def not_found_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed",
                    "the server does not allow this method on the requested resource", {})


def parse_route(segs: list[str]) -> Route:
    """/api/v1/... or /apis/GROUP/VERSION/... to a resource route (404 otherwise)."""
    if segs[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", segs[2:]
    elif len(segs) >= 3 and segs[0] == "apis":
        group, version, rest = segs[1], segs[2], segs[3:]
    else:
        raise not_found_path()
    watch = bool(rest) and rest[0] == "watch"  # the legacy /watch/ path prefix
    if watch:
        rest = rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise not_found_path()
    rtype = find(group, version, rest[0])
    if rtype is None:
        raise not_found_path()
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if name is not None and namespace is None:
        raise not_found_path()  # every served resource is namespaced
    if sub is not None and not (sub == "status" and rtype.status_subresource):
        raise not_found_path()
    return Route(rtype, namespace, name, sub, watch)


def discovery(segs: list[str], address: str) -> dict[str, Any] | None:
    groups: dict[str, list[ResourceType]] = {}
    for rtype in RESOURCES:
        groups.setdefault(rtype.group, []).append(rtype)

    def group_doc(group: str) -> dict[str, Any]:
        gv = {"groupVersion": f"{group}/v1", "version": "v1"}
        return {"name": group, "versions": [gv], "preferredVersion": gv}

    def resource_list(group: str, version: str) -> dict[str, Any] | None:
        members = [r for r in groups.get(group, []) if r.version == version]
        if not members:
            return None
        resources = []
        for r in members:
            resources.append({"name": r.plural, "singularName": r.singular, "namespaced": True,
                              "kind": r.kind, "verbs": VERBS, "shortNames": list(r.short_names)})
            if r.status_subresource:
                resources.append({"name": f"{r.plural}/status", "singularName": "",
                                  "namespaced": True, "kind": r.kind,
                                  "verbs": ["get", "patch", "update"]})
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": resources}

    named = sorted(g for g in groups if g)
    if segs == []:
        paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]
        paths += [f"/apis/{g}" for g in named] + [f"/apis/{g}/v1" for g in named]
        return {"paths": sorted(paths)}
    if segs == ["version"]:
        return dict(VERSION_INFO)
    if segs == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}
    if segs == ["api", "v1"]:
        return resource_list("", "v1")
    if segs == ["apis"]:
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [group_doc(g) for g in named]}
    if len(segs) == 2 and segs[0] == "apis" and segs[1] in named:
        return {"kind": "APIGroup", "apiVersion": "v1", **group_doc(segs[1])}
    if len(segs) == 3 and segs[0] == "apis" and segs[1] in named:
        return resource_list(segs[1], segs[2])
    return None


def encode_continue(namespace: str, name: str, rv: int) -> str:
    raw = json.dumps({"rv": rv, "start": [namespace, name]}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_continue(token: str) -> tuple[str, str]:
    try:
        start = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
        return str(start[0]), str(start[1])
    except (ValueError, KeyError, IndexError, TypeError):
        raise bad_request("continue key is not valid: illegal base64 data") from None
