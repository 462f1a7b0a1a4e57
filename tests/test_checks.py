"""Every main result has a check, and every check points to a notebook cell (tests the sources).

The derivation pages close each main result with a ``**Check it:**`` paragraph whose
``{ref}`check-...``` links point to labelled notebook cells; errata boxes link to labelled cells
that show the wrong formula wrong. The appendix's generated pages (``_ext/book_pages.py``) list
them; these tests hold the sources to the convention.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import book_pages as bp  # _ext/, put on sys.path by conftest.py
from conftest import ROOT

CHAPTERS = sorted(
    p for p in (ROOT / "chapters").iterdir() if p.is_dir() and re.match(r"\d\d-", p.name)
)


def test_every_main_result_has_a_check():
    missing = bp.main_results_without_check(ROOT)
    assert not missing, "main results with no **Check it:** {ref}`check-...` link:\n" + "\n".join(
        f"  {b.page}.md line {b.start + 1}: {b.kind} {b.title!r}" for b in missing
    )


def test_every_check_points_to_a_notebook_cell():
    labels = bp.notebook_labels(ROOT)
    checks = bp.find_checks(ROOT)
    assert checks
    dangling = [c for c in checks if c.label not in labels]
    assert not dangling, "Check-it links to labels that no notebook defines: " + ", ".join(
        f"{c.label} ({c.page})" for c in dangling
    )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.name for c in CHAPTERS])
def test_each_chapter_checks_its_results_and_has_errata(chapter):
    rel = chapter.relative_to(ROOT).as_posix()
    checks = [c for c in bp.find_checks(ROOT) if c.page.startswith(rel + "/")]
    errata = [b for b in bp.find_errata(ROOT) if b.page.startswith(rel + "/")]
    assert checks, f"{rel}: no **Check it:** link on its derivation pages"
    assert errata, f"{rel}: no errata box (:::{{admonition}} Errata: ...)"
    labels = bp.notebook_labels(ROOT)
    for b in errata:
        refs = re.findall(r"\{ref\}`(?:[^`<]*<)?(errata-[\w-]+)>?`", b.text)
        assert refs, f"{b.page}: errata box {b.title!r} links no notebook cell (errata-...)"
        assert all(r in labels for r in refs), f"{b.page}: {b.title!r} links an unknown label"


def test_scanner_finds_a_theorem_without_a_check(tmp_path):
    page = tmp_path / "chapters" / "09-toy" / "index.md"
    page.parent.mkdir(parents=True)
    page.write_text(
        "# Toy\n\n## First\n\n:::{prf:theorem} Checked\n:label: thm-a\nA.\n:::\n\n"
        "**Check it:** {ref}`check-toy-a`.\n\n## Second\n\n"
        "```{prf:proposition} Unchecked\nB.\n```\n\n"
        "Text.\n\n```python\n# **Check it:** {ref}`check-toy-code` is code, not a check\n```\n"
    )
    missing = bp.main_results_without_check(tmp_path)
    assert [b.title for b in missing] == ["Unchecked"]
    checks = bp.find_checks(tmp_path)
    assert [(c.result, c.label) for c in checks] == [("Theorem: Checked", "check-toy-a")]
    assert Path(bp.student_name("chapters/01-backprop/exercises")).name == (
        "01-backprop-exercises-student.ipynb"
    )
