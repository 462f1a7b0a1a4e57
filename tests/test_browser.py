"""The HTML book as readers get it, in a real browser (Playwright driving Debian's Chromium).

Serves the built book on localhost and, for every page of ``_toc.yml``: the page loads with no
JavaScript error (uncaught exceptions and console errors), every image has loaded, display maths
has been typeset by MathJax (served from the build: no network), a notebook page's Colab link
points to that page's notebook, and hidden solutions stay hidden until their toggle is clicked.
The search page finds "softmax" and "Bellman". On every page with interactive figures, each
control of each figure is moved (the keyboard for sliders and check boxes, a selection for
drop-downs) and the frame shown must be the one drawn for the values the controls show, with no
request to the network. A screenshot of each chapter's first page is written to
``_build/screenshots/``.

Skipped, with the reason, where Chromium or Playwright is missing (``.ci/run`` installs both).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from dlbook.nbtools import repository

from conftest import ROOT, toc_entries, toc_parts

CHROMIUM = os.environ.get("DLBOOK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "_build" / "screenshots"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(book_html):
    handler = functools.partial(_QuietHandler, directory=str(book_html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class _Page:
    """A loaded page and everything that went wrong while loading it."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []  # every URL the page asked for
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on(
            "console",
            lambda m: (
                self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None
            ),
        )
        self.page.on(
            "requestfailed",
            lambda r: (
                self.errors.append(f"request failed: {r.url} ({r.failure})")
                if r.url.startswith("http://127.0.0.1")
                else None
            ),
        )
        self.page.goto(url, wait_until="load")
        # MathJax typesets asynchronously: wait for it when the page has maths.
        self.page.wait_for_function(
            "() => !window.MathJax || !window.MathJax.startup || !window.MathJax.startup.promise "
            "|| window.MathJax.startup.promise.then(() => true)",
            timeout=30_000,
        )
        self.page.wait_for_load_state("networkidle")

    def close(self):
        self.page.close()


@pytest.mark.parametrize("entry", toc_entries())
def test_page_in_a_browser(browser, site, entry):
    p = _Page(browser, f"{site}/{entry}.html")
    page = p.page
    try:
        assert not p.errors, f"{entry}: JavaScript errors:\n" + "\n".join(p.errors)

        broken = page.eval_on_selector_all(
            "img", "els => els.filter(e => !e.complete || e.naturalWidth === 0).map(e => e.src)"
        )
        assert not broken, f"{entry}: images that did not load: {broken}"

        n_math = page.eval_on_selector_all("div.math, span.math", "els => els.length")
        if n_math:
            untypeset = page.eval_on_selector_all(
                "div.math, span.math",
                "els => els.filter(e => !e.querySelector('mjx-container')).length",
            )
            assert untypeset == 0, f"{entry}: {untypeset} of {n_math} maths not typeset by MathJax"
            assert page.evaluate("() => !!document.querySelector('mjx-container')")

        if (ROOT / f"{entry}.ipynb").is_file():
            url, branch = repository(ROOT)
            owner_repo = url.removeprefix("https://github.com/")
            expected = (
                f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{entry}.ipynb"
            )
            hrefs = page.eval_on_selector_all(
                "a[href*='colab.research.google.com']", "els => els.map(e => e.href)"
            )
            assert hrefs == [expected], f"{entry}: Colab links {hrefs}, expected [{expected}]"

        _check_hidden_solutions(page, entry)
    finally:
        p.close()


def _check_hidden_solutions(page, entry: str) -> None:
    """Solutions (hidden code cells, solution dropdowns) stay hidden until clicked."""
    # Code cells tagged hide-input: myst-nb wraps the source in <details>.
    for i in range(page.locator("details.hide.above-input").count()):
        box = page.locator("details.hide.above-input").nth(i)
        code = box.locator(".cell_input")
        assert not code.is_visible(), f"{entry}: hidden cell {i} shows its source before a click"
        box.locator("summary").click()
        code.wait_for(state="visible", timeout=5000)
    # Written solutions: sphinx-exercise's dropdown, toggled by sphinx-togglebutton.
    for i in range(page.locator("div.solution.dropdown").count()):
        box = page.locator("div.solution.dropdown").nth(i)
        body = box.locator(":scope > :not(.admonition-title)").first
        assert not body.is_visible(), f"{entry}: solution {i} is visible before a click"
        box.locator(".admonition-title").click()
        body.wait_for(state="visible", timeout=5000)


