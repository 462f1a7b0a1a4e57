"""Make student notebooks from the book's exercise notebooks.

Usage::

    python -m dlbook.exercises.make_student SRC_DIR OUT_DIR

Every notebook under ``SRC_DIR`` that holds a solution is written to the same relative path under
``OUT_DIR`` with the solutions taken out, in nbgrader's conventions:

- in code cells, the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` become
  ``# YOUR CODE HERE`` and ``raise NotImplementedError()`` (at the marker's indentation);
- lines from ``### BEGIN HIDDEN TESTS`` to ``### END HIDDEN TESTS`` are removed;
- in markdown cells, ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` becomes ``YOUR ANSWER HERE``,
  and ``=== BEGIN MARK SCHEME ===`` ... ``=== END MARK SCHEME ===`` is removed;
- cells tagged ``solution`` or ``remove-student`` are removed whole (e.g. a worked answer);
- every output and execution count is cleared.

Instructors can also import the original notebooks into nbgrader: ``--annotate`` adds nbgrader's
cell metadata (``solution: true``) to every cell that holds a solution region, in place.

Derived in: Preface, *Teaching with this book*.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbformat import NotebookNode

__all__ = [
    "annotate_nbgrader",
    "has_solutions",
    "make_student",
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


def annotate_nbgrader(nb: NotebookNode, prefix: str = "cell") -> int:
    """Add nbgrader's metadata to every cell that holds a solution region; return how many."""
    n = 0
    for i, cell in enumerate(nb.cells):
        if BEGIN_SOLUTION in cell.source or BEGIN_SCHEME in cell.source:
            meta = cell.metadata.setdefault("nbgrader", {})
            meta.update(
                {
                    "grade": meta.get("grade", False),
                    "locked": False,
                    "solution": True,
                    "schema_version": 3,
                    "task": False,
                }
            )
            meta.setdefault("grade_id", f"{prefix}-{cell.get('id') or i}")
            n += 1
    return n


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
    for path in sorted(src_dir.rglob("*.ipynb")):
        rel = path.relative_to(src_dir)
        if any(p.startswith((".", "_build")) for p in rel.parts):
            continue
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
        help="instead, add nbgrader metadata to the solution cells under SRC, in place",
    )
    args = parser.parse_args(argv)
    if args.annotate:
        for path in sorted(Path(args.src).rglob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            if annotate_nbgrader(nb, prefix=path.stem):
                nbformat.write(nb, path)
                print(f"annotated {path}")
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
