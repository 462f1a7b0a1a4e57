"""Every notebook of the book runs, cell by cell, without an error.

This is the check nbval makes in ``--nbval-lax`` mode (every code cell executes and raises
nothing; the notebooks' own asserts are the claims), made on the one execution of each notebook
that the book build also renders (the session fixture ``notebook_runs``, see
``tests/notebook_runs.py``). To run one notebook through nbval itself while writing it:
``pytest --nbval-lax chapters/03-gpt/bigram.ipynb``.
"""

from __future__ import annotations

import nbformat
import pytest

import notebook_runs as nr
from conftest import ROOT

NOTEBOOKS = nr.book_notebooks()


def test_the_book_has_notebooks_and_each_is_run():
    assert len(NOTEBOOKS) >= 20, f"only {len(NOTEBOOKS)} notebooks in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_notebook_runs_every_cell_without_error(notebook_runs, path):
    run = notebook_runs[path]
    failure = run.failure()
    assert failure is None, failure
    printed = run.setup_output()
    assert "budget: " in printed and "smoke run" not in printed, f"not a normal run: {printed}"


def test_a_failing_cell_is_reported_with_its_error_and_the_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_BUDGET", "full")  # a setting of the shell: not passed on
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import os\nx = os.environ['DLBOOK_SMOKE']\nassert 'DLBOOK_BUDGET' not in os.environ"
        ),
        nbformat.v4.new_code_cell("assert x == '0', 'the claim fails'"),
        nbformat.v4.new_code_cell("print('never reached')"),
    ]
    path = tmp_path / "failing.ipynb"
    nbformat.write(nb, path)
    run = nr.execute(path, env={"DLBOOK_SMOKE": "1"})  # the kernel sees the environment
    failure = run.failure()
    assert not run.ok and failure is not None
    assert "cell 1" in failure and "AssertionError: the claim fails" in failure
    assert "DLBOOK_SMOKE=1" in failure
    nb.cells = nb.cells[:1]
    nbformat.write(nb, path)
    assert nr.execute(path, env={"DLBOOK_SMOKE": "1"}).failure() is None
