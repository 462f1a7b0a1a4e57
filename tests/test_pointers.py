"""The pointers in dlbook's docstrings lead somewhere: to a section of the book, to a test file.

A docstring of ``code/dlbook`` that says where the book derives it (every module's, and the
public functions' that the book derives) does so in one format::

    Derived in: Chapter 3, *Sampling* and *The KV cache*.
    Derived in: Chapter 4, *The minimax game* (trained in the notebook *GANs on 2-D mixtures*).
    Derived in: Preface, *How to run the notebooks* (data and the cache).

``Chapter N`` (or ``Preface``, ``Appendix``) names a folder of ``chapters/``; each ``*Title*`` after
it names a section of that chapter: a heading of one of the folder's pages (Markdown headings of
its ``.md`` pages, headings in its notebooks' markdown cells). A title matches a heading that
contains it as a phrase, whole words, case and markup aside: *Reverse mode* is found in
"Forward mode and reverse mode", *Exercises* in "Exercises: backward passes by hand". A later
``Chapter M`` in the same pointer (``(attention itself: Chapter 2)``) switches the chapter for the
titles after it. A pointer may wrap onto the next line; it ends at a blank line.

Docstrings also cite test files (``tests/test_rl.py``): each must exist.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "code" / "dlbook"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
IDS = [str(p.relative_to(ROOT)) for p in SOURCES]

POINTER = re.compile(r"Derived in:(.*?)(?:\n\s*\n|\Z)", re.S)
TOKEN = re.compile(
    r"\b(?:Chapter\s+(?P<number>\d+)|(?P<named>Preface|Appendix))\b|\*(?P<title>[^*]+)\*"
)
TEST_FILE = re.compile(r"\btests/[\w./-]+\.py\b")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def docstrings(path: Path) -> list[tuple[int, str]]:
    """``(line, docstring)`` of the module and of every class and function in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and (
            doc := ast.get_docstring(node)
        ):
            found.append((node.body[0].lineno, doc))
    return sorted(found)


def pointers(doc: str) -> list[str]:
    """The text of each ``Derived in:`` pointer of a docstring, its lines joined."""
    return [" ".join(m.group(1).split()) for m in POINTER.finditer(doc)]


def citations(pointer: str) -> list[tuple[str, str | None]]:
    """``(chapter, title)`` pairs a pointer makes; ``(chapter, None)`` for a bare chapter.

    ``chapter`` is ``"Preface"``, ``"Appendix"`` or the chapter's number as a string.
    """
    out: list[tuple[str, str | None]] = []
    chapter: str | None = None
    for m in TOKEN.finditer(pointer):
        if m.group("title") is None:
            chapter = m.group("number") or m.group("named")
            out.append((chapter, None))
        elif chapter is None:
            raise ValueError(f"{pointer!r}: *{m.group('title')}* comes before any chapter")
        else:
            out.append((chapter, m.group("title")))
    return out


def chapter_folder(chapter: str, root: Path = ROOT) -> Path | None:
    """``chapters/NN-*`` for a number, ``chapters/00-preface``, ``chapters/appendix``; or None."""
    if chapter == "Preface":
        pattern = "00-*"
    elif chapter == "Appendix":
        pattern = "appendix"
    else:
        pattern = f"{int(chapter):02d}-*"
    folders = [p for p in sorted((root / "chapters").glob(pattern)) if p.is_dir()]
    return folders[0] if len(folders) == 1 else None


def _headings_of_markdown(text: str) -> list[str]:
    found, fence = [], None
    for line in text.split("\n"):
        m = FENCE.match(line)
        if m and (fence is None or (m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence))):
            fence = m.group(1) if fence is None else None
            continue
        if fence is None and (h := HEADING.match(line)):
            found.append(h.group(1))
    return found


@functools.cache
def headings(folder: Path) -> tuple[str, ...]:
    """Every heading of a chapter folder's pages and notebooks."""
    found: list[str] = []
    for page in sorted(folder.glob("*.md")):
        found += _headings_of_markdown(page.read_text(encoding="utf-8"))
    for nb in sorted(folder.glob("*.ipynb")):
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "markdown":
                source = cell["source"]
                found += _headings_of_markdown(
                    source if isinstance(source, str) else "".join(source)
                )
    return tuple(found)


def _words(text: str) -> str:
    """Lower case, markup (``*``, `` ` ``) dropped, curly quotes straightened, spaces collapsed."""
    text = text.replace("\u2019", "'").replace("*", "").replace("`", "")
    return " ".join(text.lower().split())


