"""JSON as RFC 8259 defines it: no NaN, no Infinity, no number too large for a float.

Python's json module reads `NaN`, `Infinity` and `1e400` (as inf) without a word;
a timeout of NaN then never expires and a Go delegate cannot read the config it is
handed. Every config multinet reads (stdin, conf files, NADs, the daemon's file) goes
through `loads`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from multinet.cni.errors import DECODE_FAILURE, CNIError


class _NonFinite(float):
    """A number JSON cannot carry, kept as a marker until its path is known."""

    def __new__(cls, text: str) -> _NonFinite:
        value = super().__new__(cls, float(text))
        value.text = text
        return value

    text: str


def render_path(path: list[str | int]) -> str:
    """`["delegates", 0, "mtu"]` as `delegates[0].mtu`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def non_finite_path(value: Any) -> tuple[str, str] | None:
    """(path, value) of the first NaN or infinite number inside `value`, or None.

    Iterative, so a deeply nested document cannot exhaust the stack here.
    """
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return render_path(path), getattr(item, "text", repr(item))
        if isinstance(item, Mapping):
            stack.extend((v, [*path, str(k)]) for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, [*path, i]) for i, v in reversed(list(enumerate(item))))
    return None


def loads(data: bytes | str, what: str, code: int = DECODE_FAILURE) -> Any:
    """Decode `data` or raise CNIError(code) naming `what` and, for a bad number, its field."""
    seen: list[str] = []

    def constant(text: str) -> float:
        seen.append(text)
        return _NonFinite(text)

    def number(text: str) -> float:
        value = float(text)
        if math.isfinite(value):
            return value
        seen.append(text)
        return _NonFinite(text)

    try:
        value = json.loads(data, parse_constant=constant, parse_float=number)
    except (ValueError, RecursionError) as exc:
        raise CNIError(code, f"{what} is not valid JSON: {exc}") from None
    found = non_finite_path(value) if seen else None  # walk only when there is one to name
    if found is not None:
        path, text = found
        raise CNIError(code, f"{what}: {path}: {text} is not a finite number",
                       "JSON numbers are finite (RFC 8259 section 6)")
    return value
