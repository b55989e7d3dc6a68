"""The resources the API server stand-in serves, and its error statuses."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

FieldLabels = Mapping[str, tuple[tuple[str, ...], str]]


@dataclass(frozen=True, eq=False)
class ResourceType:
    """One REST resource at one group/version."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    short_names: tuple[str, ...] = ()
    # Versions of one resource share a bucket (core and events.k8s.io Events).
    storage: str = ""
    status_subresource: bool = False
    # Served from a CustomResourceDefinition: no strategic merge patch, list items
    # carry kind/apiVersion, DELETE answers with a Status.
    custom: bool = False
    # DELETE answers with the object (pods) rather than a Success Status.
    return_deleted_object: bool = False
    field_labels: FieldLabels = field(default_factory=dict)
    # Conversion between this version and the stored (bucket) form.
    to_storage: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    from_storage: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def bucket(self) -> str:
        return self.storage or self.plural

    @property
    def qualified(self) -> str:
        """The resource as it appears in error messages: pods, x.group."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def to_api(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(dict(stored))
        if self.from_storage is not None:
            obj = self.from_storage(obj)
        return {"kind": self.kind, "apiVersion": self.api_version,
                **{k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}}

    def to_store(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        # Stored objects carry no kind/apiVersion: to_api adds those of the reader.
        obj = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("kind", "apiVersion")}
        if self.to_storage is not None:
            obj = self.to_storage(obj)
        return obj


# ---------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """An error the server answers with a v1 Status object."""

    def __init__(self, code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason,
        }
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _details(rtype: ResourceType, name: str, kind: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if rtype.group:
        details["group"] = rtype.group
    details["kind"] = kind or rtype.plural
    return details


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rtype.qualified} "{name}" not found',
                    _details(rtype, name))


def already_exists(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rtype.qualified} "{name}" already exists',
                    _details(rtype, name))


def conflict(rtype: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {rtype.qualified} "{name}": {why}',
                    _details(rtype, name))


STALE = ("the object has been modified; please apply your changes to the latest version and "
         "try again")


def invalid(rtype: ResourceType, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid; causes are (field, reason, message) as in a Go field.Error."""
    text = ", ".join(f"{f}: {m}" for f, _, m in causes)
    details = _details(rtype, name, kind=rtype.kind)
    details["causes"] = [{"reason": r, "message": m, "field": f} for f, r, m in causes]
    if len(causes) > 1:
        text = f"[{text}]"
    return ApiError(422, "Invalid", f'{rtype.kind} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


# ---------------------------------------------------------------------------
# Validation shared by every resource

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _key_errors(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        return "prefix part must be a lowercase RFC 1123 subdomain"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return "name part must consist of alphanumeric characters, '-', '_' or '.'"
    return None


def check_metadata_types(obj: Mapping[str, Any]) -> None:
    """Reject what the server's JSON decoder would (400): maps of non-strings."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise bad_request("Object 'metadata' is missing or not an object")
    for field_name in ("labels", "annotations"):
        value = meta.get(field_name)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise bad_request(
                f"json: cannot unmarshal into Go struct field ObjectMeta.metadata.{field_name}"
                " of type map[string]string"
            )


def validate(rtype: ResourceType, obj: Mapping[str, Any]) -> None:
    """The checks of the real server's validation that matter to clients (422)."""
    meta = obj["metadata"]
    name = meta.get("name", "")
    causes: list[tuple[str, str, str]] = []
    if not name:
        causes.append(("metadata.name", "FieldValueRequired",
                       "Required value: name or generateName is required"))
    elif len(name) > 253 or not _SUBDOMAIN.match(name):
        causes.append(("metadata.name", "FieldValueInvalid",
                       f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist'
                       " of lower case alphanumeric characters, '-' or '.'"))
    for key, value in (meta.get("labels") or {}).items():
        why = _key_errors(key)
        if why:
            causes.append(("metadata.labels", "FieldValueInvalid",
                           f'Invalid value: "{key}": {why}'))
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(("metadata.labels", "FieldValueInvalid",
                           f'Invalid value: "{value}": a valid label must be an empty string'
                           " or consist of alphanumeric characters, '-', '_' or '.'"))
    for key in meta.get("annotations") or {}:
        why = _key_errors(key)
        if why:
            causes.append(("metadata.annotations", "FieldValueInvalid",
                           f'Invalid value: "{key}": {why}'))
    if rtype.kind == "Pod" and rtype.group == "":
        containers = (obj.get("spec") or {}).get("containers")
        if not containers:
            causes.append(("spec.containers", "FieldValueRequired", "Required value"))
        else:
            for i, container in enumerate(containers):
                for required in ("name", "image"):
                    if not isinstance(container, dict) or not container.get(required):
                        causes.append((f"spec.containers[{i}].{required}",
                                       "FieldValueRequired", "Required value"))
    if causes:
        raise invalid(rtype, name, causes)


# Fields a pod update may change (the real server answers 422 for anything else).
_POD_MUTABLE_SPEC = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def check_pod_spec_update(rtype: ResourceType, old: Mapping[str, Any],
                          new: Mapping[str, Any]) -> None:
    def masked(spec: Any) -> Any:
        spec = copy.deepcopy(spec) if isinstance(spec, dict) else {}
        for key in _POD_MUTABLE_SPEC:
            spec.pop(key, None)
        for key in ("containers", "initContainers"):
            for container in spec.get(key) or []:
                if isinstance(container, dict):
                    container.pop("image", None)
        return spec

    if masked(old.get("spec")) != masked(new.get("spec")):
        name = new["metadata"]["name"]
        raise invalid(rtype, name, [(
            "spec", "FieldValueForbidden",
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
            "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations`"
            " (only additions to existing tolerations),`spec.terminationGracePeriodSeconds`",
        )])


# ---------------------------------------------------------------------------
# events.k8s.io/v1 <-> core/v1 Event: the same objects under renamed fields.

_CORE_TO_EVENTS = {
    "involvedObject": "regarding",
    "message": "note",
    "reportingComponent": "reportingController",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
}
_EVENTS_TO_CORE = {v: k for k, v in _CORE_TO_EVENTS.items()}


def _rename(table: Mapping[str, str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda obj: {table.get(k, k): v for k, v in obj.items()}


_META_LABELS: dict[str, tuple[tuple[str, ...], str]] = {
    "metadata.name": (("metadata", "name"), ""),
    "metadata.namespace": (("metadata", "namespace"), ""),
}

POD_FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    **_META_LABELS,
    "spec.nodeName": (("spec", "nodeName"), ""),
    "spec.restartPolicy": (("spec", "restartPolicy"), ""),
    "spec.schedulerName": (("spec", "schedulerName"), ""),
    "spec.serviceAccountName": (("spec", "serviceAccountName"), ""),
    "spec.hostNetwork": (("spec", "hostNetwork"), "false"),
    "status.phase": (("status", "phase"), ""),
    "status.podIP": (("status", "podIP"), ""),
    "status.nominatedNodeName": (("status", "nominatedNodeName"), ""),
}

EVENT_FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    **_META_LABELS,
    **{f"involvedObject.{f}": (("involvedObject", f), "")
       for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion",
                 "fieldPath")},
    "reason": (("reason",), ""),
    "reportingComponent": (("reportingComponent",), ""),
    "source": (("source", "component"), ""),
    "type": (("type",), ""),
}

PODS = ResourceType("", "v1", "pods", "Pod", "pod", ("po",), status_subresource=True,
                    return_deleted_object=True, field_labels=POD_FIELDS)
EVENTS = ResourceType("", "v1", "events", "Event", "event", ("ev",), field_labels=EVENT_FIELDS)
EVENTS_V1 = ResourceType("events.k8s.io", "v1", "events", "Event", "event", ("ev",),
                         storage="events", field_labels=EVENT_FIELDS,
                         to_storage=_rename(_EVENTS_TO_CORE),
                         from_storage=_rename(_CORE_TO_EVENTS))
NADS = ResourceType("k8s.cni.cncf.io", "v1", "network-attachment-definitions",
                    "NetworkAttachmentDefinition", "network-attachment-definition",
                    ("net-attach-def",), custom=True, field_labels=dict(_META_LABELS))

RESOURCES: tuple[ResourceType, ...] = (PODS, EVENTS, EVENTS_V1, NADS)


def find(group: str, version: str, plural: str) -> ResourceType | None:
    for rtype in RESOURCES:
        if (rtype.group, rtype.version, rtype.plural) == (group, version, plural):
            return rtype
    return None


def by_name(name: str) -> ResourceType:
    """Resolve "Pod", "pods", "po", "NetworkAttachmentDefinition", "net-attach-def"..."""
    wanted = name.lower()
    for rtype in RESOURCES:  # core versions come first, so "Event" is core/v1
        if wanted in (rtype.kind.lower(), rtype.plural, rtype.singular, *rtype.short_names):
            return rtype
    raise KeyError(f"unknown resource {name!r}")


def by_api_version(api_version: str, kind: str) -> ResourceType:
    for rtype in RESOURCES:
        if (rtype.api_version, rtype.kind) == (api_version, kind):
            return rtype
    raise KeyError(f"unknown kind {api_version}/{kind}")
