"""The conformance table: every MUST/SHOULD checklist item names a test.

hack/conformance.py reads docs/conformance-items.yaml and the docstrings under
tests/; docs/conformance.md is its output and must be current.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("conformance", REPO / "hack" / "conformance.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("conformance", module)
    spec.loader.exec_module(module)
    return module


conformance = _tool()


def test_every_must_and_should_item_has_a_test_or_an_honest_pending_reason():
    cat = conformance.load()
    found, unknown = conformance.scan(cat.ids)
    gaps = [f"{i.id} {i.level}: {i.summary}" for i in conformance.missing(cat, found)]
    assert gaps == [], "checklist items with no test naming them:\n" + "\n".join(gaps)
    assert unknown == {}, f"docstrings name ids the checklist does not have: {unknown}"
    assert not set(cat.pending) & set(found), "tested items must leave the pending list"
    assert all(str(reason).strip() for reason in cat.pending.values())
    assert set(cat.pending) <= cat.ids and set(cat.deviations) <= cat.ids


def test_the_items_file_holds_the_whole_checklist():
    cat = conformance.load()
    required = [i for i in cat.items if i.required]
    assert len(cat.items) == len(cat.ids) == 140
    assert len(required) == 126
    assert {i.id for i in cat.items if i.level.startswith("MAY")} == {"NPWG-5-a", "NPWG-5.3.6-a"}


def test_generated_table_is_up_to_date():
    cat = conformance.load()
    found, _ = conformance.scan(cat.ids)
    assert conformance.TABLE.read_text() == conformance.render(cat, found), \
        "docs/conformance.md is stale: run `python hack/conformance.py`"


def test_checklist_lines_parse_into_id_level_and_one_line_summary():
    text = "\n".join([
        "### A.9 Sample (§9)",
        "- NPWG-9-a MUST NOT: Do x with `a|b`. More text (§9.1) — test: try it.",
        "- NPWG-9-b MAY (project: SHOULD): Publish y (§9) — test: look.",
        "- CNI-Z-1 SHOULD (de-facto libcni): Retry z (raw_exec.go) — test: hold it.",
        "- H-9: A note without a level.",
        "not an item",
    ])
    items = conformance.parse_checklist(text)
    assert [(i.id, i.level, i.summary) for i in items] == [
        ("NPWG-9-a", "MUST NOT", "Do x with `a/b`"),
        ("NPWG-9-b", "MAY (project: SHOULD)", "Publish y"),
        ("CNI-Z-1", "SHOULD (de-facto)", "Retry z (raw_exec.go)"),
        ("H-9", "NOTE", "A note without a level"),
    ]
    assert [i.required for i in items] == [True, True, True, False]
    assert items[0].section == "A.9 Sample (§9)"


def test_ids_are_found_in_docstrings_and_names_not_in_neighbours(tmp_path):
    (tmp_path / "test_x.py").write_text(
        '"""Module: NPWG-1-a is not counted here."""\n'
        "def test_one():\n    '''Checklist: NPWG-4.1.2.1-a, H-1.'''\n"
        "def test_lib_4_retries():\n    pass\n"
        "def helper():\n    '''NPWG-2-a.'''\n"
        "class TestK:\n    def test_m(self):\n        '''CNI-TYPO-9 here.'''\n")
    known = {"NPWG-1-a", "NPWG-2-a", "NPWG-4.1.2.1-a", "NPWG-4.1.2.1.3-a", "H-1", "H-10",
             "LIB-4"}
    found, unknown = conformance.scan(known, tmp_path)
    where = f"{tmp_path.name}/test_x.py::"
    assert found == {"NPWG-4.1.2.1-a": [where + "test_one"], "H-1": [where + "test_one"],
                     "LIB-4": [where + "test_lib_4_retries"]}
    assert unknown == {"CNI-TYPO-9": where + "test_m"}
