"""The full budget's code runs on the CPU: every notebook that reads the budget, in a smoke run.

A reader with a CUDA GPU gets the ``full`` budget: bigger models, longer training, dropout. No
machine of CI has a GPU, so this path would otherwise run nowhere (and it had bugs: a block check
with dropout on, a KV cache in float32 under bf16 autocast). Here each notebook that reads the
budget runs with ``DLBOOK_BUDGET=full DLBOOK_SMOKE=1``: the full configurations, every loop cut to
a few steps (``by_budget(..., smoke=...)``), the claims about trained models skipped where the
notebook says so (``if not rt.smoke:``). The notebooks that train a GPT also run under CPU bf16
autocast (``DLBOOK_AUTOCAST=bf16``), the GPU's mixed precision.

A notebook that does not read the budget runs the same code on every budget, and its normal run
(``test_notebook_runs.py``) covers it; the last test below keeps that premise true.
"""

from __future__ import annotations

import re

import nbformat
import pytest

import notebook_runs as nr
from conftest import ROOT

READS_BUDGET = re.compile(r"\bby_budget\(|\brt\.budget\b|\bdlbook\.budget\(|\brt\.smoke\b")
USES_AUTOCAST = re.compile(
    r"\bgpt\.(train_step|estimate_loss|generate)\(|from dlbook\.gpt import|from dlbook import gpt\b"
)


def _code(path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


NOTEBOOKS = nr.book_notebooks()
BUDGET = [p for p in NOTEBOOKS if READS_BUDGET.search(_code(p))]
AUTOCAST = [p for p in NOTEBOOKS if USES_AUTOCAST.search(_code(p))]
BF16 = {**nr.SMOKE, "DLBOOK_AUTOCAST": "bf16"}
JOBS = [(p, nr.SMOKE) for p in BUDGET] + [(p, BF16) for p in AUTOCAST]


def _id(job) -> str:
    path, env = job
    return str(path.relative_to(ROOT)) + (" bf16" if "DLBOOK_AUTOCAST" in env else "")


@pytest.fixture(scope="session")
def smoke_runs():
    return nr.execute_many(JOBS, jobs=2)


def test_the_budget_reading_notebooks_are_found():
    names = {p.name for p in BUDGET}
    assert {"gpt-training.ipynb", "cartpole.ipynb", "mixtures.ipynb"} <= names, names
    assert {p.name for p in AUTOCAST} >= {"gpt-training.ipynb", "generation.ipynb"}


@pytest.mark.parametrize("index", range(len(JOBS)), ids=[_id(j) for j in JOBS])
def test_notebook_passes_a_smoke_run_of_the_full_budget(smoke_runs, index):
    run = smoke_runs[index]
    failure = run.failure()
    assert failure is None, failure
    printed = run.setup_output()
    assert "budget: full (smoke run" in printed, f"not a smoke run of the full budget: {printed}"


def test_only_the_runtime_reads_the_budget():
    """So a notebook that never names the budget runs the same code on every budget."""
    readers = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "code" / "dlbook").rglob("*.py"))
        if p.name not in ("runtime.py", "__init__.py")
        and re.search(r"\b(by_budget|budget|smoke)\(|DLBOOK_(BUDGET|SMOKE)", p.read_text())
    ]
    assert not readers, f"these modules read the budget: smoke-run notebooks using them {readers}"


def test_the_gpu_command_reads_the_gpt_notebooks_figures(smoke_runs):
    """``python -m benchmarks.gpu`` fails a GPU run whose validation loss misses 1.50: it must
    find that loss in what the notebook prints (here, in the smoke run's output)."""
    from benchmarks.gpu import notebook_figures

    i = next(i for i, (p, env) in enumerate(JOBS) if p.name == "gpt-training.ipynb")
    figures, val = notebook_figures(smoke_runs[i].notebook)
    assert val is not None and 0 < val < 10, figures
    assert "budget full (smoke run)" in figures and any("tokens/s" in f for f in figures)
