"""The errata page lists the articles' wrong claims that no chapter takes up, each with a reason.

Issue 20 closes when every wrong technical claim of the five articles is either refuted in the
book (an errata box, the page on the articles' code, the history page) or listed on the errata
page as out of scope, with the reason. The list is a table in the section labelled
``(errata-out-of-scope)=`` of ``chapters/appendix/errata.md``. These tests keep it from
silently emptying or losing its columns: every row names the article(s) it quotes (files
``000`` to ``004``), quotes a claim, says what is wrong and gives a reason, and every citation
and page it links exists.
"""

from __future__ import annotations

import re

import pytest

from conftest import ROOT

PAGE = ROOT / "chapters" / "appendix" / "errata.md"
BIB = ROOT / "references.bib"
LABEL = "(errata-out-of-scope)="
HEADING = "## Claims this book does not take up"
COLUMNS = ["Article", "Claim", "What is wrong", "Why not taken up"]
ARTICLE = re.compile(r"\b(\d{3})\b")


def section() -> str:
    """The text of the out-of-scope section: from its label to the next heading or the end."""
    text = PAGE.read_text(encoding="utf-8")
    assert LABEL in text, f"{PAGE.name} lacks the label {LABEL}"
    rest = text.split(LABEL, 1)[1].lstrip("\n")
    assert rest.startswith(HEADING), f"{LABEL} must label the heading {HEADING!r}"
    body = rest[len(HEADING) :]
    nxt = re.search(r"^#{1,2} ", body, re.M)
    return body[: nxt.start()] if nxt else body


def cells(line: str) -> list[str]:
    """The cells of one markdown table row."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table() -> tuple[list[str], list[list[str]]]:
    """The header and the body rows of the section's table."""
    lines = [x for x in section().split("\n") if x.strip().startswith("|")]
    assert len(lines) >= 2, "the out-of-scope section has no table"
    header, rule, *rows = lines
    assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", rule.strip()), f"not a table rule: {rule!r}"
    return cells(header), [cells(r) for r in rows]


ROWS = table()[1]


def test_section_follows_the_generated_list():
    text = PAGE.read_text(encoding="utf-8")
    listed = re.search(r"^```\{errata-list\}\s*$", text, re.M)
    assert listed, "the errata page lost its {errata-list} block"
    assert text.index(LABEL) > listed.start(), "the out-of-scope section must follow the list"
    assert text.count(LABEL) == 1


def test_table_has_the_four_columns_and_enough_rows():
    header, rows = table()
    assert header == COLUMNS
    # the audit found 17 claims out of scope; a table that shrinks this far has lost rows
    assert len(rows) >= 10, f"only {len(rows)} rows in the out-of-scope table"


@pytest.mark.parametrize("row", ROWS, ids=[f"row{i + 1}" for i in range(len(ROWS))])
def test_every_row_names_articles_and_gives_a_reason(row):
    assert len(row) == len(COLUMNS), f"row with {len(row)} cells, expected {len(COLUMNS)}: {row}"
    article, claim, wrong, reason = row
    numbers = ARTICLE.findall(article)
    assert numbers, f"no article number in {article!r}"
    assert set(numbers) <= {"000", "001", "002", "003", "004"}, f"unknown article in {article!r}"
    assert re.fullmatch(r"\d{3}(, \d{3})*", article), f"article cell not a list: {article!r}"
    for name, cell in [("claim", claim), ("what is wrong", wrong), ("reason", reason)]:
        assert len(re.sub(r"\W", "", cell)) >= 10, f"empty {name} in row for {article}: {cell!r}"


def test_citations_and_links_exist():
    text = section()
    bib = BIB.read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,\s]+),", bib, re.M))
    cited = {
        k.strip() for group in re.findall(r"\{cite\}`([^`]+)`", text) for k in group.split(",")
    }
    assert cited, "the out-of-scope table cites nothing"
    assert not cited - keys, f"keys missing from references.bib: {sorted(cited - keys)}"
    for target in re.findall(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", text):
        base = (PAGE.parent / target).resolve()
        assert any(base.with_suffix(s).exists() for s in (".md", ".ipynb")), f"no page {target}"
