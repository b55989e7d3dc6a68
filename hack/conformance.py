#!/usr/bin/env python3
"""The spec-conformance table: which test shows each checklist item.

The checklist's ids, levels and one-line summaries live in the repository as
docs/conformance-items.yaml (imported once from the checklist with `--import PATH`,
so a clean checkout needs nothing outside the tree). Tests name the items they show
in their docstrings ("Checklist: NPWG-3.2-a."); this script finds them with `ast`
(test functions and methods only: a module docstring names no single test) and
writes docs/conformance.md.

    hack/conformance.py                     # rewrite docs/conformance.md
    hack/conformance.py --check             # exit 1 listing MUST/SHOULD items with no test
    hack/conformance.py --import ../shared/reference/spec-checklist.md
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ITEMS = ROOT / "docs" / "conformance-items.yaml"
TABLE = ROOT / "docs" / "conformance.md"
TESTS = ROOT / "tests"

# `- ID LEVEL: requirement (§x) — test: idea`; LEVEL may be absent (TOOL-*, H-*).
_ITEM_LINE = re.compile(
    r"^- (?P<id>[A-Z]+(?:-[A-Za-z0-9.]+)+?)"
    r"(?: (?P<level>MUST NOT|SHOULD NOT|MUST|SHOULD|MAY)(?P<note> \([^)]*\))?)?: (?P<text>.*)$")
# Anything shaped like an item id, in a docstring or a name.
_ID_TOKEN = re.compile(r"(?<![\w.-])(?:NPWG|DI|CNI|CONV|LIB|TOOL|H)-[A-Za-z0-9.-]*[A-Za-z0-9]")
_PROJECT_LEVEL = re.compile(r"project: (MUST|SHOULD)")
REQUIRED_LEVELS = ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT")


@dataclass
class Item:
    id: str
    level: str
    section: str
    summary: str

    @property
    def required(self) -> bool:
        return self.level.split(" (")[0] in REQUIRED_LEVELS or "project: " in self.level


@dataclass
class Catalogue:
    items: list[Item]
    deviations: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> set[str]:
        return {i.id for i in self.items}


def _summary(text: str) -> str:
    """The requirement up to its section reference or its test idea, on one line."""
    text = text.split(" — test:")[0]
    text = re.sub(r"\s*\(§[^)]*\)", "", text).strip()
    text = text.replace("|", "/")
    first = re.split(r"(?<=[a-z0-9)`])(?<!e\.g)(?<!i\.e)\. ", text, maxsplit=1)[0].rstrip(".")
    return first if len(first) <= 160 else first[:157].rstrip() + "..."


def parse_checklist(text: str) -> list[Item]:
    """Every item line of the checklist markdown, in order."""
    items, section = [], ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
            continue
        m = _ITEM_LINE.match(line)
        if not m:
            continue
        level = m["level"] or "NOTE"
        project = _PROJECT_LEVEL.search(m["note"] or "")
        if project:
            level = f"{level} (project: {project[1]})"
        elif "de-facto" in (m["note"] or ""):
            level = f"{level} (de-facto)"
        items.append(Item(m["id"], level, section, _summary(m["text"])))
    return items


def load(path: Path = ITEMS) -> Catalogue:
    data = yaml.safe_load(path.read_text())
    return Catalogue([Item(**i) for i in data["items"]],
                     data.get("deviations") or {}, data.get("pending") or {})


def dump(cat: Catalogue, path: Path = ITEMS) -> None:
    head = ("# Spec-conformance items, imported from the project's checklist by\n"
            "# `hack/conformance.py --import PATH`. `items` is generated; `deviations`\n"
            "# (id: the key that changes the behaviour) and `pending` (id: why no test\n"
            "# yet) are kept by hand and survive a re-import.\n")
    body = {"items": [vars(i) for i in cat.items],
            "deviations": cat.deviations, "pending": cat.pending}
    path.write_text(head + yaml.safe_dump(body, sort_keys=False, width=200,
                                          allow_unicode=True))


def _ids_in(text: str, known: set[str]) -> tuple[set[str], set[str]]:
    found = {t.rstrip(".-") for t in _ID_TOKEN.findall(text)}
    return found & known, {f for f in found - known if any(c.isdigit() for c in f)}


def _name_ids(name: str, known: set[str]) -> set[str]:
    """Ids spelt into a test's name: NPWG-7.3-a as test_npwg_7_3_a_..."""
    norm = "_" + name.lower() + "_"
    return {i for i in known if "_" + re.sub(r"[^a-z0-9]", "_", i.lower()) + "_" in norm}


