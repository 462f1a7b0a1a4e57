"""dlbook.runtime: device choice, seeding, the run budget."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

import dlbook
from dlbook import runtime


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("DLBOOK_DEVICE", raising=False)
    monkeypatch.delenv("DLBOOK_BUDGET", raising=False)
    monkeypatch.delenv("DLBOOK_SMOKE", raising=False)
    runtime.reset()  # what an earlier setup() chose must not leak into these tests
    yield
    runtime.reset()


def test_device_is_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: True)
    assert runtime.device().type == "mps"
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    assert runtime.device() == torch.device("cpu")


def test_import_and_print_device_from_a_fresh_interpreter():
    out = subprocess.run(
        [sys.executable, "-c", "import dlbook; print(dlbook.device())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert out == expected or (expected == "cpu" and out == "mps")


def test_device_override(monkeypatch):
    monkeypatch.setenv("DLBOOK_DEVICE", "cpu")
    assert dlbook.device() == torch.device("cpu")


def test_device_override_rejects_missing_or_bad_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("DLBOOK_DEVICE", "cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        dlbook.device()
    monkeypatch.setenv("DLBOOK_DEVICE", "toaster")
    with pytest.raises(ValueError, match="not a device name"):
        dlbook.device()


def test_budget_follows_the_device_and_the_environment(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    assert dlbook.budget() == "small"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dlbook.budget() == "full"
    monkeypatch.setenv("DLBOOK_BUDGET", "small")
    assert dlbook.budget() == "small"
    assert dlbook.by_budget(small=1, full=2) == 1
    monkeypatch.setenv("DLBOOK_BUDGET", "FULL")
    assert dlbook.by_budget(small=1, full=2) == 2
    monkeypatch.setenv("DLBOOK_BUDGET", "huge")
    with pytest.raises(ValueError, match="DLBOOK_BUDGET must be one of"):
        dlbook.budget()


def _draw():
    return random.random(), np.random.rand(3), torch.rand(3)


def test_same_seed_same_numbers_different_seed_different_numbers():
    dlbook.seed_everything(123)
    a = _draw()
    dlbook.seed_everything(123)
    b = _draw()
    dlbook.seed_everything(124)
    c = _draw()
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])
    assert a[0] != c[0] and not np.array_equal(a[1], c[1]) and not torch.equal(a[2], c[2])


def test_same_seed_same_training_run():
    def run():
        dlbook.seed_everything(7)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x, y = torch.randn(32, 4), torch.randn(32, 1)
        for _ in range(20):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
        return loss.item()

    assert run() == run()


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "0", True])
def test_seed_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="seed must be"):
        dlbook.seed_everything(bad)


def test_setup_reports_what_it_chose(capsys, monkeypatch):
    monkeypatch.setenv("DLBOOK_DEVICE", "cpu")
    monkeypatch.setenv("DLBOOK_BUDGET", "small")
    rt = dlbook.setup(seed=5)
    line = capsys.readouterr().out
    assert rt.device == torch.device("cpu") and rt.budget == "small" and rt.seed == 5
    assert "device: cpu" in line and "budget: small" in line and "seed: 5" in line


_LAZY_PROBE = """
import json, sys
import dlbook

def loaded():
    return sorted(m for m in sys.modules if m == "dlbook" or m.startswith("dlbook."))

heavy = ["matplotlib", "sklearn", "gymnasium", "ipywidgets", "nbformat", "yaml"]
state = {"import": loaded(), "heavy": [m for m in heavy if m in sys.modules]}
state["gpt_is_module"] = dlbook.gpt is sys.modules.get("dlbook.gpt")
state["gpt"] = loaded()
state["load_digits"] = callable(dlbook.data.load_digits)
state["data"] = loaded()
try:
    dlbook.no_such_module
    state["missing"] = "no error"
except AttributeError as err:
    state["missing"] = str(err)
state["after_missing"] = loaded()
print(json.dumps(state))
"""


def test_submodules_load_lazily():
    """``import dlbook`` loads the runtime only; a chapter's module loads when first touched."""
    out = subprocess.run(
        [sys.executable, "-c", _LAZY_PROBE], capture_output=True, text=True, check=True
    ).stdout
    state = json.loads(out.splitlines()[-1])
    assert state["import"] == ["dlbook", "dlbook.runtime"]  # torch and numpy come with runtime
    assert state["heavy"] == []
    assert state["gpt_is_module"]
    assert "dlbook.gpt" in state["gpt"] and "dlbook.data" not in state["gpt"]
    assert not any(
        m.startswith(("dlbook.rl", "dlbook.gan", "dlbook.nbtools")) for m in state["gpt"]
    )
    assert state["load_digits"]
    new = set(state["data"]) - set(state["gpt"])
    assert new == {"dlbook.data", "dlbook.data.cache", "dlbook.data.loaders"}
    assert "no attribute 'no_such_module'" in state["missing"]
    assert state["after_missing"] == state["data"]


@pytest.mark.gpu
def test_gpu_is_chosen_and_seeding_is_repeatable_on_it():
    assert dlbook.device().type == "cuda"
    assert dlbook.budget() == "full"
    dlbook.seed_everything(3)
    a = torch.randn(1000, device="cuda")
    dlbook.seed_everything(3)
    b = torch.randn(1000, device="cuda")
    assert torch.equal(a, b)


def test_a_smoke_run_cuts_the_loops_it_is_told_about_and_nothing_else(monkeypatch):
    monkeypatch.setenv("DLBOOK_BUDGET", "full")
    assert not runtime.smoke() and runtime.by_budget(1000, 5000, smoke=3) == 5000
    monkeypatch.setenv("DLBOOK_SMOKE", "1")
    assert runtime.smoke()
    assert runtime.by_budget(1000, 5000, smoke=3) == 3  # a loop length: cut
    assert runtime.by_budget("small config", "full config") == "full config"  # the rest: full
    rt = runtime.setup(0, quiet=True)
    assert rt.smoke and rt.budget == "full" and "smoke run" in str(rt)
    monkeypatch.setenv("DLBOOK_SMOKE", "0")
    assert not runtime.setup(0, quiet=True).smoke and not runtime.smoke()
    runtime.reset()
    monkeypatch.setenv("DLBOOK_SMOKE", "maybe")
    with pytest.raises(ValueError, match="DLBOOK_SMOKE"):
        runtime.smoke()
