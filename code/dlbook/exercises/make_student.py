"""Make student notebooks from the book's exercise notebooks.

Usage::

    python -m dlbook.exercises.make_student SRC_DIR OUT_DIR

Every notebook under ``SRC_DIR`` that holds a solution is written to the same relative path under
``OUT_DIR`` with the solutions taken out, in nbgrader's conventions (notebooks are found by
:func:`dlbook.nbtools.notebooks`: none below a folder whose name starts with ``.`` or ``_``):

- in code cells, the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` become
  ``# YOUR CODE HERE`` and ``raise NotImplementedError()`` (at the marker's indentation);
- lines from ``### BEGIN HIDDEN TESTS`` to ``### END HIDDEN TESTS`` are removed;
- in markdown cells, ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` becomes ``YOUR ANSWER HERE``,
  and ``=== BEGIN MARK SCHEME ===`` ... ``=== END MARK SCHEME ===`` is removed;
- cells tagged ``solution`` or ``remove-student`` are removed whole (e.g. a worked answer);
- every output and execution count is cleared.

For nbgrader::

    python -m dlbook.exercises.make_student --annotate DIR

adds nbgrader's cell metadata (schema 3) to every notebook under ``DIR`` that holds solutions, in
place, so that nbgrader 0.9's ``generate_assignment`` releases it without its solutions and
``autograde`` scores the checkers. Every cell gets exactly one role:

- **solution** (``solution: true``): a code cell with a ``### BEGIN SOLUTION`` region, where the
  student writes code. nbgrader replaces the region by its stub, as above.
- **written answer** (``solution: true, grade: true``, graded by hand): a markdown cell with a
  ``### BEGIN SOLUTION`` region, or a cell tagged ``solution`` or ``remove-student`` (a worked
  answer). nbgrader does not remove cells by tag; it replaces a solution cell without markers
  whole, so the released notebook shows ``YOUR ANSWER HERE`` (in a code cell, the code stub)
  where the worked answer was, and the student answers there. Autograde leaves these to the
  teacher (an unchanged stub scores 0 at once). A tagged code cell becomes a solution cell.
- **autograded test** (``grade: true, locked: true``): a code cell in which every statement is a
  checker call ``check_*(name, ...)`` on a ``name`` that an earlier solution cell defines (such
  as ``check_softmax_cross_entropy(softmax_cross_entropy)``), or a code cell with a
  ``### BEGIN HIDDEN TESTS`` region. A checker raises ``AssertionError`` with its feedback on a
  wrong answer and passes ``NotImplementedError`` through; either error scores the cell 0.
- **task** (``task: true, locked: true``, graded by hand): a markdown cell with a
  ``=== BEGIN MARK SCHEME ===`` region, which nbgrader removes on release.
- **read-only** (``locked: true``): every other cell. Autograde restores its text from the
  source, so a student cannot change an explanation, an import or a test.

Points: an autograded test scores one point per checker call in it (nbgrader grades a cell all or
nothing: a cell that checks two functions scores 2 or 0), a test cell without checker calls 1;
a written answer or a task 1. A cell's ``metadata["dlbook"]["points"]`` (an integer >= 0)
overrides the default; on any other code cell that is not a solution it makes the cell an
autograded test worth that many points.

Each cell's ``grade_id`` is ``PREFIX-CELLID`` (``PREFIX`` is the notebook's name, ``CELLID`` the
cell's nbformat id, or its index where it has none) and is kept once given, so annotating again
changes nothing; a ``grade_id`` that another cell already holds (a copied cell) is replaced. The
rest of a cell's nbgrader metadata is rebuilt from its role every time.

About 420 lines because the rules above are one pass over a notebook, with the command line that
runs it; split, the roles of cells would be defined in one file and used in another.

Derived in: Preface, *Teaching with this book*.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from dlbook.nbtools import notebooks

__all__ = [
    "annotate_nbgrader",
    "checker_calls",
    "has_solutions",
    "make_student",
    "nbgrader_roles",
    "solution_lines",
    "student_notebook",
    "student_source",
]

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
BEGIN_SCHEME, END_SCHEME = "=== BEGIN MARK SCHEME ===", "=== END MARK SCHEME ==="
REMOVE_TAGS = frozenset({"solution", "remove-student"})
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
ANSWER_STUB = "YOUR ANSWER HERE"
MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN, BEGIN_SCHEME, END_SCHEME)


def _replace_regions(
    lines: list[str], begin: str, end: str, stub: Sequence[str] | None, where: str
) -> list[str]:
    """Replace each ``begin``..``end`` region (marker lines included) by ``stub`` lines."""
    out: list[str] = []
    inside = False
    for n, line in enumerate(lines, 1):
        if begin in line:
            if inside:
                raise ValueError(f"{where}, line {n}: {begin!r} inside another {begin!r} region")
            inside = True
            indent = re.match(r"\s*", line).group(0)
            out += [indent + s for s in (stub or ())]
        elif end in line:
            if not inside:
                raise ValueError(f"{where}, line {n}: {end!r} without a matching {begin!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {begin!r} is never closed by {end!r}")
    return out


def student_source(source: str, cell_type: str, where: str = "cell") -> str:
    """The student version of one cell's source."""
    lines = source.split("\n")
    if cell_type == "code":
        lines = _replace_regions(lines, BEGIN_HIDDEN, END_HIDDEN, None, where)
        lines = _replace_regions(lines, BEGIN_SOLUTION, END_SOLUTION, CODE_STUB, where)
    elif cell_type == "markdown":
        lines = _replace_regions(lines, BEGIN_SCHEME, END_SCHEME, None, where)
        lines = _replace_regions(lines, BEGIN_SOLUTION, END_SOLUTION, (ANSWER_STUB,), where)
    return "\n".join(lines)


