"""Execute the book's notebooks once, in parallel, and hand the results to the book build.

    python tests/notebook_runs.py                        every notebook of _toc.yml, 2 at a time
    python tests/notebook_runs.py --jobs 1 NB.ipynb ...  some notebooks, one at a time
    python tests/notebook_runs.py --cache DIR            also store them in a jupyter-cache
    python tests/notebook_runs.py --smoke                the full budget's code, loops cut short

Run for the book (not ``--smoke``), the notebooks see ``DLBOOK_FRAMES=1``, as the book build's
kernels do (``_ext/book_fixes.py``): their interactive figures draw the HTML book's frames.

Each notebook runs exactly as the book build runs it: MyST-NB's own executor
(``jupyter_cache.executors.utils.single_nb_execution``, which the build calls in its ``cache``
mode), in a fresh kernel, in the notebook's own folder, with the timeout and ``allow_errors`` of
``_config.yml``. A notebook that runs without an error is stored in the build's execution cache
(``<output>/_build/.jupyter_cache``, where ``jupyter-book build . --path-output <output>`` looks
for it), so the build renders these outputs and executes nothing again. The tests read the same
executed notebooks, cell by cell (``tests/test_notebook_runs.py``): every notebook is executed
once per ``pytest`` run, and both checks see that one execution.

Each notebook executes in a subprocess of its own, so a kernel that prints noise as it shuts down
(jupyter_client's ZMQ callbacks) prints it into that subprocess's log, which is kept for a failing
notebook and never parsed: whether a notebook passed is what its executor returned. The run
settings of ``dlbook`` (``DLBOOK_BUDGET``, ``DLBOOK_SMOKE``, ``DLBOOK_AUTOCAST``,
``DLBOOK_FRAMES``) come only from
the caller's ``env``, never from the shell the tests were started in. A notebook whose asserts
depend on measured time (``"dlbook": {"run_alone": true}`` in its metadata) runs while no other
notebook does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SECONDS = 10.0  # a notebook the last book benchmark did not time


@dataclass
class Run:
    """One notebook's execution: the executed notebook and what went wrong, if anything."""

    path: Path  # the notebook, absolute
    env: dict[str, str]  # the environment variables it ran with, beyond the session's
    seconds: float
    notebook: nbformat.NotebookNode | None  # the executed notebook (None: the run crashed)
    error: str | None  # the executor's exception and traceback, or None
    log: str  # what the subprocess printed (kernel noise included); read only on failure

    @property
    def ok(self) -> bool:
        return self.failure() is None

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path)

    def setup_output(self) -> str:
        """What the notebook's first code cell printed (``dlbook.setup``'s line: the budget)."""
        if self.notebook is None:
            return ""
        setup = next((c for c in self.notebook.cells if c.cell_type == "code"), None)
        return "".join(o.get("text", "") for o in setup.outputs) if setup is not None else ""

    def failure(self) -> str | None:
        """What went wrong, as nbval would report it (the cell, its error), or None.

        A run passes when every code cell executed and none produced an error: the check of
        nbval's ``--nbval-lax`` mode, in which the notebooks' own asserts are the claims.
        """
        settings = " ".join(f"{k}={v}" for k, v in self.env.items())
        name = f"{self.name}{f' ({settings})' if settings else ''}"
        if self.notebook is None:
            return f"{name}: {self.error}\n--- log:\n{self.log[-3000:]}"
        code = [(i, c) for i, c in enumerate(self.notebook.cells) if c.cell_type == "code"]
        for i, cell in code:
            if "raises-exception" in cell.metadata.get("tags", []):  # allowed, as in nbval
                continue
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    return (
                        f"{name} failed after {self.seconds:.0f} s, cell {i}:\n"
                        f"{cell.source[:500]}\n{out.get('ename')}: {out.get('evalue')}\n"
                        f"{self.error or ''}"
                    )
        if self.error:
            return f"{name} failed after {self.seconds:.0f} s:\n{self.error}"
        not_run = [i for i, c in code if c.source.strip() and c.get("execution_count") is None]
        if not_run:
            return f"{name}: cells {not_run} were never executed"
        return None


def execute_config() -> dict:
    """The ``execute:`` section of ``_config.yml``: what the build executes with."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config.get("execute", {})


def book_notebooks() -> list[Path]:
    """Every notebook of ``_toc.yml``, in reading order (the ones the build executes)."""
    from dlbook import nbtools  # here: the executor's subprocesses need no torch of their own

    return nbtools.notebooks(ROOT, toc_only=True)


def expected_seconds() -> dict[str, float]:
    """Each notebook's time in the last ``benchmarks.book`` table of ``benchmarks/RESULTS.md``."""
    results = ROOT / "benchmarks" / "RESULTS.md"
    if not results.is_file():
        return {}
    text = results.read_text()
    section = text.rsplit("## book:", 1)[-1] if "## book:" in text else ""
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^\| (chapters/\S+\.ipynb) \| ([\d.]+) \|", section, re.M)
    }


def _execute_in_this_process(path: Path, out: Path) -> None:
    """Execute one notebook as MyST-NB's ``cache`` mode does; write the outcome to ``out``."""
    from jupyter_cache.executors.utils import single_nb_execution

    cfg = execute_config()
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = tmp if cfg.get("run_in_temp", False) else str(path.parent)
        result = single_nb_execution(
            nb,
            cwd=cwd,
            allow_errors=bool(cfg.get("allow_errors", False)),
            timeout=cfg.get("timeout", 30),
            meta_override=True,
        )
    out.write_text(
        json.dumps(
            {
                "seconds": result.time,
                "error": result.exc_string if result.err is not None else None,
                "notebook": nbformat.writes(nb),
            }
        )
    )


