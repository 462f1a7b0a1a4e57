"""Every notebook of the book runs, cell by cell, without an error.

This is the check nbval makes in ``--nbval-lax`` mode (every code cell executes and raises
nothing; the notebooks' own asserts are the claims), made on the one execution of each notebook
that the book build also renders (the session fixture ``notebook_runs``, see
``tests/notebook_runs.py``). To run one notebook through nbval itself while writing it:
``pytest --nbval-lax chapters/03-gpt/bigram.ipynb``.
"""

from __future__ import annotations

import pytest

import notebook_runs as nr
from conftest import ROOT

NOTEBOOKS = nr.book_notebooks()


def test_the_book_has_notebooks_and_each_is_run():
    assert len(NOTEBOOKS) >= 20, f"only {len(NOTEBOOKS)} notebooks in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_notebook_runs_every_cell_without_error(notebook_runs, path):
    run = notebook_runs[path]
    assert run.notebook is not None, f"{run.name}: {run.error}\n--- log:\n{run.log[-3000:]}"
    code = [(i, c) for i, c in enumerate(run.notebook.cells) if c.cell_type == "code"]
    errors = [
        (i, c, o) for i, c in code for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    if errors or run.error:
        i, cell, out = errors[0] if errors else (None, None, {})
        where = f"cell {i}:\n{cell.source[:500]}\n" if cell is not None else ""
        raise AssertionError(
            f"{run.name} failed after {run.seconds:.0f} s, {where}"
            f"{out.get('ename', '')}: {out.get('evalue', '')}\n{run.error or ''}"
        )
    not_run = [i for i, c in code if c.source.strip() and c.get("execution_count") is None]
    assert not not_run, f"{run.name}: cells {not_run} were never executed"