def _tags(cell: NotebookNode) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def has_solutions(nb: NotebookNode) -> bool:
    """Whether any cell of ``nb`` holds a solution region or is tagged for removal."""
    return any(
        BEGIN_SOLUTION in c.source or BEGIN_SCHEME in c.source or _tags(c) & REMOVE_TAGS
        for c in nb.cells
    )


def student_notebook(nb: NotebookNode, name: str = "notebook") -> NotebookNode:
    """A copy of ``nb`` with every solution taken out and every output cleared."""
    out = copy.deepcopy(nb)
    cells = []
    for i, cell in enumerate(out.cells):
        if _tags(cell) & REMOVE_TAGS:
            continue
        cell.source = student_source(cell.source, cell.cell_type, where=f"{name}, cell {i}")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    out.cells = cells
    out.metadata["dlbook"] = {"student_version": True}
    return out


def solution_lines(nb: NotebookNode, min_length: int = 8) -> set[str]:
    """Lines that appear inside solution regions and nowhere else in ``nb``.

    A student notebook must contain none of them; the tests use this to prove that nothing of a
    solution leaks. Lines shorter than ``min_length`` characters (``return x``) are ignored.
    """
    inside_lines: set[str] = set()
    outside_lines: set[str] = set()
    for cell in nb.cells:
        removed_whole = bool(_tags(cell) & REMOVE_TAGS)
        region = None
        for line in cell.source.split("\n"):
            text = line.strip()
            if any(m in line for m in MARKERS):
                region = None if region else line
                continue
            target = inside_lines if (removed_whole or region) else outside_lines
            if len(text) >= min_length:
                target.add(text)
    return inside_lines - outside_lines


# ----------------------------------------------------------------------------- nbgrader

SOLUTION, WRITTEN, TEST, TASK, READ_ONLY = "solution", "written", "test", "task", "read-only"
GRADE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def _points_override(cell: NotebookNode, where: str) -> int | None:
    """The cell's ``metadata["dlbook"]["points"]``, checked; None when it is not set."""
    points = cell.get("metadata", {}).get("dlbook", {}).get("points")
    if points is None:
        return None
    if isinstance(points, bool) or not isinstance(points, int) or points < 0:
        raise ValueError(f"{where}: metadata dlbook.points must be an integer >= 0, got {points!r}")
    return points


