"""House rules for the book's notebooks, and the student versions of the exercise notebooks.

nbval executes the notebooks themselves (see pytest.ini); these tests check what nbval cannot:
how the notebooks are committed, that each starts with the same Colab-ready setup cell, and that
the student notebooks made from them hold no solution and stop at the first exercise.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from dlbook.exercises import make_student as ms
from dlbook.nbtools import notebooks, repository, setup_head, toc_entries, toc_parts

from conftest import ROOT

NOTEBOOKS = notebooks(ROOT / "chapters")
EXERCISES = [p for p in NOTEBOOKS if ms.has_solutions(nbformat.read(p, as_version=4))]
IDS = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_discovery_skips_hidden_and_underscore_folders_below_the_folder_only(tmp_path):
    book = tmp_path / ".a-hidden-parent" / "book"  # what lies above the folder does not count
    files = [
        "b.ipynb",
        "a/z.ipynb",
        "a/.ipynb_checkpoints/z-checkpoint.ipynb",
        "_build/jupyter_execute/b.ipynb",
        "a/__pycache__/x.ipynb",
        ".git/y.ipynb",
        "notes.md",
    ]
    for f in files:
        (book / f).parent.mkdir(parents=True, exist_ok=True)
        (book / f).write_text("{}")
    assert notebooks(book) == [book / "a" / "z.ipynb", book / "b.ipynb"]
    with pytest.raises(ValueError, match="not a folder"):
        notebooks(book / "b.ipynb")


def test_the_toc_walk_is_in_reading_order(tmp_path):
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n"
        "  - caption: Two\n    chapters:\n      - file: z/index\n        sections:\n"
        "          - file: z/b.ipynb\n          - file: z/a\n"
        "  - caption: One\n    chapters:\n      - file: a/index\n"
    )
    for f in ("intro.md", "z/index.md", "z/b.ipynb", "z/a.ipynb", "a/index.md", "z/c.ipynb"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("{}")
    assert toc_entries(tmp_path) == ["intro", "z/index", "z/b", "z/a", "a/index"]
    assert toc_parts(tmp_path) == [("Two", ["z/index", "z/b", "z/a"]), ("One", ["a/index"])]
    assert notebooks(tmp_path, toc_only=True) == [tmp_path / "z/b.ipynb", tmp_path / "z/a.ipynb"]
    assert notebooks(tmp_path) == [tmp_path / f"z/{n}.ipynb" for n in "abc"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under chapters/"
    assert EXERCISES, "no exercise notebook (with ### BEGIN SOLUTION) found under chapters/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_valid_and_committed_without_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, (
        f"cells {dirty} have outputs or execution counts; strip them with "
        f"python -m dlbook.nbtools strip {path.relative_to(ROOT)}"
    )
    assert "widgets" not in nb.metadata, "widget state is committed; strip the notebook"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_code_cell_sets_up_dlbook_from_the_configured_repository(path):
    code = _code(_read(path))
    assert code, "the notebook has no code cell"
    first = code[0]
    url, branch = repository(ROOT)
    assert first.source.startswith(setup_head(ROOT)), (
        "the first code cell must start with the canonical setup block, which installs dlbook "
        f"from {url}@{branch} (the repository in _config.yml):\n{setup_head(ROOT)}"
    )
    assert re.search(r"^rt = dlbook\.setup\(seed=\d+", first.source, re.M), (
        "the first code cell must call dlbook.setup(seed=...) to seed and pick the device"
    )
    assert "hide-output" in first.metadata.get("tags", []), "tag the setup cell hide-output"


def test_every_setup_cell_names_the_same_repository_as_config():
    url, branch = repository(ROOT)
    pattern = re.compile(r'%pip install -q "dlbook @ git\+(\S+)@(\S+)#subdirectory=code"')
    for path in NOTEBOOKS:
        m = pattern.search(_code(_read(path))[0].source)
        assert m, f"{path}: no install line"
        assert (m.group(1), m.group(2)) == (url, branch), f"{path}: installs from {m.groups()}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_asserts_its_claims(path):
    sources = "\n".join(c.source for c in _code(_read(path)))
    assert re.search(r"^\s*assert\b|\bcheck_\w+\(", sources, re.M), (
        "the notebook asserts nothing: every claim its text makes needs an assert (or a checker)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_in_the_table_of_contents(path):
    rel = path.relative_to(ROOT).with_suffix("").as_posix()
    assert rel in toc_entries(ROOT), (
        f"{rel} is not listed in _toc.yml, so the book would not show it"
    )


def test_every_toc_entry_exists():
    for entry in toc_entries(ROOT):
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry


# ----------------------------------------------------------------------------- student versions


@pytest.mark.parametrize("path", EXERCISES, ids=[str(p.relative_to(ROOT)) for p in EXERCISES])
def test_student_notebook_contains_no_solution_text(path, tmp_path):
    written = ms.make_student(path.parent, tmp_path, quiet=True)
    student_path = tmp_path / path.name
    assert student_path in written
    instructor = _read(path)
    student = _read(student_path)
    text = "\n".join(c.source for c in student.cells)
    leaked = [line for line in ms.solution_lines(instructor) if line in text]
    assert not leaked, f"solution lines survive in the student notebook: {leaked}"
    assert not any(m in text for m in ms.MARKERS)
    assert all(not c.get("outputs") for c in student.cells)
    assert sum("raise NotImplementedError()" in c.source for c in _code(student)) >= 1
    # annotation for nbgrader is possible on every exercise notebook
    assert ms.annotate_nbgrader(instructor) >= 1


@pytest.mark.parametrize("path", EXERCISES, ids=[str(p.relative_to(ROOT)) for p in EXERCISES])
def test_student_notebook_runs_until_the_first_exercise_then_raises_not_implemented(path):
    student = ms.student_notebook(_read(path), name=path.name)
    first_stub = next(
        i
        for i, c in enumerate(student.cells)
        if c.cell_type == "code" and "raise NotImplementedError()" in c.source
    )
    client = NotebookClient(
        student,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    with pytest.raises(CellExecutionError) as err:
        client.execute()
    assert err.value.ename == "NotImplementedError", (
        f"the student notebook failed with {err.value.ename}, not NotImplementedError:\n{err.value}"
    )
    failed = [
        i
        for i, c in enumerate(student.cells)
        if c.cell_type == "code"
        and any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]
    assert failed and failed[0] >= first_stub, "a cell before the first exercise failed"
