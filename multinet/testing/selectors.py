"""Label and field selectors as the Kubernetes API server parses them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

LabelMatcher = Callable[[Mapping[str, str]], bool]
ObjectMatcher = Callable[[Mapping[str, Any]], bool]


class SelectorError(ValueError):
    """A selector the API server would answer with 400 BadRequest."""


_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")
_EQ_RE = re.compile(rf"^({_KEY})\s*(==|!=|=)\s*({_VALUE})$")
_CMP_RE = re.compile(rf"^({_KEY})\s*([<>])\s*(-?\d+)$")
_EXISTS_RE = re.compile(rf"^(!?)\s*({_KEY})$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside an ``in (...)`` value list."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unable to parse requirement: unbalanced ')' in {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise SelectorError(f"unable to parse requirement: unbalanced '(' in {text!r}")
    parts.append("".join(current))
    return parts


def _requirement(text: str) -> LabelMatcher:
    m = _SET_RE.match(text)
    if m:
        key, op = m.group(1), m.group(2)
        values = {v.strip() for v in m.group(3).split(",")}
        if any(not _VALUE_RE.match(v) for v in values):
            raise SelectorError(f"unable to parse requirement: invalid value in {text!r}")
        if op == "in":
            return lambda labels: key in labels and labels[key] in values
        # notin also matches objects that lack the key, as on the real server.
        return lambda labels: labels.get(key) not in values
    m = _EQ_RE.match(text)
    if m:
        key, op, value = m.group(1), m.group(2), m.group(3)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    m = _CMP_RE.match(text)
    if m:
        key, op, bound = m.group(1), m.group(2), int(m.group(3))

        def compare(labels: Mapping[str, str]) -> bool:
            try:
                number = int(labels[key])
            except (KeyError, ValueError):
                return False
            return number > bound if op == ">" else number < bound

        return compare
    m = _EXISTS_RE.match(text)
    if m:
        negate, key = m.group(1) == "!", m.group(2)
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise SelectorError(f"unable to parse requirement: {text!r}")


def parse_label_selector(text: str | None) -> LabelMatcher:
    """Compile a label selector (=, ==, !=, in, notin, exists, !exists, <, >).

    Requirements are ANDed; an empty selector matches everything.
    """
    if not text or not text.strip():
        return lambda labels: True
    requirements = []
    for part in _split_top_level(text):
        part = part.strip()
        if not part:
            raise SelectorError(f"unable to parse requirement: empty requirement in {text!r}")
        requirements.append(_requirement(part))
    return lambda labels: all(req(labels) for req in requirements)


def _split_escaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` unless it is escaped with a backslash (kept escaped)."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _field_requirement(text: str) -> tuple[str, str, str]:
    # Find the first unescaped operator; "!=" and "==" before "=".
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        for op in ("!=", "==", "="):
            if text.startswith(op, i):
                field = text[:i].strip()
                value = _unescape(text[i + len(op) :].strip())
                return field, "!=" if op == "!=" else "=", value
        i += 1
    raise SelectorError(f"invalid selector: '{text}'; can't understand '{text}'")


def field_value(obj: Mapping[str, Any], path: tuple[str, ...], default: str = "") -> str:
    """The string form of a field, as the field selector compares it."""
    value: Any = obj
    for part in path:
        if not isinstance(value, Mapping):
            return default
        value = value.get(part)
    if value is None:
        return default
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(
    text: str | None, labels: Mapping[str, tuple[tuple[str, ...], str]]
) -> ObjectMatcher:
    """Compile a field selector against the field labels a resource supports.

    ``labels`` maps a field label to (path into the object, value when absent).
    """
    if not text or not text.strip():
        return lambda obj: True
    requirements: list[tuple[tuple[str, ...], str, str, str]] = []
    for part in _split_escaped(text, ","):
        part = part.strip()
        if not part:
            continue
        field, op, value = _field_requirement(part)
        if field not in labels:
            raise SelectorError(f'field label not supported: {field}')
        path, default = labels[field]
        requirements.append((path, default, op, value))

    def match(obj: Mapping[str, Any]) -> bool:
        for path, default, op, value in requirements:
            actual = field_value(obj, path, default)
            if (actual == value) != (op == "="):
                return False
        return True

    return match