def has_section(folder: Path, title: str) -> bool:
    """Whether a heading of ``folder`` contains ``title`` as a phrase of whole words."""
    phrase = re.compile(rf"(?<!\w){re.escape(_words(title))}(?!\w)")
    return any(phrase.search(_words(h)) for h in headings(folder))


def problems(pointer: str, root: Path = ROOT) -> list[str]:
    """What is wrong with one pointer: a missing chapter folder, a title with no such heading."""
    try:
        cited = citations(pointer)
    except ValueError as err:
        return [str(err)]
    if not any(title for _, title in cited):
        return [f"{pointer!r} names no section (*Title*)"]
    wrong = []
    for chapter, title in cited:
        folder = chapter_folder(chapter, root)
        if folder is None:
            if title is None:  # said once, where the pointer names the chapter
                wrong.append(f"{pointer!r}: no chapter folder for {chapter!r} under chapters/")
        elif title is not None and not has_section(folder, title):
            wrong.append(
                f"{pointer!r}: no heading of {folder.relative_to(root)}/ contains *{title}*"
            )
    return wrong


# ----------------------------------------------------------------------------- the parser


def test_citations_read_every_form_the_code_uses():
    assert citations("Chapter 3, *Sampling* and *The KV cache*.") == [
        ("3", None),
        ("3", "Sampling"),
        ("3", "The KV cache"),
    ]
    assert citations(
        "Chapter 5, *The policy gradient theorem*, *Baselines*, *Generalised advantage "
        "estimation* and *PPO*."
    )[1:] == [
        ("5", "The policy gradient theorem"),
        ("5", "Baselines"),
        ("5", "Generalised advantage estimation"),
        ("5", "PPO"),
    ]
    assert citations("Chapter 4, *The minimax game* (trained in the notebook *GANs on 2-D*).")[
        1:
    ] == [("4", "The minimax game"), ("4", "GANs on 2-D")]
    assert citations("Chapter 3, *The GPT* (attention itself: Chapter 2).") == [
        ("3", None),
        ("3", "The GPT"),
        ("2", None),
    ]
    assert citations("Preface, *How to run the notebooks* (data and the cache).") == [
        ("Preface", None),
        ("Preface", "How to run the notebooks"),
    ]
    with pytest.raises(ValueError, match="before any chapter"):
        citations("*Sampling*, Chapter 3.")


def test_pointers_wrap_and_end_at_a_blank_line():
    doc = "Summary.\n\nDerived in: Chapter 5, *A* and\n*B c*.\n\nMore text, *not cited*."
    assert pointers(doc) == ["Chapter 5, *A* and *B c*."]


def test_a_wrong_pointer_is_reported(tmp_path):
    folder = tmp_path / "chapters" / "07-toy"
    folder.mkdir(parents=True)
    (folder / "index.md").write_text(
        "# Toy models\n\n## Forward mode and reverse mode\n\n```python\n# Not a heading\n```\n"
    )
    nb = {"cells": [{"cell_type": "markdown", "source": ["# A notebook\n", "## Its section"]}]}
    (folder / "toy.ipynb").write_text(json.dumps(nb))
    assert problems("Chapter 7, *Reverse mode* and *its section*.", tmp_path) == []
    assert problems("Chapter 7, *A notebook* (see *Toy models*).", tmp_path) == []
    assert problems("Chapter 7, *Not a heading*.", tmp_path) == [
        "'Chapter 7, *Not a heading*.': no heading of chapters/07-toy/ contains *Not a heading*"
    ]
    assert problems("Chapter 7, *Reverse*.", tmp_path) == []  # a whole word of a heading
    assert problems("Chapter 7, *Revers*.", tmp_path) != []  # part of a word is not
    assert problems("Chapter 8, *Toy models*.", tmp_path) == [
        "'Chapter 8, *Toy models*.': no chapter folder for '8' under chapters/"
    ]
    assert problems("Chapter 7.", tmp_path) == ["'Chapter 7.' names no section (*Title*)"]


# ----------------------------------------------------------------------------- the code


def test_the_package_has_pointers():
    found = [p for path in SOURCES for _, doc in docstrings(path) for p in pointers(doc)]
    assert len(found) >= 50, f"only {len(found)} 'Derived in:' pointers found under code/dlbook"


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_every_derived_in_pointer_names_a_section_of_the_book(path):
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {problem}"
        for line, doc in docstrings(path)
        for pointer in pointers(doc)
        for problem in problems(pointer)
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_every_test_file_a_docstring_cites_exists(path):
    missing = [
        f"{path.relative_to(ROOT)}:{line}: cites {cited}, which does not exist"
        for line, doc in docstrings(path)
        for cited in TEST_FILE.findall(doc)
        if not (ROOT / cited).is_file()
    ]
    assert not missing, "\n".join(missing)
