"""Each benchmark runs on the CPU in its CI-sized form from one command, and prints its table.

Benchmarks are measurements, not timed tests: nothing here asserts a speed. What is tested is that
``python -m benchmarks.NAME --quick`` runs on a fresh install, prints a Markdown table with the
machine named, and that ``--no-record`` leaves ``benchmarks/RESULTS.md`` alone.
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


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_benchmark_runs_quick_on_cpu_and_prints_its_table(name):
    before = hashlib.sha256(RESULTS.read_bytes()).hexdigest()
    env = dict(os.environ, DLBOOK_DEVICE="cpu")
    run = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--quick", "--no-record"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0, f"benchmarks.{name} failed:\n{tail}"
    out = run.stdout
    assert re.search(r"^device: .+ \| torch .+ \| python .+$", out, re.M), out[-2000:]
    header = next((line for line in out.splitlines() if line.startswith("| ")), "")
    for word in HEADERS[name]:
        assert word in header, f"benchmarks.{name}: {word!r} not in the table header {header!r}"
    assert re.search(r"^\|(---\|)+$", out, re.M), "no Markdown table"
    assert hashlib.sha256(RESULTS.read_bytes()).hexdigest() == before, "--no-record wrote"
