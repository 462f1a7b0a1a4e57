"""The glossary (chapters/appendix/glossary.md): at least 60 terms, each with its Chinese term, a
one-line definition and a link to a page of the book that introduces it."""

from __future__ import annotations

import re

from conftest import ROOT, toc_entries

GLOSSARY = ROOT / "chapters" / "appendix" / "glossary.md"
CJK = re.compile(r"[\u4e00-\u9fff]")
ROW = re.compile(
    r"^\| (?P<en>[^|]+) \| (?P<zh>[^|]+) \| (?P<definition>[^|]+) \| (?P<link>[^|]+) \|$"
)


def rows() -> list[dict[str, str]]:
    found = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m and m["en"] != "English" and not m["en"].startswith("---"):
            found.append({k: v.strip() for k, v in m.groupdict().items()})
    return found


def test_glossary_is_in_the_table_of_contents():
    assert "chapters/appendix/glossary" in toc_entries()


def test_at_least_sixty_terms_each_with_chinese_and_a_definition():
    terms = rows()
    assert len(terms) >= 60, f"only {len(terms)} terms"
    for t in terms:
        assert CJK.search(t["zh"]), f"{t['en']}: no Chinese term ({t['zh']!r})"
        assert len(t["definition"].split()) >= 5, f"{t['en']}: definition too short"
    names = [t["en"].lower() for t in terms]
    assert len(set(names)) == len(names), "duplicate terms"
    assert names == sorted(names), "terms are not in alphabetical order"


def test_the_five_ideas_are_there():
    zh = {t["en"].lower(): t["zh"] for t in rows()}
    assert zh["backpropagation"] == "反向传播"
    assert zh["attention"] == "注意力机制"
    assert zh["generative adversarial network"] == "生成对抗网络"
    assert zh["reinforcement learning"] == "强化学习"
    assert "gpt" in zh


def test_every_term_links_to_a_page_in_the_book():
    pages = set(toc_entries())
    for t in rows():
        m = re.fullmatch(r"\{doc\}`\.\./(?P<target>[^`]+)`", t["link"])
        assert m, f"{t['en']}: expected a {{doc}} link, got {t['link']!r}"
        assert "chapters/" + m["target"] in pages, f"{t['en']}: {m['target']} is not in _toc.yml"