def scan(known: set[str], tests: Path = TESTS) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Checklist id -> the tests naming it (path::name); unknown id -> where it appears."""
    found: dict[str, list[str]] = {}
    unknown: dict[str, str] = {}
    for path in sorted(tests.rglob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(tests.parent).as_posix()
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if not node.name.startswith("test"):
                continue
            ids, bad = _ids_in(ast.get_docstring(node) or "", known)
            ids |= _name_ids(node.name, known)
            where = f"{rel}::{node.name}"
            for i in ids:
                found.setdefault(i, []).append(where)
            for b in bad:
                unknown.setdefault(b, where)
    return found, unknown


def missing(cat: Catalogue, found: dict[str, list[str]]) -> list[Item]:
    """Required items with no test and not declared pending."""
    return [i for i in cat.items if i.required and i.id not in found and i.id not in cat.pending]


def _in_order(cat: Catalogue, keys: dict[str, str]) -> list[str]:
    return [i.id for i in cat.items if i.id in keys]


def render(cat: Catalogue, found: dict[str, list[str]]) -> str:
    required = [i for i in cat.items if i.required]
    shown = sum(1 for i in required if i.id in found)
    out = [
        "# Spec conformance",
        "",
        "<!-- Generated by hack/conformance.py from docs/conformance-items.yaml and the",
        "     docstrings under tests/. Do not edit by hand: run `python hack/conformance.py`. -->",
        "",
        "Each item of the project's conformance checklist (NPWG multi-network spec v1.3, "
        "device-info spec v1.1.0, CNI spec 1.1.0 and its conventions, and the libcni "
        "behaviours a runtime relies on), the test that shows it, and, where multinet's "
        "default departs from the text or can be made to, the configuration key that "
        "changes it. A test names the items it shows in its docstring "
        "(`grep -r NPWG-7.3-a tests/`). Items of level NOTE (H-*, TOOL-*) are the "
        "checklist's decision points and test-driver notes; they need no test.",
        "",
        f"{shown} of {len(required)} MUST/SHOULD items have a test; "
        f"{sum(1 for i in required if i.id in cat.pending)} are still being built "
        "(listed under Pending, with the reason).",
        "",
        "| id | level | requirement | test(s) | deviation / key |",
        "|---|---|---|---|---|",
    ]
    for i in cat.items:
        tests = "<br>".join(f"`{t}`" for t in sorted(found.get(i.id, []))) or (
            f"pending: {cat.pending[i.id]}" if i.id in cat.pending else "—")
        out.append(f"| {i.id} | {i.level} | {i.summary} | {tests} | "
                   f"{cat.deviations.get(i.id, '')} |")
    if cat.deviations:
        out += ["", "## Where the default departs from the text, and the key that changes it",
                ""]
        out += [f"- {k}: {cat.deviations[k]}" for k in _in_order(cat, cat.deviations)]
    if cat.pending:
        out += ["", "## Pending", ""]
        out += [f"- {k}: {cat.pending[k]}" for k in _in_order(cat, cat.pending)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--import", dest="source", type=Path,
                    help="re-import ids, levels and summaries from the checklist markdown")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 listing MUST/SHOULD items with no test (and unknown ids)")
    args = ap.parse_args(argv)
    if args.source:
        old = load() if ITEMS.exists() else Catalogue([])
        items = parse_checklist(args.source.read_text())
        dump(Catalogue(items, old.deviations, old.pending))
        print(f"imported {len(items)} items into {ITEMS.relative_to(ROOT)}")
    cat = load()
    found, unknown = scan(cat.ids)
    if args.check:
        gaps = missing(cat, found)
        for i in gaps:
            print(f"no test: {i.id} {i.level}: {i.summary}")
        for u, where in sorted(unknown.items()):
            print(f"unknown checklist id {u} in {where}")
        stale = sorted(set(cat.pending) & set(found))
        for s in stale:
            print(f"pending but tested (remove from pending): {s}")
        return 1 if gaps or unknown or stale else 0
    TABLE.write_text(render(cat, found))
    print(f"wrote {TABLE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
