"""CNI spec versions: which we speak and how they compare."""

from __future__ import annotations

from multinet.cni.errors import INCOMPATIBLE_VERSION, CNIError

# What multinet accepts as its own config version and answers to VERSION.
# Every spec version, as libcni's version.All and Multus accept them (CNI-VER-1).
SUPPORTED_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0",
                                       "1.1.0")
# Results of these versions are understood when a delegate returns them.
READABLE_RESULT_VERSIONS: tuple[str, ...] = SUPPORTED_VERSIONS
LATEST = "1.1.0"


def parse(version: str) -> tuple[int, int, int]:
    """Turn "1.0.0" into (1, 0, 0); raise a CNI error for anything else."""
    parts = version.split(".") if isinstance(version, str) else []
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise CNIError(INCOMPATIBLE_VERSION, f"invalid cniVersion {version!r}")
    major, minor, patch = (int(p) for p in parts)
    return major, minor, patch


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


def require_supported(version: str, what: str = "config") -> None:
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            f"{what}: cniVersion {version!r} is not supported",
            f"supported versions: {', '.join(SUPPORTED_VERSIONS)}",
        )
