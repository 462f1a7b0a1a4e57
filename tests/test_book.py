"""Build the whole book with warnings as errors, and check what every page became.

This is the README's main job (`jupyter-book build .`), run into a temporary folder so that a
stale execution cache can never hide a broken notebook. It executes every notebook.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import ROOT
from nbtools import repository

pytestmark = pytest.mark.book


def _toc_entries() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                out.append(str(Path(e["file"]).with_suffix("")))
            walk(e.get("sections"))
            walk(e.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    log = r.stdout + r.stderr
    (out / "build.log").write_text(log)
    warnings = [ln for ln in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL):", ln)]
    assert r.returncode == 0 and not warnings, (
        f"jupyter-book build failed (exit {r.returncode}); warnings and errors:\n"
        + "\n".join(warnings[:50])
        + "\n--- end of log ---\n"
        + log[-3000:]
    )
    return out / "_build" / "html"


def test_every_toc_entry_has_a_page(built):
    missing = [e for e in _toc_entries() if not (built / f"{e}.html").is_file()]
    assert not missing, f"no HTML page for: {missing}"
    assert (built / "index.html").is_file() and (built / "search.html").is_file()


def _notebooks() -> list[str]:
    return [e for e in _toc_entries() if (ROOT / f"{e}.ipynb").is_file()]


@pytest.mark.parametrize("entry", _notebooks())
def test_notebook_page_has_its_executed_outputs_and_figures(built, entry):
    html = (built / f"{entry}.html").read_text()
    nb = nbformat.read(ROOT / f"{entry}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert 'class="cell_output' in html, f"{entry}: no executed output on the page"
    if re.search(r"\b(plot|subplots|imshow|hist|scatter|interactive_figure)\(", code):
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
        images = [i for i in images if "_images/" in i]
        assert images, f"{entry}: the notebook draws figures but the page shows none"
        for src in images:
            assert (built / f"{entry}.html").parent.joinpath(src).resolve().is_file(), src


@pytest.mark.parametrize("entry", _notebooks())
def test_notebook_page_links_colab_to_its_own_notebook(built, entry):
    url, branch = repository()
    owner_repo = url.removeprefix("https://github.com/")
    expected = f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{entry}.ipynb"
    html = (built / f"{entry}.html").read_text()
    assert expected in html, f"{entry}: no Colab link to {expected}"


@pytest.mark.parametrize("entry", _toc_entries())
def test_page_declares_each_inline_script_once(built, entry):
    html = (built / f"{entry}.html").read_text()
    assert html.count("const THEBE_JS_URL") <= 1, "a redeclared const is a JavaScript error"
    inline = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(inline) == len(set(inline)), "an inline script appears twice"


def test_maths_is_served_from_the_build(built):
    page = (built / "chapters/00-preface/index.html").read_text()
    src = re.search(r'<script[^>]+src="([^"]*tex-chtml\.js)[^"]*"', page)
    assert src and "://" not in src.group(1), "MathJax must come from _static, not a CDN"
    assert (built / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert "preface-mse" in page  # the numbered equation is there


def test_search_index_covers_the_pages(built):
    index = (built / "searchindex.js").read_text()
    payload = json.loads(index[index.index("(") + 1 : index.rindex(")")])
    assert len(payload["docnames"]) >= len(_toc_entries())
