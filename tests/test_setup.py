"""dlbook.setup records its choice; device(), budget(), by_budget() and smoke() return it; the
trainers' conventions (device=None, seed, progress, Run) hold for every trainer."""

from __future__ import annotations

import inspect
import random

import numpy as np
import pytest
import torch

import dlbook
from dlbook import runtime


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for name in ("DLBOOK_DEVICE", "DLBOOK_BUDGET", "DLBOOK_SMOKE"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    runtime.reset()
    yield
    runtime.reset()
    torch.set_num_threads(threads)


def test_setup_choice_is_what_everything_reads_afterwards(monkeypatch):
    rt = dlbook.setup(3, budget="full", device="cpu", quiet=True)
    assert rt.budget == "full" and rt.device == torch.device("cpu")
    # the environment changing afterwards does not make them disagree with rt
    monkeypatch.setenv("DLBOOK_BUDGET", "small")
    monkeypatch.setenv("DLBOOK_SMOKE", "1")
    assert dlbook.budget() == "full" and dlbook.by_budget(1, 2, smoke=0) == 2
    assert not dlbook.smoke() and dlbook.device() == rt.device
    assert runtime.resolve_device(None) == rt.device
    # before any setup, the environment rules
    runtime.reset()
    assert dlbook.budget() == "small" and dlbook.smoke()


def test_setup_arguments_win_over_the_environment_and_are_validated(monkeypatch):
    monkeypatch.setenv("DLBOOK_BUDGET", "small")
    assert dlbook.setup(0, budget="full", quiet=True).budget == "full"
    assert dlbook.setup(0, quiet=True).budget == "small"
    with pytest.raises(ValueError, match="budget must be one of"):
        dlbook.setup(0, budget="huge", quiet=True)
    with pytest.raises(ValueError, match="not a device name"):
        dlbook.setup(0, device="toaster", quiet=True)
    with pytest.raises(ValueError, match="threads must be"):
        dlbook.setup(0, threads=0, quiet=True)
    # a call that fails changes nothing: not the threads, not the recorded choice
    before, chosen = torch.get_num_threads(), dlbook.budget()
    with pytest.raises(ValueError, match="not a device name"):
        dlbook.setup(0, threads=before + 1, device="toaster", quiet=True)
    with pytest.raises(ValueError, match="budget must be one of"):
        dlbook.setup(0, threads=before + 1, budget="huge", quiet=True)
    assert torch.get_num_threads() == before and dlbook.budget() == chosen


def test_setup_sets_torch_threads_only_when_asked():
    before = torch.get_num_threads()
    assert dlbook.setup(0, quiet=True).threads == before
    rt = dlbook.setup(0, threads=1, quiet=True)
    assert rt.threads == 1 == torch.get_num_threads()


def test_rng_scope_is_repeatable_and_leaves_the_global_streams_alone():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    dlbook.seed_everything(11)
    expected = draw()
    dlbook.seed_everything(11)
    with runtime.rng_scope(5):
        inside = draw()
    with runtime.rng_scope(5):
        again = draw()
    assert inside == again  # same seed, same numbers, whatever ran before
    assert draw() == expected  # the caller's streams went on as if nothing had happened
    with runtime.rng_scope(6):
        assert draw() != inside


# ---------------------------------------------------------------------------- trainer signatures


def _trainers():
    from dlbook import backprop, gan, rl

    return {
        "backprop.train_classifier": backprop.train_classifier,
        "gan.train_gan": gan.train_gan,
        "rl.train_reinforce": rl.train_reinforce,
        "rl.train_ppo": rl.train_ppo,
    }


@pytest.mark.parametrize("name", list(_trainers()))
def test_every_trainer_follows_the_conventions(name):
    fn = _trainers()[name]
    params = inspect.signature(fn).parameters
    assert params["seed"].default == 0 and params["seed"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["progress"].default == "plot"
    assert not any(p in params for p in ("live_plot", "show_progress"))
    if "device" in params:  # the NumPy trainer has none
        assert params["device"].default is None
    ret = inspect.signature(fn).return_annotation
    assert ret in ("Run", "dlbook.train.Run"), f"{name} returns {ret}, not a Run"


def test_device_none_means_the_setup_device_everywhere():
    from dlbook import gan, rl

    for fn in (rl.CartPole, rl.evaluate_policy, gan.train_gan, rl.train_ppo, rl.train_reinforce):
        assert inspect.signature(fn).parameters["device"].default is None, fn.__qualname__
