"""Each benchmark runs on the CPU in its CI-sized form from one command, and prints its table.

Benchmarks are measurements, not timed tests: nothing here asserts a speed. What is tested is that
``python -m benchmarks.NAME --quick`` runs on a fresh install, prints a Markdown table with the
machine named, and that ``--no-record`` leaves ``benchmarks/RESULTS.md`` alone; and that the one
GPU command (``python -m benchmarks.gpu``) runs every step of its rehearsal on the CPU. The GPU
benchmarks run once, inside that rehearsal.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

RESULTS = ROOT / "benchmarks" / "RESULTS.md"

# benchmark -> words its table's header must contain
HEADERS = {
    "gpt": ["tokens/s", "vs plain"],
    "attention": ["explicit ms", "fused ms", "memory ratio"],
    "rl_env": ["gymnasium M steps/s", "dlbook f32 CPU M/s"],
    "ppo": ["reached 475", "wall s"],
    "book": ["notebook", "seconds", "verdict"],
}
GPU = ("gpt", "attention", "rl_env", "ppo")  # the benchmarks the one GPU command runs


GPU_COMMAND = [
    sys.executable,
    "-m",
    "benchmarks.gpu",
    "--smoke",
    "--no-record",
    "--notebooks",
    "chapters/02-attention/attention-that-learns.ipynb",
]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, DLBOOK_DEVICE="cpu")
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def gpu_rehearsal():
    """The one GPU command, rehearsed on the CPU: its GPU tests (skipped here), one notebook in a
    smoke run of the full budget (test_smoke_runs.py runs the others, and checks that the report
    reads the GPT notebook's figures), and every GPU benchmark in its CI-sized form."""
    before = hashlib.sha256(RESULTS.read_bytes()).hexdigest()
    run = _run(GPU_COMMAND)
    assert hashlib.sha256(RESULTS.read_bytes()).hexdigest() == before, "--no-record wrote"
    return run


def test_the_gpu_command_rehearses_every_step_on_the_cpu(gpu_rehearsal):
    out = gpu_rehearsal.stdout
    assert gpu_rehearsal.returncode == 0, f"{out[-4000:]}\n{gpu_rehearsal.stderr[-3000:]}"
    report = out[out.index("## gpu: the one GPU command") :]
    for step in ("pytest -m gpu", "attention-that-learns", *(f"benchmarks.{b}" for b in GPU)):
        line = next((ln for ln in report.splitlines() if step in ln), "")
        assert "| ok |" in line, f"step {step!r} did not pass in the rehearsal: {line!r}"
    assert "budget full (smoke run)" in report
    assert re.search(r"\| \*\*all\*\* \|  \| \d+ \| within the budget", report), report


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_benchmark_runs_quick_on_cpu_and_prints_its_table(name, request):
    if name in GPU:  # run once, inside the GPU command's rehearsal
        run = request.getfixturevalue("gpu_rehearsal")
    else:
        before = hashlib.sha256(RESULTS.read_bytes()).hexdigest()
        run = _run([sys.executable, "-m", f"benchmarks.{name}", "--quick", "--no-record"])
        assert hashlib.sha256(RESULTS.read_bytes()).hexdigest() == before, "--no-record wrote"
    tail = f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0, f"benchmarks.{name} failed:\n{tail}"
    # this benchmark's section: from its '## name' heading to the next heading
    m = re.search(rf"^## {name}\b.*?(?=^## |\Z)", run.stdout, re.M | re.S)
    assert m, f"no '## {name}' section in the output:\n{tail}"
    out = m.group(0)
    assert re.search(r"^device: .+ \| torch .+ \| python .+$", out, re.M), out[-2000:]
    header = next((line for line in out.splitlines() if line.startswith("| ")), "")
    for word in HEADERS[name]:
        assert word in header, f"benchmarks.{name}: {word!r} not in the table header {header!r}"
    assert re.search(r"^\|(---\|)+$", out, re.M), "no Markdown table"
