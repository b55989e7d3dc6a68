"""CNI error codes and the error type every layer raises."""

from __future__ import annotations

import json
from typing import Any

# Codes defined by the CNI spec (section "Error").
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
STATUS_UNAVAILABLE = 50
STATUS_UNAVAILABLE_DISRUPTING = 51

# multinet's own codes (100 and up).
DELEGATE_FAILED = 100
INTERNAL = 101
ROUTE_FAILED = 102
K8S_FAILED = 104
ALREADY_ADDED = 105  # an ADD for a container that already has attachments


class CNIError(Exception):
    """A failure that reaches the runtime as CNI error JSON."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def to_json(self, cni_version: str) -> str:
        return json.dumps(self.to_dict(cni_version))

    def __repr__(self) -> str:
        return f"CNIError(code={self.code}, msg={self.msg!r}, details={self.details!r})"
