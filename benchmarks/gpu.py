"""One command for a GPU: the GPU tests, the full-budget notebooks, the GPU benchmarks, a report.

    python -m benchmarks.gpu                      # on a CUDA machine: at most 8 minutes
    python -m benchmarks.gpu --smoke --no-record  # the rehearsal on a CPU (CI runs it)

The steps, in this order, each with what is left of the time budget (``--budget-s``, default
480 s) as its limit:

1. ``pytest -m gpu tests``: every test that needs CUDA (skipped, with the reason, on a CPU);
2. the full-budget notebooks, two at a time, as the book build runs them: the GPT training
   notebook (nanoGPT's Shakespeare model, to a validation loss of at most 1.50) and one notebook
   per other chapter (``NOTEBOOKS``);
3. the benchmarks, each in a subprocess: GPT tokens/s and MFU (``benchmarks.gpt``), attention from
   2k to 8k tokens, CartPole steps/s, PPO seconds to 475 (one seed: ``--quick``).

A step that the time budget does not reach is reported as not run, and fails the command as a
failed step does: the command passes only when every step ran and passed within the budget. The
report (each step's status, seconds and figures) is printed and appended to ``RESULTS.md``; each
benchmark appends its own section too. The notebooks' own printed speeds are measured two
notebooks at a time; ``benchmarks.gpt`` measures tokens/s alone.

``--smoke`` rehearses the same steps on whatever machine this is: the notebooks in a smoke run
(``DLBOOK_BUDGET=full DLBOOK_SMOKE=1``: the full configurations, loops cut short) and the
benchmarks in their CI-sized form (``REHEARSAL``: PPO's training cut to two iterations, as in the
notebook's smoke run; the book's tests train PPO to its target once, in the CartPole notebook),
so that the command cannot fail on a GPU for a reason a CPU would show. Its figures are a
rehearsal's, not results, and ``tests/test_benchmarks.py`` runs it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks._common import machine_line, record, table

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [  # the GPT chapter's training notebook first: it is the longest
    "chapters/03-gpt/gpt-training.ipynb",
    "chapters/05-rl/cartpole.ipynb",
    "chapters/04-gans/digits.ipynb",
    "chapters/02-attention/attention-that-learns.ipynb",
    "chapters/01-backprop/backprop-numpy.ipynb",
    "chapters/06-assistant/sft-gpt.ipynb",
    "chapters/06-assistant/rlhf-gpt.ipynb",
]
BENCHMARKS = [  # (module, extra arguments on a GPU)
    ("gpt", []),
    ("attention", []),
    ("rl_env", []),
    ("ppo", ["--quick"]),  # one seed: five take longer than this command may
]
REHEARSAL = {"ppo": ["--smoke"]}  # the benchmarks' arguments in the rehearsal; default --quick
GPT_TARGET = 1.50  # the validation loss the GPT chapter promises on the full budget


@dataclass
class Step:
    """One line of the report."""

    name: str
    status: str = "not run (out of time)"
    seconds: float = 0.0
    figures: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status != "ok"


def _left(deadline: float) -> float:
    return deadline - time.perf_counter()


def run_gpu_tests(deadline: float) -> Step:
    step = Step("pytest -m gpu")
    if _left(deadline) < 10:
        return step
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-o", "addopts=", "-q", "-rs", "tests"]
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=_left(deadline))
    except subprocess.TimeoutExpired:
        step.status, step.seconds = "FAILED (out of time)", time.perf_counter() - start
        return step
    step.seconds = time.perf_counter() - start
    summary = next((ln for ln in reversed(r.stdout.splitlines()) if ln.strip()), "")
    step.figures.append(summary.strip("= "))
    step.status = "ok" if r.returncode == 0 else f"FAILED (exit {r.returncode})"
    if r.returncode != 0:
        print(r.stdout[-5000:], r.stderr[-2000:], sep="\n")
    return step


def notebook_figures(nb) -> tuple[list[str], float | None]:
    """What an executed notebook printed that the report gives: its budget, and for the GPT
    training notebook its tokens per second and final validation loss (returned as a number)."""
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    figures = []
    budget = re.search(r"budget: (\w+)( \(smoke run)?", text)
    if budget:
        figures.append(f"budget {budget.group(1)}{' (smoke run)' if budget.group(2) else ''}")
    speed = re.search(r"([\d,]+) training tokens per second", text)
    if speed:
        figures.append(f"{speed.group(1)} tokens/s")
    val = re.search(r"validation loss ([\d.]+) nats", text)
    if val:
        figures.append(f"val loss {val.group(1)}")
    return figures, float(val.group(1)) if val else None


def run_notebooks(deadline: float, notebooks: list[str], *, smoke: bool) -> list[Step]:
    sys.path.insert(0, str(ROOT / "tests"))
    import notebook_runs as nr  # the book's own executor: as the build runs a notebook

    steps = [Step(f"notebook {name}") for name in notebooks]
    if _left(deadline) < 30:
        return steps
    env = dict(nr.SMOKE) if smoke else {"DLBOOK_BUDGET": "full"}
    jobs = [(ROOT / name, env) for name in notebooks]
    runs = nr.execute_many(jobs, jobs=2, timeout=_left(deadline))
    for step, run in zip(steps, runs):
        step.seconds = run.seconds
        failure = run.failure()
        step.status = "ok" if failure is None else "FAILED"
        if failure:
            print(failure)
        if run.notebook is None:
            continue
        step.figures, val = notebook_figures(run.notebook)
        if val is not None and not smoke and val > GPT_TARGET:
            step.status = f"FAILED (val {val} > {GPT_TARGET})"
    return steps


def run_benchmarks(deadline: float, *, smoke: bool, record_results: bool) -> list[Step]:
    steps = []
    for module, extra in BENCHMARKS:
        step = Step(f"benchmarks.{module}")
        steps.append(step)
        if _left(deadline) < 15:
            continue
        args = REHEARSAL.get(module, ["--quick"]) if smoke else extra
        args += [] if record_results else ["--no-record"]
        start = time.perf_counter()
        try:
            r = subprocess.run(
                [sys.executable, "-m", f"benchmarks.{module}", *args],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=_left(deadline),
            )
        except subprocess.TimeoutExpired:
            step.status, step.seconds = "FAILED (out of time)", time.perf_counter() - start
            continue
        step.seconds = time.perf_counter() - start
        print(r.stdout)
        step.status = "ok" if r.returncode == 0 else f"FAILED (exit {r.returncode})"
        if r.returncode != 0:
            print(r.stderr[-3000:])
        rows = [ln for ln in r.stdout.splitlines() if ln.startswith("| ") and "---" not in ln]
        step.figures.append(f"{max(len(rows) - 1, 0)} table rows")
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="the rehearsal: smoke-sized steps")
    p.add_argument("--budget-s", type=float, default=480.0, help="time budget (default 480 s)")
    p.add_argument("--no-record", action="store_true", help="print only; do not touch RESULTS.md")
    p.add_argument(
        "--notebooks", nargs="*", default=NOTEBOOKS, help="default: GPT training + one a chapter"
    )
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        print("no CUDA GPU here: run with --smoke for the rehearsal", file=sys.stderr)
        return 2
    start = time.perf_counter()
    deadline = start + args.budget_s
    print(machine_line(device), flush=True)
    steps = [run_gpu_tests(deadline)]
    steps += run_notebooks(deadline, args.notebooks, smoke=args.smoke)
    steps += run_benchmarks(deadline, smoke=args.smoke, record_results=not args.no_record)
    total = time.perf_counter() - start
    rows = [[s.name, s.status, f"{s.seconds:.0f}", "; ".join(s.figures)] for s in steps]
    within = "within" if total <= args.budget_s else "OVER"
    rows.append(["**all**", "", f"{total:.0f}", f"{within} the budget of {args.budget_s:.0f} s"])
    kind = "rehearsed: smoke runs, CI-sized benchmarks" if args.smoke else "on the GPU"
    record(
        f"gpu: the one GPU command, {kind}",
        device,
        table(["step", "status", "seconds", "figures"], rows),
        notes=f"Target: every step ok within {args.budget_s:.0f} s; GPT val <= {GPT_TARGET}.",
        write=not args.no_record,
    )
    return 1 if any(s.failed for s in steps) or total > args.budget_s else 0


if __name__ == "__main__":
    raise SystemExit(main())
