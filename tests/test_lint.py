"""ruff: lint and format check of the whole repository (code, tests and notebooks)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_check():
    r = _ruff("check", ".")
    assert r.returncode == 0, "ruff check found problems (fix: ruff check --fix .):\n" + r.stdout


def test_ruff_format():
    r = _ruff("format", "--check", ".")
    assert r.returncode == 0, "ruff format would change files (fix: ruff format .):\n" + r.stdout
