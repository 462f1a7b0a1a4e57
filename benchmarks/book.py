"""Execution time of every notebook, and of the whole book build, against the budgets.

    python -m benchmarks.book                 # every notebook, then `jupyter-book build .`
    python -m benchmarks.book --quick         # CI-sized: the preface's notebooks, no build
    python -m benchmarks.book --only 03-gpt   # the notebooks whose path contains 03-gpt
    python -m benchmarks.book --build-only [--no-frames]   # the build alone, frames on (off)

Each notebook runs alone in a fresh kernel, one after the other, as a reader's
``jupyter-book build .`` runs it; the build runs into a temporary folder with an empty execution
cache, so it executes every notebook again. Budgets: 4 minutes per notebook on the 2-core CPU;
45 minutes for the whole ``pytest``, which executes every notebook once, two at a time
(``tests/notebook_runs.py``), and builds the book from those runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

from benchmarks._common import parser, record, table
from dlbook import nbtools

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 240.0


def notebooks(only: str | None = None) -> list[Path]:
    """The book's notebooks (``dlbook.nbtools.notebooks``), those whose path contains ``only``."""
    return [p for p in nbtools.notebooks(ROOT / "chapters") if only is None or only in str(p)]


def run_notebook(path: Path) -> float:
    """Seconds to execute the notebook as the book's build does (``DLBOOK_FRAMES`` as set)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main(argv=None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--only", default=None, help="only notebooks whose path contains this")
    p.add_argument("--skip-build", action="store_true", help="do not time jupyter-book build")
    p.add_argument("--build-only", action="store_true", help="time jupyter-book build alone")
    p.add_argument(
        "--no-frames",
        action="store_true",
        help="DLBOOK_FRAMES=0: interactive figures draw no frames (the book before they did)",
    )
    args = p.parse_args(argv)
    os.environ["DLBOOK_FRAMES"] = "0" if args.no_frames else "1"  # the kernels inherit it
    frames = "without" if args.no_frames else "with"
    only = "00-preface" if args.quick and not args.only else args.only
    rows, total = [], 0.0
    for path in [] if args.build_only else notebooks(only):
        sec = run_notebook(path)
        total += sec
        verdict = "ok" if sec <= BUDGET_S else "OVER BUDGET"
        rows.append([str(path.relative_to(ROOT)), f"{sec:.1f}", verdict])
        print(f"{rows[-1][0]}: {sec:.1f} s", flush=True)
    if not args.build_only:
        rows.append(["**all notebooks**", f"{total:.1f}", f"{total / 60:.1f} min"])
    notes = f"Budget: {BUDGET_S:.0f} s per notebook. Interactive figures {frames} their frames."
    if not (args.quick or args.skip_build or args.only):
        with tempfile.TemporaryDirectory() as out:
            jb = Path(sys.executable).with_name("jupyter-book")
            start = time.perf_counter()
            r = subprocess.run(
                [str(jb), "build", str(ROOT), "--path-output", out, "-W", "-n", "--keep-going"],
                capture_output=True,
                text=True,
            )
            build = time.perf_counter() - start
        status = "ok" if r.returncode == 0 else f"FAILED (exit {r.returncode})"
        what = f"`jupyter-book build .` (fresh cache, {frames} frames)"
        rows.append([what, f"{build:.1f}", status])
        notes += (
            f" A reader's build executes every notebook: {build / 60:.1f} min. pytest executes each"
            " notebook once, two at a time, and builds the book from those runs."
        )
    record(
        # a build-only section is titled apart: tests/notebook_runs.py reads the last "book:" one
        f"book build alone, {frames} the interactive figures' frames"
        if args.build_only
        else "book: notebook execution times",
        torch.device("cpu"),
        table(["notebook", "seconds", "verdict"], rows),
        notes=notes,
        write=not args.no_record,
    )


if __name__ == "__main__":
    main()