SMOKE = {"DLBOOK_BUDGET": "full", "DLBOOK_SMOKE": "1"}  # see dlbook.runtime.smoke
BOOK = {"DLBOOK_FRAMES": "1"}  # executed for the book: interactive figures draw their frames
# set by the caller only
RUN_SETTINGS = ("DLBOOK_BUDGET", "DLBOOK_SMOKE", "DLBOOK_AUTOCAST", "DLBOOK_FRAMES")


def runs_alone(path: Path) -> bool:
    """Whether the notebook asks to run alone: its asserts compare measured times."""
    nb = nbformat.read(path, as_version=4)
    return bool(nb.metadata.get("dlbook", {}).get("run_alone", False))


def execute(path: Path, env: dict[str, str] | None = None, timeout: float | None = None) -> Run:
    """Execute one notebook in a subprocess of its own (a fresh kernel, its own stderr).

    ``env``: environment variables to set for it (and its kernel), e.g. :data:`SMOKE`; the run
    settings it does not name are unset. ``timeout``: seconds for the whole notebook.
    """
    path, env = Path(path).resolve(), dict(env or {})
    base = {k: v for k, v in os.environ.items() if k not in RUN_SETTINGS}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--one", str(path), "--out", str(out)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={**base, **env},
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as err:
            log = f"{err.stdout or ''}{err.stderr or ''}"
            return Run(
                path, env, time.perf_counter() - start, None, f"out of time ({timeout:.0f} s)", log
            )
        log = proc.stdout + proc.stderr
        if proc.returncode != 0 or not out.is_file():
            return Run(
                path,
                env,
                time.perf_counter() - start,
                None,
                f"the executor exited with {proc.returncode}",
                log,
            )
        data = json.loads(out.read_text())
    nb = nbformat.reads(data["notebook"], as_version=4)
    return Run(path, env, data["seconds"], nb, data["error"], log)


def execute_many(
    runs: list[tuple[Path, dict[str, str]]],
    jobs: int = 2,
    quiet: bool = True,
    timeout: float | None = None,
) -> list[Run]:
    """Execute each ``(notebook, env)``, ``jobs`` at a time, the longest first (by the last
    benchmark), and those that ask to run alone (:func:`runs_alone`) first, one by one; return
    the runs in the order given. ``timeout``: seconds for all of them, after which the rest are
    reported as out of time."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    deadline = None if timeout is None else time.perf_counter() + timeout
    hint = expected_seconds()

    def expected(item: tuple[Path, dict]) -> float:
        path = Path(item[0]).resolve()
        name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        return hint.get(name, DEFAULT_SECONDS)

    order = sorted(range(len(runs)), key=lambda i: -expected(runs[i]))

    def one(i: int) -> Run:
        left = None if deadline is None else max(deadline - time.perf_counter(), 1.0)
        run = execute(*runs[i], timeout=left)
        if not quiet:
            verdict = "ok" if run.ok else "FAILED"
            settings = " ".join(f"{k}={v}" for k, v in run.env.items())
            print(f"{run.seconds:7.1f} s  {verdict:6s} {run.name} {settings}", flush=True)
        return run

    alone = [i for i in order if runs_alone(runs[i][0])]
    done = {i: one(i) for i in alone}
    rest = [i for i in order if i not in done]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done.update(zip(rest, pool.map(one, rest)))
    return [done[i] for i in range(len(runs))]


def execute_all(
    paths: list[Path], jobs: int = 2, quiet: bool = True, env: dict[str, str] | None = None
) -> dict[Path, Run]:
    """Execute ``paths`` with the same ``env``, ``jobs`` at a time; ``{path: Run}``."""
    runs = execute_many([(Path(p), dict(env or {})) for p in paths], jobs=jobs, quiet=quiet)
    return {run.path: run for run in runs}


def store_in_cache(runs: dict[Path, Run], cache_dir: Path) -> int:
    """Store every notebook that ran without error in a jupyter-cache; return how many.

    This is what MyST-NB itself stores after executing a notebook in ``cache`` mode; on the next
    build it matches each notebook by its code and kernel, and renders the stored outputs.
    """
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(cache_dir))
    n = 0
    for run in runs.values():
        if not run.ok:
            continue
        cache.cache_notebook_bundle(
            CacheBundleIn(run.notebook, str(run.path), data={"execution_seconds": run.seconds}),
            check_validity=False,
            overwrite=True,
        )
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook of _toc.yml")
    p.add_argument("--jobs", type=int, default=2, help="notebooks at a time (default 2)")
    p.add_argument("--cache", type=Path, help="store the executed notebooks in this jupyter-cache")
    p.add_argument("--smoke", action="store_true", help="DLBOOK_BUDGET=full DLBOOK_SMOKE=1")
    p.add_argument(
        "--live", action="store_true", help="as in Jupyter: no DLBOOK_FRAMES, no frames drawn"
    )
    p.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # internal: one notebook, here
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        _execute_in_this_process(args.one.resolve(), args.out)
        return 0
    paths = [p.resolve() for p in args.notebooks] or book_notebooks()
    start = time.perf_counter()
    env = SMOKE if args.smoke else {} if args.live else BOOK
    runs = execute_all(paths, jobs=args.jobs, quiet=False, env=env)
    failed = [r for r in runs.values() if r.failure()]
    for r in failed:
        print(f"\n=== {r.failure()}\n--- its log:\n{r.log[-3000:]}")
    if args.cache:
        print(f"stored {store_in_cache(runs, args.cache)} notebook(s) in {args.cache}")
    print(f"{len(runs)} notebook(s), {len(failed)} failed, {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
