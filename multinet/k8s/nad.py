"""NetworkAttachmentDefinition objects and the delegate config each one stands for.

Rules from the NPWG multi-net spec section 3.4: a non-empty `spec.config` is used as
is (a single config or a conflist); an empty or missing one names a network that is
looked up on disk by its JSON `name`. A config without a `name` gets the NAD's name;
a different non-empty name is kept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from multinet.cni import strictjson
from multinet.cni.confdir import find_network_config
from multinet.cni.errors import INVALID_CONFIG, CNIError

RESOURCE_NAME_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"


@dataclass(frozen=True)
class NetworkAttachmentDefinition:
    namespace: str
    name: str
    # spec.config parsed, or None when it is empty, missing or not a JSON object.
    config: dict[str, Any] | None
    resource_name: str | None
    uid: str = ""
    resource_version: str = ""
    # spec.config as written; kept so that a broken config is reported when a pod uses
    # the NAD rather than when the object is read.
    config_text: str = field(default="", repr=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> NetworkAttachmentDefinition:
        """Build from an API object dict (camelCase keys, as the API serves them)."""
        if not isinstance(obj, dict):
            raise CNIError(INVALID_CONFIG, "NetworkAttachmentDefinition is not a JSON object")
        meta = _part(obj, "metadata", "NetworkAttachmentDefinition")
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise CNIError(INVALID_CONFIG, "NetworkAttachmentDefinition without metadata.name")
        namespace = _text(meta.get("namespace"))
        where = f"NetworkAttachmentDefinition {namespace}/{name}"
        annotations = _part(meta, "annotations", f"{where}: metadata")
        text = _part(obj, "spec", where).get("config") or ""
        if not isinstance(text, str):
            text = ""
        resource_name = annotations.get(RESOURCE_NAME_ANNOTATION)
        return cls(
            namespace=namespace,
            name=name,
            config=_parse_or_none(text),
            resource_name=resource_name if isinstance(resource_name, str) and resource_name
            else None,
            uid=_text(meta.get("uid")),
            resource_version=_text(meta.get("resourceVersion") or meta.get("resource_version")),
            config_text=text,
        )


def _part(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """obj[key] as an object; absent or null is empty. The API never serves another type,
    so anything else is refused rather than guessed at."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CNIError(INVALID_CONFIG, f"{where}.{key} must be an object, got {value!r:.60}")
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _parse_or_none(text: str) -> dict[str, Any] | None:
    try:
        conf = strictjson.loads(text, "spec.config") if text.strip() else None
    except CNIError:
        return None
    return conf if isinstance(conf, dict) else None


def nad_cni_config(nad: NetworkAttachmentDefinition, conf_dir: str) -> dict[str, Any]:
    """The delegate config for `nad`: a fresh dict the caller may change."""
    if not nad.config_text.strip() and nad.config is None:
        try:
            return find_network_config(conf_dir, nad.name)
        except CNIError as err:
            raise CNIError(err.code, f"NetworkAttachmentDefinition {nad.key} has no "
                           f"spec.config, and {err.msg}", err.details) from None
    conf = _spec_config(nad)
    name = conf.get("name")
    if name is None or name == "":
        conf["name"] = nad.name
    elif not isinstance(name, str):
        raise CNIError(
            INVALID_CONFIG,
            f"NetworkAttachmentDefinition {nad.key}: spec.config name must be a string",
        )
    if "type" not in conf and "plugins" not in conf:
        raise CNIError(
            INVALID_CONFIG,
            f'NetworkAttachmentDefinition {nad.key}: spec.config has neither "type" nor "plugins"',
        )
    return conf


def _spec_config(nad: NetworkAttachmentDefinition) -> dict[str, Any]:
    if nad.config is not None:
        return copy.deepcopy(nad.config)
    conf = strictjson.loads(nad.config_text, f"NetworkAttachmentDefinition {nad.key}: "
                            "spec.config", INVALID_CONFIG)
    if not isinstance(conf, dict):
        raise CNIError(
            INVALID_CONFIG,
            f"NetworkAttachmentDefinition {nad.key}: spec.config is not a JSON object",
        )
    return conf

