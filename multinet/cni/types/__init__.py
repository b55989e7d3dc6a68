"""CNI results of every version, and conversion between them.

Results travel through multinet in one *canonical* form: a plain, JSON-able
dict shaped as a 1.1.0 result::

    {"cniVersion": "1.1.0", "interfaces": [...], "ips": [...], "routes": [...],
     "dns": {...}}            # "dns" only when it holds something

``interfaces``, ``ips`` and ``routes`` are always present in the canonical form
(possibly empty), so code working on it needs no ``.get``. Addresses are
normalised (``"2001:DB8::5/64"`` becomes ``"2001:db8::5/64"``).

Each result family has a module with ``VERSIONS``, ``to_canonical(raw)`` and
``from_canonical(canonical, version)``; `REGISTRY` maps every readable version
to its module, and `upgrade`/`convert` only look modules up there.

Output follows the Go types' ``omitempty``: no key holds None, and empty
optional fields (``gateway``, ``gw``, ``mac``, ``interfaces``, ``ips``,
``routes``, ...) are left out. One deliberate difference: Go always writes a
``dns`` object, even ``"dns": {}``; here an empty ``dns`` is left out in every
version, as the spec's examples do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from multinet.cni.errors import DECODE_FAILURE, INCOMPATIBLE_VERSION, CNIError
from multinet.cni.types import common, v020, v040, v100
from multinet.cni.version import READABLE_RESULT_VERSIONS

__all__ = [
    "CANONICAL_VERSION",
    "REGISTRY",
    "ResultFamily",
    "convert",
    "convert_any",
    "upgrade",
]

CANONICAL_VERSION = v100.CANONICAL_VERSION


class ResultFamily(Protocol):
    """What a result module offers to the registry."""

    VERSIONS: tuple[str, ...]

    def to_canonical(self, raw: Mapping[str, Any]) -> dict[str, Any]: ...

    def from_canonical(self, canonical: Mapping[str, Any], version: str) -> dict[str, Any]: ...


def _build_registry(*families: ResultFamily) -> dict[str, ResultFamily]:
    return {version: family for family in families for version in family.VERSIONS}


# Every version in READABLE_RESULT_VERSIONS, each to the module that reads and writes it.
REGISTRY: dict[str, ResultFamily] = _build_registry(v020, v040, v100)


def upgrade(raw: Mapping[str, Any] | None, default_version: str) -> dict[str, Any]:
    """Read a result of any version 0.1.0..1.1.0 into the canonical form.

    A result without a ``cniVersion`` (missing, null or "") is read as
    `default_version`, normally the version of the config that produced it, as
    libcni does; if that is empty too, the 0.x rule applies and it is 0.1.0.
    ``None`` and ``{}`` give an empty result. Raises ``CNIError``:
    DECODE_FAILURE for malformed content (the message names the field),
    INCOMPATIBLE_VERSION for a version this module cannot read.
    """
    if raw is None:
        raw = {}
    raw = common.as_mapping(raw, "(top level)")
    version = _result_version(raw, default_version)
    return {"cniVersion": CANONICAL_VERSION, **_family(version, "result").to_canonical(raw)}


def convert(canonical: Mapping[str, Any], to_version: str) -> dict[str, Any]:
    """Write a canonical result as a result of `to_version` (0.1.0..1.1.0).

    The input is checked again, so a hand-built canonical dict is safe to
    pass. Going down loses what the target cannot express (see the family
    modules); to 0.1.0/0.2.0 a result without any IP address raises
    ``CNIError(INCOMPATIBLE_VERSION)``. The output never shares lists or
    dicts with the input.
    """
    family = _family(to_version, "requested result")
    return family.from_canonical(_checked(canonical), to_version)


def convert_any(
    raw: Mapping[str, Any] | None, to_version: str, default_version: str
) -> dict[str, Any]:
    """`convert` (`upgrade` (raw, default_version), to_version)."""
    return convert(upgrade(raw, default_version), to_version)


def _result_version(raw: Mapping[str, Any], default_version: str) -> str:
    version = raw.get("cniVersion")
    if version is None or version == "":
        return default_version or v020.IMPLIED_VERSION
    return common.as_str(version, "cniVersion")


def _family(version: str, what: str) -> ResultFamily:
    family = REGISTRY.get(version) if isinstance(version, str) else None
    if family is None:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            f"{what}: cniVersion {version!r} is not supported",
            f"readable result versions: {', '.join(READABLE_RESULT_VERSIONS)}",
        )
    return family


def _checked(canonical: Mapping[str, Any]) -> dict[str, Any]:
    canonical = common.as_mapping(canonical, "(top level)")
    version = canonical.get("cniVersion", CANONICAL_VERSION)
    if version != CANONICAL_VERSION:
        raise CNIError(
            DECODE_FAILURE,
            f"expected a canonical ({CANONICAL_VERSION}) result, got cniVersion {version!r}",
            "read results of other versions with upgrade() or convert_any()",
        )
    return v100.to_canonical(canonical)
