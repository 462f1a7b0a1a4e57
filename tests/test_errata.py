"""The errata page is complete: every box is listed, linked and checked (tests the sources).

The derivation pages answer the popular articles with errata boxes (``:::{admonition} Errata:
...``); ``chapters/appendix/errata.md`` lists them all with the ``{errata-list}`` directive of
``_ext/book_pages.py``, which scans the same pages as ``find_errata``. Each box links, with
``{ref}``, to a notebook cell labelled ``(errata-...)=`` that shows the wrong version wrong. These
tests hold both directions: no box without an existing cell, no errata cell without a box, no
cell without an assert after it, and no box where the errata page does not look.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from dlbook.nbtools import notebooks

import book_pages as bp  # _ext/, put on sys.path by conftest.py
from conftest import ROOT, toc_entries

ERRATA_REF = re.compile(r"\{ref\}`(?:[^`<]*<)?(errata-[A-Za-z0-9_-]+)>?`")
ERRATA_TITLE = re.compile(
    r"^\s*:::+\s*\{admonition\}\s*Errata\b|^\s*```+\s*\{admonition\}\s*Errata\b"
)
QUOTES = "\"'“”‘’「『«"


def box_refs(block: bp.Block) -> list[str]:
    """The ``errata-...`` labels a box links to."""
    return ERRATA_REF.findall(block.text)


def errata_cells(srcdir: Path) -> list[tuple[Path, int, str]]:
    """``(notebook, cell index, label)`` for every markdown cell that defines ``(errata-...)=``."""
    found = []
    for path in notebooks(Path(srcdir) / "chapters"):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "markdown":
                continue
            for m in bp.LABEL_DEF.finditer(cell.source):
                if m.group("label").startswith("errata-"):
                    found.append((path, i, m.group("label")))
    return found


def checking_code(nb: nbformat.NotebookNode, start: int) -> list[str]:
    """The code cells after markdown cell ``start``, up to the next labelled markdown cell."""
    code = []
    for cell in nb.cells[start + 1 :]:
        if cell.cell_type == "markdown" and bp.LABEL_DEF.search(cell.source):
            break
        if cell.cell_type == "code":
            code.append(cell.source)
    return code


ERRATA = bp.find_errata(ROOT)


def test_there_are_errata_boxes_and_cells():
    assert len(ERRATA) >= 10
    assert len(errata_cells(ROOT)) >= 10


@pytest.mark.parametrize("box", ERRATA, ids=[f"{b.page}:{b.start + 1}" for b in ERRATA])
def test_every_box_links_an_errata_cell_that_exists(box):
    labels = bp.notebook_labels(ROOT)
    refs = box_refs(box)
    assert refs, f"{box.page}.md line {box.start + 1}: box {box.title!r} links no errata-... cell"
    missing = [r for r in refs if r not in labels]
    assert not missing, f"{box.page}: box {box.title!r} links labels no notebook defines: {missing}"


@pytest.mark.parametrize("box", ERRATA, ids=[f"{b.page}:{b.start + 1}" for b in ERRATA])
def test_every_box_follows_the_house_format(box):
    title = box.title.split("Errata:", 1)[-1].strip()
    assert box.title.startswith("Errata:") and title, f"{box.page}: {box.title!r}"
    assert title[0] not in QUOTES, f"{box.page}: errata title starts with a quote: {box.title!r}"
    assert re.search(r"^:class:\s*warning\s*$", box.text, re.M), (
        f"{box.page}: box {box.title!r} lacks ':class: warning'"
    )


def test_every_errata_cell_is_linked_by_a_box():
    linked = {r for b in ERRATA for r in box_refs(b)}
    orphans = [
        f"{label} ({path.relative_to(ROOT)})"
        for path, _, label in errata_cells(ROOT)
        if label not in linked
    ]
    assert not orphans, (
        "errata cells that no errata box links (add a {ref} in the box the cell checks):\n  "
        + "\n  ".join(orphans)
    )


def test_errata_labels_are_unique():
    seen: dict[str, Path] = {}
    for path, _, label in errata_cells(ROOT):
        assert label not in seen, f"{label} is defined in {seen[label]} and in {path}"
        seen[label] = path


def test_every_errata_cell_is_followed_by_a_check():
    unchecked = []
    for path in {p for p, _, _ in errata_cells(ROOT)}:
        nb = nbformat.read(path, as_version=4)
        for p, i, label in errata_cells(ROOT):
            if p != path:
                continue
            code = "\n".join(checking_code(nb, i))
            if not re.search(r"^\s*assert\b|raise AssertionError", code, re.M):
                unchecked.append(f"{label} ({path.relative_to(ROOT)})")
    assert not unchecked, "errata cells with no assert before the next label: " + ", ".join(
        sorted(unchecked)
    )


def test_the_errata_page_lists_every_box():
    page = ROOT / "chapters" / "appendix" / "errata.md"
    assert "chapters/appendix/errata" in toc_entries()
    assert re.search(r"^```\{errata-list\}\s*$", page.read_text(encoding="utf-8"), re.M)
    # the directive scans the derivation pages; a box anywhere else would be missing from it
    scanned = set(bp.derivation_pages(ROOT))
    elsewhere = []
    for path in sorted((ROOT / "chapters").rglob("*.md")):
        if path in scanned or path == page:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
            if ERRATA_TITLE.match(line):
                elsewhere.append(f"{path.relative_to(ROOT)}:{n}")
    for path in notebooks(ROOT / "chapters"):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown" and any(
                ERRATA_TITLE.match(x) for x in cell.source.split("\n")
            ):
                elsewhere.append(str(path.relative_to(ROOT)))
    assert not elsewhere, "errata boxes the errata page does not collect: " + ", ".join(elsewhere)
    outside = sorted({b.page for b in ERRATA} - set(toc_entries()))
    assert not outside, (
        f"errata boxes on pages outside the TOC (the book would not show them): {outside}"
    )


def test_scanner_pairs_boxes_and_cells(tmp_path):
    page = tmp_path / "chapters" / "09-toy" / "index.md"
    page.parent.mkdir(parents=True)
    page.write_text(
        "# Toy\n\n:::{admonition} Errata: a wrong thing\n:class: warning\n\n**Wrong:** x.\n"
        "{ref}`errata-toy-a` and {ref}`the cell <errata-toy-b>`.\n:::\n\n"
        "```python\n# :::{admonition} Errata: in code, not a box\n```\n"
    )
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("(errata-toy-a)=\n### Errata: a"),
            nbformat.v4.new_code_cell("x = 1"),
            nbformat.v4.new_markdown_cell("More words."),
            nbformat.v4.new_code_cell("assert x == 1"),
            nbformat.v4.new_markdown_cell("(errata-toy-b)=\n### Errata: b"),
            nbformat.v4.new_code_cell("print(2)"),
        ]
    )
    nbformat.write(nb, page.parent / "toy.ipynb")
    boxes = bp.find_errata(tmp_path)
    assert [b.title for b in boxes] == ["Errata: a wrong thing"]
    assert box_refs(boxes[0]) == ["errata-toy-a", "errata-toy-b"]
    cells = errata_cells(tmp_path)
    assert [label for _, _, label in cells] == ["errata-toy-a", "errata-toy-b"]
    assert "assert x == 1" in "\n".join(checking_code(nb, cells[0][1]))
    assert checking_code(nb, cells[1][1]) == ["print(2)"]  # no assert: that cell would fail
