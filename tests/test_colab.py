"""Colab readers: the book's package installs next to Colab's own and its notebooks run there.

Every notebook's first cell runs ``%pip install "dlbook @ git+...#subdirectory=code"`` in Colab.
That install must replace none of Colab's preinstalled packages (Colab's ``google-colab``
requires ``ipython==7.34.0``), so ``code/pyproject.toml``'s bounds accept Colab's versions, and
dlbook works on them: IPython 7.34, ipywidgets 7.7, traitlets 5.7, jupyter_client 7.4, ...
Colab's versions are read from ``../shared/colab/colab-runtime.txt`` (tests/colab_env.py); where
that file is absent, the tests that need it skip and say so.

The tests marked ``colab`` build one virtual environment per session holding those versions
(tests/colab_env.py: Python 3.11 and the CPU build of torch 2.13.0 stand in for Colab's 3.13 and
CUDA torch 2.11), then:

* pip's dry run of ``pip install ./code`` there, the notebooks' own install, must install nothing
  that is already installed;
* with dlbook installed there (constrained to Colab's versions) and nbval, nbval runs, in that
  environment's kernels: the setup and import cells of every notebook (:data:`SETUP_NOTEBOOK`, in
  one kernel, each in its notebook's folder), followed by a check that dlbook's widgets and
  progress bars give live views through IPython 7.34's display formatter on ipywidgets 7.7; every
  exercises notebook; one notebook with a teaching widget per chapter (:data:`WIDGET_NOTEBOOKS`),
  all as smoke runs but the one that trains a real model (:data:`TRAINING_NOTEBOOK`).

Select them with ``pytest -m colab tests/test_colab.py``; the others here are quick unit checks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import colab_env
import nbformat
import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from conftest import ROOT

CHAPTERS = ROOT / "chapters"
SHARED_DATA = ROOT.parent / "shared" / "data"
SETUP_NOTEBOOK = "setup cells of every notebook"

# The cheapest notebook with a teaching widget (dlbook.widgets.interactive_figure) of each chapter,
# by benchmarks/RESULTS.md's notebook times.
WIDGET_NOTEBOOKS = {
    "01-backprop": "vanishing-gradients.ipynb",
    "02-attention": "attention-that-learns.ipynb",
    "03-gpt": "gpt-training.ipynb",
    "04-gans": "digits.ipynb",
    "05-rl": "policy-gradient-checks.ipynb",
    "06-assistant": "exact-preferences.ipynb",
}
# The one that runs in full, as the training notebook: it trains an attention model to reverse
# digits (400 steps, about 15 s) through dlbook.train.train_loop's progress bar and live plot, and
# checks that it learnt. The other widget notebooks run as smoke runs (DLBOOK_SMOKE=1: the same
# code, training loops cut short; gpt-training would train for 100 s): their widgets, progress
# bars and plots run all the same.
TRAINING_NOTEBOOK = "02-attention/attention-that-learns.ipynb"

colab = pytest.mark.colab


def _runtime_text() -> str:
    if not colab_env.RUNTIME_FILE.is_file():
        pytest.skip(
            f"{colab_env.RUNTIME_FILE} is absent: it lists Colab's preinstalled versions "
            "(it lies beside the checkout, in shared/colab/)"
        )
    return colab_env.RUNTIME_FILE.read_text()


def _strip_ansi(text: str) -> str:
    """``text`` without terminal colours (junit reports spell the escape character ``#x1B``)."""
    return re.sub(r"(?:\x1b|#x1B)\[[0-9;]*[A-Za-z]", "", text)


# ----------------------------------------------------------------------------- quick checks


def test_read_pins_reads_every_pin_and_refuses_other_lines():
    text = "# Colab, Python 3.13.15\n\nIPython==7.34.0\ntorch==2.11.0+cu128  # CUDA\n"
    assert colab_env.read_pins(text) == {"ipython": "7.34.0", "torch": "2.11.0+cu128"}
    assert colab_env.colab_python(text) == "3.13.15"
    with pytest.raises(ValueError, match="line 2"):
        colab_env.read_pins("numpy==2.1.3\nipython>=7\n")


def test_bounds_accept_every_version_colab_has():
    """Each dependency's bound holds Colab's version, torch's CUDA 2.11 build included."""
    text = _runtime_text()
    pins = colab_env.read_pins(text)
    project = tomllib.loads((ROOT / "code" / "pyproject.toml").read_text())["project"]
    checked, refused = [], []
    for line in project["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name in pins:
            checked.append(name)
            if not req.specifier.contains(pins[name], prereleases=True):
                refused.append(f"{line!r} refuses Colab's {name} {pins[name]}")
    assert not refused, "code/pyproject.toml: " + "; ".join(refused)
    assert {"torch", "numpy", "ipython", "ipywidgets", "matplotlib"} <= set(checked), checked
    python = colab_env.colab_python(text)
    assert python, "colab-runtime.txt names no Python version"
    requires = SpecifierSet(project["requires-python"])
    for version in (python, "3.10", "3.11"):
        assert requires.contains(version), f"requires-python {requires} refuses Python {version}"


def test_a_widget_notebook_for_every_chapter_that_has_one():
    uses = {
        nb.parent.name
        for nb in CHAPTERS.glob("*/*.ipynb")
        if "interactive_figure(" in nb.read_text(encoding="utf-8")
    }
    assert uses == set(WIDGET_NOTEBOOKS), (
        f"chapters with interactive figures: {sorted(uses)}; WIDGET_NOTEBOOKS names "
        f"{sorted(WIDGET_NOTEBOOKS)}: pick the cheapest widget notebook of each"
    )
    for chapter, name in WIDGET_NOTEBOOKS.items():
        assert "interactive_figure(" in (CHAPTERS / chapter / name).read_text(encoding="utf-8")
    assert TRAINING_NOTEBOOK in {f"{ch}/{name}" for ch, name in WIDGET_NOTEBOOKS.items()}
    assert "train_loop(" in (CHAPTERS / TRAINING_NOTEBOOK).read_text(encoding="utf-8")


class _Widget7:
    """What an ipywidgets 7 widget offers IPython (Colab's 7.7.1): no ``_repr_mimebundle_``."""

    _view_name = "VBoxView"
    _model_id = "0123abcd"

    def __init__(self) -> None:
        self.displayed = 0

    def _handle_displayed(self, **kwargs) -> None:
        self.displayed += 1

    def __repr__(self) -> str:
        return "VBox(children=(IntSlider(value=1),))"


def test_widget_displays_work_on_ipywidgets_7_and_8():
    """The controls of an interactive figure and the progress bar show live widget views."""
    import ipywidgets

    from dlbook.train import _Bundle
    from dlbook.widgets import VIEW_MIME, _Controls, view_bundle

    slider = ipywidgets.IntSlider(value=1, min=0, max=3)
    for box in (_Widget7(), ipywidgets.VBox([slider])):  # ipywidgets 7's protocol, then 8's
        controls = _Controls(box, {"n": slider}, note=True)._repr_mimebundle_()
        bar = _Bundle(box, "training: 100%|##########| 3/3")._repr_mimebundle_()
        for bundle in (view_bundle(box), controls, bar):
            assert bundle[VIEW_MIME]["version_major"] == 2, bundle
            assert bundle[VIEW_MIME]["model_id"] == box._model_id, bundle
        assert "n: IntSlider from 0 to 3 (default 1)" in controls["text/html"]
        assert bar["text/plain"] == "training: 100%|##########| 3/3"
    widget7 = _Widget7()
    view_bundle(widget7)
    assert widget7.displayed == 1, "ipywidgets 7's on_displayed callbacks did not run"


# ----------------------------------------------------------------------------- Colab's versions


@dataclass
class ColabEnv:
    """The session's environment of Colab's versions, and what ``pip install ./code`` would do."""

    env: colab_env.Env
    resolution: colab_env.Resolution
    folder: Path


@pytest.fixture(scope="session")
def colab_venv(tmp_path_factory) -> Iterator[ColabEnv]:
    """Build the environment (once per session) and resolve ./code against it at once.

    The resolution comes first, while dlbook is not installed there: the notebooks' fixture
    installs it afterwards.
    """
    text = _runtime_text()
    python = colab_env.python311()
    if python is None:
        pytest.skip("needs Python 3.11 (python3.11): the CPU build of torch on disk is for 3.11")
    folder = tmp_path_factory.mktemp("colab")
    env = colab_env.build(folder, text, python)
    start = time.perf_counter()
    resolution = colab_env.resolve(env, ROOT / "code", folder / "report.json")
    print(
        f"\ncolab: environment of Colab's versions built in {env.seconds:.0f} s, "
        f"./code resolved against it in {time.perf_counter() - start:.0f} s"
    )
    yield ColabEnv(env, resolution, folder)
    shutil.rmtree(folder / "venv", ignore_errors=True)  # 1.6 GB; the reports stay


@colab
def test_installing_dlbook_replaces_none_of_colabs_packages(colab_venv):
    res = colab_venv.resolution
    assert "dlbook" in res.install, f"the dry run did not resolve ./code: {res.install}"
    assert not res.replaced, (
        "in Colab, the notebooks' `%pip install dlbook` would replace Colab's own "
        f"{', '.join(res.replaced)}; lower those bounds in code/pyproject.toml (to at most "
        "Colab's versions in colab-runtime.txt) and guard the features that need newer ones"
    )


@dataclass
class NotebookRun:
    """nbval's verdict on one notebook: its cells, and the failures with their tracebacks."""

    cells: int = 0
    failures: list[str] = field(default_factory=list)


def _setup_notebook(pins: dict[str, str]) -> nbformat.NotebookNode:
    """Every notebook's setup cell and import cell, each run in its notebook's folder, then a
    check that the kernel runs Colab's versions and that dlbook's displays work there."""
    cells = []
    for path in sorted(CHAPTERS.glob("*/*.ipynb")):
        code = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        rel = path.relative_to(ROOT)
        cells.append(f"# {rel}: in its folder\nimport os\n\nos.chdir({str(path.parent)!r})")
        cells.append(f"# {rel}, code cell 1 (setup)\n{code[0]}")
        if len(code) > 1 and re.search(r"^(import|from) ", code[1], re.MULTILINE):
            cells.append(f"# {rel}, code cell 2 (imports)\n{code[1]}")
    cells.append(
        f"""# The kernel runs Colab's versions, and dlbook's displays work there
from importlib.metadata import version

from IPython import get_ipython
from packaging.version import Version

pins = {pins!r}
wrong = [f"{{n}} {{version(n)}} (Colab: {{v}})" for n, v in pins.items()
         if Version(Version(version(n)).public) != Version(Version(v).public)]
assert not wrong, f"not Colab's versions: {{wrong}}"

import ipywidgets
import matplotlib

import dlbook
from dlbook.train import _Bundle, progress_bar
from dlbook.widgets import VIEW_MIME, _Controls

dlbook.setup(seed=0, quiet=True)
assert "inline" in matplotlib.get_backend(), matplotlib.get_backend()  # figures show
fmt = get_ipython().display_formatter.format
controls = {{"n": ipywidgets.IntSlider(value=1, min=0, max=3)}}
data, _ = fmt(_Controls(ipywidgets.VBox(list(controls.values())), controls, True))
assert VIEW_MIME in data and "n: IntSlider" in data["text/html"], data
bar = progress_bar(range(3), desc="check")
assert type(bar).__name__ == "_BookProgress", type(bar).__mro__  # tqdm's notebook bar
for _ in bar:
    pass
data, _ = fmt(_Bundle(bar.container, str(bar)))
assert VIEW_MIME in data and "3/3" in data["text/plain"], data"""
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def _nbval(python: Path, notebooks: list[Path], env: dict[str, str], junit: Path) -> str:
    """Run nbval on ``notebooks`` with ``python``; return its output (the verdict is in junit)."""
    cmd = [
        str(python), "-m", "pytest", "-c", os.devnull, "--rootdir", str(ROOT),
        "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
        "--nbval-cell-timeout=900", "--nbval-kernel-startup-timeout=300", "--color=no",
        "-o", "junit_family=xunit1", f"--junitxml={junit}", "-q", *map(str, notebooks),
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=3600)
    return r.stdout + r.stderr


def _read_junit(junit: Path, log: str) -> dict[Path, NotebookRun]:
    """``{notebook: NotebookRun}`` from nbval's junit report."""
    if not junit.is_file():
        raise RuntimeError(f"nbval wrote no report; its output:\n{_strip_ansi(log)[-5000:]}")
    runs: dict[Path, NotebookRun] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        path = (ROOT / case.get("file", "")).resolve()
        run = runs.setdefault(path, NotebookRun())
        run.cells += 1
        for bad in [*case.iter("failure"), *case.iter("error")]:
            text = _strip_ansi(bad.text or bad.get("message", ""))
            run.failures.append(f"{case.get('name')}: {text[-4000:]}")
    return runs


@pytest.fixture(scope="session")
def colab_notebooks(colab_venv) -> dict[str, tuple[Path, NotebookRun, str]]:
    """nbval's runs on Colab's versions: ``{name: (notebook, run, nbval's output)}``.

    dlbook, pytest and nbval are installed in the environment with Colab's versions as
    constraints, which must then still all be there. Two nbval processes run at a time.
    """
    env = colab_venv.env
    pins = dict(colab_env.read_pins(colab_env.RUNTIME_FILE.read_text()))
    wanted = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if re.match(r"(pytest|nbval)==", line.strip())
    ]
    assert len(wanted) == 2, f"requirements.txt pins no pytest or nbval: {wanted}"
    start = time.perf_counter()
    env.pip(
        "install",
        "--quiet",
        "--no-compile",
        "-c",
        str(env.constraints),
        str(ROOT / "code"),
        *wanted,
    )
    changed = env.changed_pins()
    assert not changed, (
        "installing dlbook, pytest and nbval changed Colab's versions: " + "; ".join(changed)
    )
    installed = time.perf_counter() - start

    # Colab's defaults: the kernel picks its own matplotlib backend, and dlbook its own budget.
    run_env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    for name in ("MPLBACKEND", "DLBOOK_BUDGET", "DLBOOK_SMOKE"):
        run_env.pop(name, None)
    if (SHARED_DATA / "tinyshakespeare.txt").is_file():
        run_env["DLBOOK_DATA"] = str(colab_venv.folder / "data")
        seed = [str(env.python), "-m", "dlbook.data", "seed", str(SHARED_DATA)]
        r = subprocess.run(seed, capture_output=True, text=True, env=run_env, timeout=300)
        assert r.returncode == 0, f"{' '.join(seed)} failed:\n{r.stdout}{r.stderr}"

    setup = colab_venv.folder / "setup-cells.ipynb"
    kernel_pins = {n: v for n, v in pins.items() if n not in colab_env.LEFT_OUT}
    nbformat.write(_setup_notebook(kernel_pins), setup)
    exercises = _exercises()
    widgets = [CHAPTERS / ch / name for ch, name in WIDGET_NOTEBOOKS.items()]
    names = {setup: SETUP_NOTEBOOK}
    names.update({p: str(p.relative_to(ROOT)) for p in [*exercises, *widgets]})
    training = CHAPTERS / TRAINING_NOTEBOOK
    # Two nbval processes, of about equal time, at once.
    groups = [
        ([p for p in widgets if p != training], {"DLBOOK_SMOKE": "1"}),
        ([training, setup, *exercises], {}),
    ]

    def run(i: int, notebooks: list[Path], extra: dict[str, str]):
        junit = colab_venv.folder / f"nbval-{i}.xml"
        start = time.perf_counter()
        log = _nbval(env.python, notebooks, {**run_env, **extra}, junit)
        took = time.perf_counter() - start
        print(f"colab: {took:.0f} s: {', '.join(names[nb] for nb in notebooks)}")
        return notebooks, _read_junit(junit, log), log

    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda g: run(*g), [(i, *g) for i, g in enumerate(groups)]))
    print(
        f"\ncolab: dlbook, pytest and nbval installed in {installed:.0f} s; "
        f"{len(names)} notebooks run on Colab's versions in {time.perf_counter() - start:.0f} s"
    )
    out = {}
    for notebooks, runs, log in done:
        for nb in notebooks:
            out[names[nb]] = (nb, runs.get(nb.resolve(), NotebookRun()), log)
    return out


def _exercises() -> list[Path]:
    """Every exercises notebook, and the preface's demonstration of one."""
    return [
        *sorted(CHAPTERS.glob("*/exercises.ipynb")),
        CHAPTERS / "00-preface" / "demo-exercise.ipynb",
    ]


def _selection() -> list[str]:
    """The names of what runs on Colab's versions, as in :func:`colab_notebooks`."""
    widgets = [CHAPTERS / ch / name for ch, name in WIDGET_NOTEBOOKS.items()]
    return [SETUP_NOTEBOOK, *(str(p.relative_to(ROOT)) for p in [*_exercises(), *widgets])]


@colab
@pytest.mark.parametrize("name", _selection())
def test_notebook_runs_on_colabs_versions(colab_notebooks, name):
    path, run, log = colab_notebooks[name]
    code = sum(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells)
    assert run.cells == code, (
        f"{name}: nbval ran {run.cells} of its {code} code cells; its output:\n"
        + _strip_ansi(log)[-5000:]
    )
    assert not run.failures, f"{name} fails on Colab's versions:\n" + "\n\n".join(run.failures)