def _defined_names(source: str) -> set[str]:
    """The names that a cell's top-level statements define (functions, classes, assignments)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def checker_calls(source: str, answers: set[str]) -> int:
    """How many checker calls a code cell is made of; 0 when it holds anything else.

    A checker call is a statement ``check_*(name, ...)`` whose first argument is one of
    ``answers`` (names that the student's solution cells define), as in
    ``check_softmax_cross_entropy(softmax_cross_entropy)``. A cell with any other statement
    (a ``try`` around a checker shown failing on a wrong function, an ``assert``) counts 0.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return 0
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not isinstance(call, ast.Call) or not call.args:
            return 0
        func = call.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        first = call.args[0]
        if not (name.startswith("check_") and isinstance(first, ast.Name) and first.id in answers):
            return 0
    return len(tree.body)


def nbgrader_roles(nb: NotebookNode) -> list[tuple[str, int]]:
    """Each cell's nbgrader role and points, as ``--annotate`` assigns them (module docstring).

    Returns:
        One ``(role, points)`` per cell, the role one of ``SOLUTION``, ``WRITTEN``, ``TEST``,
        ``TASK``, ``READ_ONLY``; points are 0 for the roles that score nothing.
    """
    roles: list[tuple[str, int]] = []
    answers: set[str] = set()
    for i, cell in enumerate(nb.cells):
        where = f"cell {i}"
        override = _points_override(cell, where)
        source, kind = cell.source, cell.cell_type
        tagged = bool(_tags(cell) & REMOVE_TAGS)
        solution_region = BEGIN_SOLUTION in source
        if tagged and solution_region:
            raise ValueError(
                f"{where}: expected a cell tagged {sorted(REMOVE_TAGS)} (removed whole) or a "
                f"{BEGIN_SOLUTION!r} region, got both: nbgrader would release the text around "
                "the region"
            )
        if kind == "markdown" and BEGIN_SCHEME in source:
            if solution_region or tagged:
                raise ValueError(
                    f"{where}: expected a mark scheme or a solution in a markdown cell, got "
                    "both (nbgrader's task cells cannot hold answers)"
                )
            roles.append((TASK, 1 if override is None else override))
        elif kind == "code" and solution_region:
            answers |= _defined_names(source)
            roles.append((SOLUTION, 0))
        elif kind == "code" and tagged:
            roles.append((SOLUTION, 0))
        elif kind == "markdown" and (solution_region or tagged):
            roles.append((WRITTEN, 1 if override is None else override))
        elif kind == "code" and (
            BEGIN_HIDDEN in source or override is not None or checker_calls(source, answers)
        ):
            default = checker_calls(source, answers) or 1
            roles.append((TEST, default if override is None else override))
        else:
            roles.append((READ_ONLY, 0))
        if override is not None and roles[-1][0] not in (TEST, WRITTEN, TASK):
            raise ValueError(
                f"{where}: expected metadata dlbook.points on a cell that scores (a test, a "
                f"written answer or a task), got it on a {roles[-1][0]} {kind} cell"
            )
    return roles


def annotate_nbgrader(nb: NotebookNode, prefix: str = "cell") -> int:
    """Give every cell of ``nb`` nbgrader's metadata for its role, in place (module docstring).

    Args:
        nb: an nbformat 4 notebook.
        prefix: the start of every ``grade_id`` (letters, digits, ``-`` and ``_``).

    Returns:
        How many cells the student answers in (solutions and written answers).
    """
    if not isinstance(nb, NotebookNode) or "cells" not in nb:
        raise ValueError(f"expected an nbformat notebook, got {type(nb).__name__}")
    if not isinstance(prefix, str) or not GRADE_ID.match(prefix):
        raise ValueError(
            f"expected a prefix of letters, digits, '-' and '_' (nbgrader's grade ids), "
            f"got {prefix!r}"
        )
    roles = nbgrader_roles(nb)
    taken: set[str] = set()
    for i, (cell, (role, points)) in enumerate(zip(nb.cells, roles)):
        old_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        grade_id = old_id if isinstance(old_id, str) and GRADE_ID.match(old_id) else None
        if grade_id is None or grade_id in taken:
            grade_id = f"{prefix}-{cell.get('id') or i}"
            n = 1
            while grade_id in taken:  # a copied cell may share its id's grade_id
                grade_id, n = f"{prefix}-{cell.get('id') or i}-{n}", n + 1
        taken.add(grade_id)
        meta = {
            "grade": role in (WRITTEN, TEST),
            "grade_id": grade_id,
            "locked": role in (TEST, TASK, READ_ONLY),
            "schema_version": 3,
            "solution": role in (SOLUTION, WRITTEN),
            "task": role == TASK,
        }
        if role in (WRITTEN, TEST, TASK):
            meta["points"] = points
        cell.metadata["nbgrader"] = meta
    return sum(role in (SOLUTION, WRITTEN) for role, _ in roles)


def _annotate_dir(src_dir: Path) -> list[Path]:
    """``--annotate``: annotate every notebook with solutions under ``src_dir``, in place."""
    if not src_dir.is_dir():
        raise ValueError(f"expected a folder of notebooks to annotate, got {src_dir}")
    annotated = []
    for path in notebooks(src_dir):
        nb = nbformat.read(path, as_version=4)
        if not has_solutions(nb):
            continue
        prefix = re.sub(r"[^A-Za-z0-9_-]", "_", path.stem)
        try:
            annotate_nbgrader(nb, prefix=prefix)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        nbformat.write(nb, path)
        roles = nbgrader_roles(nb)
        tests = [p for r, p in roles if r == TEST]
        by_hand = [p for r, p in roles if r in (WRITTEN, TASK)]
        print(
            f"annotated {path}: {sum(r == SOLUTION for r, _ in roles)} solution cell(s), "
            f"{len(tests)} autograded test cell(s) worth {sum(tests)} point(s), "
            f"{len(by_hand)} answer(s) graded by hand worth {sum(by_hand)} point(s)"
        )
        annotated.append(path)
    return annotated


def make_student(src_dir: str | Path, out_dir: str | Path, *, quiet: bool = False) -> list[Path]:
    """Write the student version of every notebook under ``src_dir`` that holds solutions.

    Returns:
        The paths written, under ``out_dir`` at the same relative paths.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not src_dir.is_dir():
        raise ValueError(f"source folder {src_dir} does not exist")
    if out_dir.resolve() == src_dir.resolve():
        raise ValueError(
            "OUT_DIR must differ from SRC_DIR: the instructor notebooks would be overwritten"
        )
    written = []
    for path in notebooks(src_dir):
        rel = path.relative_to(src_dir)
        nb = nbformat.read(path, as_version=4)
        if not has_solutions(nb):
            continue
        student = student_notebook(nb, name=str(rel))
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student, target)
        written.append(target)
        if not quiet:
            print(f"{path} -> {target}")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dlbook.exercises.make_student",
        description="Write student versions (solutions removed) of exercise notebooks.",
    )
    parser.add_argument("src", help="folder of instructor notebooks (searched recursively)")
    parser.add_argument("out", nargs="?", help="folder for the student notebooks")
    parser.add_argument(
        "--annotate",
        action="store_true",
        help="instead, add nbgrader metadata to every notebook with solutions under SRC, in place",
    )
    args = parser.parse_args(argv)
    if args.annotate:
        if args.out:
            parser.error("--annotate works in place: give SRC only")
        try:
            annotated = _annotate_dir(Path(args.src))
        except ValueError as err:
            print(f"make_student: {err}", file=sys.stderr)
            return 2
        print(f"{len(annotated)} notebook(s) annotated for nbgrader under {args.src}")
        return 0
    if not args.out:
        parser.error("OUT_DIR is required (unless --annotate)")
    try:
        written = make_student(args.src, args.out)
    except ValueError as err:
        print(f"make_student: {err}", file=sys.stderr)
        return 2
    print(f"{len(written)} student notebook(s) written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
