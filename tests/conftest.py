"""Shared fixtures: the repository root, an isolated data cache, the built book, `gpu` marker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlbook import nbtools

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))  # the book's Sphinx extensions hold code the tests reuse
sys.path.insert(0, str(ROOT / "tests"))  # notebook_runs
sys.path.insert(1, str(ROOT))  # the benchmarks package


def toc_entries() -> list[str]:
    """Every page of ``_toc.yml``, without suffix, in reading order (the root first)."""
    return nbtools.toc_entries(ROOT)


def toc_parts() -> list[tuple[str, list[str]]]:
    """``(caption, [pages of the part, in order])`` for each part of ``_toc.yml``."""
    return nbtools.toc_parts(ROOT)


@pytest.fixture(scope="session")
def notebook_runs():
    """Every notebook of the book, executed once per session, two at a time.

    ``{path: Run}`` (see ``tests/notebook_runs.py``): the executed notebook, its time, and the
    error, if any. They run as the book build runs them (``DLBOOK_FRAMES=1``: the interactive
    figures draw the HTML book's frames). ``test_notebook_runs.py`` checks each notebook cell by
    cell, and the book build renders these same executions instead of running every notebook
    again.
    """
    import notebook_runs as nr

    return nr.execute_all(nr.book_notebooks(), jobs=2, env=nr.BOOK)


@pytest.fixture(scope="session")
def book_html(tmp_path_factory, notebook_runs) -> Path:
    """Build the whole book once per session, warnings as errors, into a temporary folder.

    This is the README's main job (``jupyter-book build .``), into an empty output folder whose
    execution cache holds the session's notebook runs (``notebook_runs``): the build renders
    their outputs and executes nothing again; a notebook that failed there is not in the cache,
    so the build executes it, and fails on it too. Sphinx's warnings are read where Sphinx writes
    them (``_ext/book_fixes.py`` copies its warning stream into a file), so a log line that
    something else prints, such as a kernel's noise as it shuts down, cannot fail the build.
    """
    import notebook_runs as nr

    out = tmp_path_factory.mktemp("book")
    nr.store_in_cache(notebook_runs, out / "_build" / ".jupyter_cache")
    warnings_file = out / "sphinx-warnings.txt"
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"]
    env = {**os.environ, "DLBOOK_SPHINX_WARNINGS": str(warnings_file)}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    log = r.stdout + r.stderr
    (out / "build.log").write_text(log)
    assert warnings_file.is_file(), "the build did not load _ext/book_fixes.py's warning copy"
    warnings = re.sub(r"\x1b\[[0-9;]*m", "", warnings_file.read_text()).strip()
    assert r.returncode == 0 and not warnings, (
        f"jupyter-book build failed (exit {r.returncode}); Sphinx's warnings:\n"
        + "\n".join(warnings.splitlines()[:50])
        + "\n--- end of log ---\n"
        + log[-3000:]
    )
    cached = len(re.findall(r"Using cached notebook", log))
    executed = len(re.findall(r"Executing notebook", log))
    passed = sum(run.ok for run in notebook_runs.values())
    assert (cached, executed) == (passed, len(notebook_runs) - passed), (
        f"the build took {cached} notebook(s) from the cache and executed {executed}; the session "
        f"ran {passed} without error and {len(notebook_runs) - passed} with one: the execution "
        "cache did not match what the session stored"
    )
    return out / "_build" / "html"


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def data_cache(tmp_path, monkeypatch) -> Path:
    """An empty dataset cache in a temporary folder (DLBOOK_DATA points at it)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DLBOOK_DATA", str(cache))
    return cache


@pytest.fixture
def one_thread():
    """Small networks train fastest on one CPU thread; the test leaves torch as it found it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