@pytest.mark.parametrize("term", ["softmax", "Bellman"])
def test_search_finds(browser, site, term):
    p = _Page(browser, f"{site}/search.html?q={term}")
    try:
        results = p.page.locator("#search-results ul.search li")
        results.first.wait_for(state="attached", timeout=30_000)
        assert results.count() >= 1, f"searching {term!r} found nothing"
        assert not p.errors, "\n".join(p.errors)
    finally:
        p.close()


def test_screenshot_of_each_chapters_first_page(browser, site):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    firsts = [files[0] for caption, files in toc_parts() if files]
    assert firsts
    for entry in firsts:
        p = _Page(browser, f"{site}/{entry}.html")
        try:
            target = SCREENSHOTS / (entry.replace("/", "_") + ".png")
            p.page.screenshot(path=str(target))
            assert target.stat().st_size > 10_000, f"{target} looks empty"
        finally:
            p.close()


def _pages_with_interactive_figures() -> list[tuple[str, int]]:
    """``(entry, how many interactive figures its notebook makes)`` for each such page."""
    import re

    import nbformat

    pages = []
    for entry in toc_entries():
        path = ROOT / f"{entry}.ipynb"
        if path.is_file():
            cells = nbformat.read(path, as_version=4).cells
            code = "\n".join(c.source for c in cells if c.cell_type == "code")
            n = len(re.findall(r"\binteractive_figure\(", code))
            if n:
                pages.append((entry, n))
    return pages


_STATE = """root => {
  const data = JSON.parse(root.querySelector("script.dlbook-frames-data").textContent);
  const img = root.querySelector("img.dlbook-frame");
  const shown = Array.from(root.querySelectorAll("[data-axis]")).map(el => {
    if (el.type === "checkbox") return {pos: el.checked ? 1 : 0, label: el.checked ? "on" : "off"};
    if (el.tagName === "SELECT") return {pos: +el.value, label: el.selectedOptions[0].textContent};
    return {pos: +el.value, label: root.querySelector(`output[for="${el.id}"]`).textContent};
  });
  const names = Array.from(root.querySelectorAll("[data-axis]")).map(el =>
    el.type === "checkbox" ? el.parentElement.textContent.trim()
      : root.querySelector(`label[for="${el.id}"]`).textContent);
  return {shape: data.shape, alts: data.alts, frames: data.frames, shown, names,
          frame: +img.getAttribute("data-frame"), alt: img.alt, src: img.src};
}"""


def _move(control, kind: str, now: int, target: int) -> None:
    """Move one control from stop ``now`` to stop ``target``, as a reader would."""
    if kind == "checkbox":
        control.focus()
        control.press("Space")
    elif kind == "select":
        control.select_option(index=target)  # a value could match an option's label too
    else:  # a range input: the arrow keys
        control.focus()
        key = "ArrowRight" if target > now else "ArrowLeft"
        for _ in range(abs(target - now)):
            control.press(key)


