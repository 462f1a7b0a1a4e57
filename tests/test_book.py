"""Build the whole book with warnings as errors, and check what every page became.

This is the README's main job (`jupyter-book build .`), run into a temporary folder so that a
stale execution cache can never hide a broken notebook. It executes every notebook.
"""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from dlbook.nbtools import repository

from conftest import ROOT, toc_entries

pytestmark = pytest.mark.book


def test_every_toc_entry_has_a_page(book_html):
    missing = [e for e in toc_entries() if not (book_html / f"{e}.html").is_file()]
    assert not missing, f"no HTML page for: {missing}"
    assert (book_html / "index.html").is_file() and (book_html / "search.html").is_file()


def _notebooks() -> list[str]:
    return [e for e in toc_entries() if (ROOT / f"{e}.ipynb").is_file()]


@pytest.mark.parametrize("entry", _notebooks())
def test_notebook_page_has_its_executed_outputs_and_figures(book_html, entry):
    html = (book_html / f"{entry}.html").read_text()
    nb = nbformat.read(ROOT / f"{entry}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert 'class="cell_output' in html, f"{entry}: no executed output on the page"
    if re.search(r"\b(plot|subplots|imshow|hist|scatter|interactive_figure)\(", code):
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
        images = [i for i in images if "_images/" in i]
        assert images, f"{entry}: the notebook draws figures but the page shows none"
        for src in images:
            assert (book_html / f"{entry}.html").parent.joinpath(src).resolve().is_file(), src


@pytest.mark.parametrize("entry", _notebooks())
def test_notebook_page_links_colab_to_its_own_notebook(book_html, entry):
    url, branch = repository(ROOT)
    owner_repo = url.removeprefix("https://github.com/")
    expected = f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{entry}.ipynb"
    html = (book_html / f"{entry}.html").read_text()
    assert expected in html, f"{entry}: no Colab link to {expected}"


@pytest.mark.parametrize("entry", toc_entries())
def test_page_declares_each_inline_script_once(book_html, entry):
    html = (book_html / f"{entry}.html").read_text()
    assert html.count("const THEBE_JS_URL") <= 1, "a redeclared const is a JavaScript error"
    inline = re.findall(r"<script>(.*?)</script>", html, re.S)
    # an interactive figure's script wires the figure it sits in: one per figure, by design
    inline = [s for s in inline if "script.dlbook-frames-data" not in s]
    assert len(inline) == len(set(inline)), "an inline script appears twice"


@pytest.mark.parametrize("entry", _notebooks())
def test_each_interactive_figure_has_its_html_controls_and_frames(book_html, entry):
    nb = nbformat.read(ROOT / f"{entry}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    html = (book_html / f"{entry}.html").read_text()
    figures = re.findall(r'<div class="dlbook-frames" id="[^"]+">', html)
    assert len(figures) == len(re.findall(r"\binteractive_figure\(", code))
    # none falls back to the description of the live controls
    assert 'class="dlbook-controls"' not in html


def test_no_page_outgrows_4_mb(book_html):
    sizes = {p.relative_to(book_html): p.stat().st_size for p in book_html.rglob("*.html")}
    big = {str(p): f"{s / 1e6:.1f} MB" for p, s in sizes.items() if s > 4e6}
    assert not big, f"pages over 4 MB: {big}"
    assert max(sizes.values()) > 100_000  # the book's pages were read, not an empty folder


def test_maths_is_served_from_the_build(book_html):
    page = (book_html / "chapters/00-preface/index.html").read_text()
    src = re.search(r'<script[^>]+src="([^"]*tex-chtml\.js)[^"]*"', page)
    assert src and "://" not in src.group(1), "MathJax must come from _static, not a CDN"
    assert (book_html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert "preface-mse" in page  # the numbered equation is there


def test_search_index_covers_the_pages(book_html):
    index = (book_html / "searchindex.js").read_text()
    payload = json.loads(index[index.index("(") + 1 : index.rindex(")")])
    assert len(payload["docnames"]) >= len(toc_entries())


# ----------------------------------------------------------------------- pages the build makes


def _exercise_notebooks() -> list[str]:
    from dlbook.exercises.make_student import has_solutions

    return [e for e in _notebooks() if has_solutions(nbformat.read(ROOT / f"{e}.ipynb", 4))]


@pytest.mark.parametrize("entry", _exercise_notebooks())
def test_exercise_page_links_its_student_notebook_which_holds_no_solution(book_html, entry):
    from dlbook.exercises import make_student as ms

    from book_pages import student_name

    html = (book_html / f"{entry}.html").read_text()
    name = student_name(entry)
    links = re.findall(rf'href="([^"]*_downloads/[^"]*/{re.escape(name)})"', html)
    assert links, f"{entry}: no download link to {name}"
    student = (book_html / f"{entry}.html").parent.joinpath(links[0]).resolve()
    assert student.is_file(), f"the linked student notebook {student} is not in the build"
    text = "\n".join(c.source for c in nbformat.read(student, 4).cells)
    instructor = nbformat.read(ROOT / f"{entry}.ipynb", 4)
    leaked = [line for line in ms.solution_lines(instructor) if line in text]
    assert not leaked, f"solution text in the downloadable student notebook: {leaked}"
    assert "raise NotImplementedError()" in text


def test_preface_lists_every_student_notebook_and_the_zip(book_html):
    import zipfile

    from book_pages import student_name

    html = (book_html / "chapters/00-preface/teaching.html").read_text()
    for entry in _exercise_notebooks():
        assert student_name(entry) in html, f"the preface does not link {student_name(entry)}"
    zips = re.findall(r'href="([^"]*_downloads/[^"]*/student-notebooks\.zip)"', html)
    assert zips
    path = (book_html / "chapters/00-preface/teaching.html").parent.joinpath(zips[0]).resolve()
    names = zipfile.ZipFile(path).namelist()
    assert sorted(names) == sorted(student_name(e) for e in _exercise_notebooks())


def test_checks_and_errata_pages_list_what_the_chapters_hold(book_html):
    from book_pages import find_checks, find_errata

    checks_html = (book_html / "chapters/appendix/checks.html").read_text()
    for c in find_checks(ROOT):
        assert f'#{c.label}"' in checks_html, f"the checks page does not link {c.label}"
    rows = checks_html.count("<tr") - 1  # minus the header row
    assert rows == len(find_checks(ROOT)) > 0
    errata_html = (book_html / "chapters/appendix/errata.html").read_text()
    for b in find_errata(ROOT):
        title = b.title.split("Errata:", 1)[-1].strip()
        assert title.split()[0] in errata_html, (
            f"errata box {b.title!r} missing from the errata page"
        )
    assert errata_html.count('class="admonition') >= len(find_errata(ROOT)) > 0