@pytest.mark.parametrize(("entry", "n_figures"), _pages_with_interactive_figures())
def test_interactive_figures_move_in_the_html_book(browser, site, entry, n_figures):
    p = _Page(browser, f"{site}/{entry}.html")
    page = p.page
    try:
        figures = page.locator("div.dlbook-frames")
        assert figures.count() == n_figures, (
            f"{entry}: {figures.count()} figures with HTML controls, {n_figures} in the notebook"
        )
        loaded = len(p.requests)
        for f in range(n_figures):
            root = figures.nth(f)
            state = root.evaluate(_STATE)
            assert state["frame"] < len(state["frames"]) == len(state["alts"])
            controls = root.locator("[data-axis]")
            assert controls.count() == len(state["shape"]) >= 1
            for i in range(controls.count()):
                control = controls.nth(i)
                kind = control.evaluate(
                    "el => el.type === 'checkbox' ? 'checkbox' : el.tagName.toLowerCase()"
                )
                n = state["shape"][i]
                now = state["shown"][i]["pos"]
                others = [t for t in (n - 1, 0, n // 2) if t != now]
                targets = list(dict.fromkeys(others))[:2]  # two other stops where there are
                assert targets, f"{entry}: control {i} of figure {f} has one stop"
                for target in targets:
                    before = state["src"]
                    _move(control, kind, state["shown"][i]["pos"], target)
                    state = root.evaluate(_STATE)
                    pos = [c["pos"] for c in state["shown"]]
                    assert pos[i] == target, f"{entry}: control {i} at {pos[i]}, not {target}"
                    k = 0
                    for d, q in zip(state["shape"], pos):  # the last control varies fastest
                        k = k * d + q
                    where = f"{entry}, figure {f}, control {i} at stop {target}"
                    assert state["frame"] == k, f"{where}: frame {state['frame']}, not {k}"
                    assert state["src"] == "data:image/png;base64," + state["frames"][k]
                    assert state["src"] != before, f"{where}: the image did not change"
                    assert state["alt"] == state["alts"][k]
                    for name, c in zip(state["names"], state["shown"]):
                        assert f"{name} = {c['label']}" in state["alt"], (where, state["alt"])
        broken = page.eval_on_selector_all(
            "img.dlbook-frame", "els => els.filter(e => !e.complete || e.naturalWidth === 0)"
        )
        assert not broken, f"{entry}: a frame did not decode"
        assert not p.errors, f"{entry}: JavaScript errors:\n" + "\n".join(p.errors)
        later = [u for u in p.requests[loaded:] if not u.startswith("data:")]
        assert not later, f"{entry}: moving the controls requested {later}"
        away = [u for u in p.requests if not u.startswith((site, "data:"))]
        assert not away, f"{entry}: requests off the book's own server: {away}"
    finally:
        p.close()


def test_a_figure_of_frames_works_from_a_file_and_without_javascript(browser, tmp_path):
    """One figure's HTML alone, opened from ``file://``: moving its slider by the keyboard shows
    the frame whose alt names the new value; with JavaScript off, its controls are disabled."""
    import ipywidgets
    import matplotlib.pyplot as plt

    from dlbook.frames import frame_grid, frames_html, render_frames

    def plot(temperature=1.0, kind="bars"):
        fig, ax = plt.subplots(figsize=(3, 2), dpi=60)
        x = list(range(6))
        y = [2.0 ** (-i / temperature) for i in x]
        (ax.bar if kind == "bars" else ax.plot)(x, y)
        ax.set_title(f"{kind} at temperature {temperature:g}")
        return fig

    controls = {
        "temperature": ipywidgets.FloatLogSlider(value=1.0, min=-1, max=1, step=0.5),
        "kind": ipywidgets.Dropdown(options=["bars", "line"], value="bars"),
    }
    drawn = render_frames(plot, frame_grid(controls))
    page = tmp_path / "figure.html"
    page.write_text(f"<!doctype html><html><body>{frames_html(drawn)}</body></html>")
    url = page.as_uri()
    assert url.startswith("file://")

    tab = browser.new_page()
    errors, requests = [], []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("request", lambda r: requests.append(r.url))
    try:
        tab.goto(url)
        slider = tab.locator("input[type=range]")
        assert slider.is_enabled()
        slider.focus()
        slider.press("ArrowRight")  # temperature 1 -> 3.16
        img = tab.locator("img.dlbook-frame")
        assert img.get_attribute("alt").startswith("Figure at temperature = 3.16, kind = bars.")
        assert "bars at temperature 3.16" in img.get_attribute("alt")
        assert tab.locator("output").text_content() == "3.16"
        tab.locator("select").select_option(index=1)
        assert "temperature = 3.16, kind = line" in img.get_attribute("alt")
        k = drawn.indices.index((3, 1))
        assert img.get_attribute("data-frame") == str(k)
        assert tab.locator(".dlbook-frames-live").text_content() == drawn.alts[k]
        assert not errors, errors
        assert all(u == url or u.startswith("data:") for u in requests), requests
    finally:
        tab.close()

    context = browser.new_context(java_script_enabled=False)
    try:
        tab = context.new_page()
        tab.goto(url)
        assert tab.locator("input[type=range]").is_disabled()
        assert tab.locator("select").is_disabled()
        alt = tab.locator("img.dlbook-frame").get_attribute("alt")
        assert alt == drawn.alts[drawn.default]  # the figure at its defaults still shows
    finally:
        context.close()
