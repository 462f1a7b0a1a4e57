"""Where the code runs and how much work it may do: device, seeds and the run budget.

Every notebook starts with :func:`setup`, which seeds every random number generator, picks the
fastest device present, reports the run budget and records the choice: afterwards
:func:`device`, :func:`budget`, :func:`by_budget` and :func:`smoke` return what ``setup`` chose
(before any ``setup``, they read the environment variables below). The budget lets one notebook
serve two kinds of reader: ``"small"`` settings finish within a few minutes on a laptop CPU (and
in the book's CI), ``"full"`` settings reproduce the published numbers on a CUDA GPU.

A *smoke run* (``DLBOOK_SMOKE=1``) executes a notebook's code with its budget's configurations
but cuts every training loop to a few steps: ``by_budget(small=1000, full=5000, smoke=3)`` gives
3. The book's tests run every notebook that reads the budget with ``DLBOOK_BUDGET=full
DLBOOK_SMOKE=1`` on the CPU, so that the full-budget path, which only a GPU runs for real, is
executed by CI too. Claims about a
trained model do not hold after three steps: a notebook states them under ``if not rt.smoke:``,
which shows the reader which claims the full run makes.

Derived in: Preface, *How to run the notebooks*.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = [
    "BUDGETS",
    "BUDGET_ENV",
    "DEVICE_ENV",
    "SMOKE_ENV",
    "Runtime",
    "budget",
    "by_budget",
    "device",
    "eval_mode",
    "reset",
    "resolve_device",
    "rng_scope",
    "seed_everything",
    "setup",
    "smoke",
]

BUDGETS = ("small", "full")
BUDGET_ENV = "DLBOOK_BUDGET"
DEVICE_ENV = "DLBOOK_DEVICE"
SMOKE_ENV = "DLBOOK_SMOKE"

T = TypeVar("T")
_UNSET: Any = object()
_chosen: Runtime | None = None  # what setup() chose; None before the first setup()


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def device() -> torch.device:
    """The device the book's code runs on: the one :func:`setup` chose, or, before any setup,
    CUDA if present, then Apple's MPS, then the CPU.

    The environment variable ``DLBOOK_DEVICE`` (e.g. ``cpu`` or ``cuda:1``) overrides the
    automatic choice; asking for a device that is not there raises ``ValueError``.

    Returns:
        A ``torch.device``.
    """
    if _chosen is not None:
        return _chosen.device
    return _pick_device(None)


def resolve_device(dev: torch.device | str | None) -> torch.device:
    """``dev`` as a ``torch.device``; ``None`` means :func:`device` (the book's convention for
    every ``device=None`` argument)."""
    return device() if dev is None else _pick_device(dev)


def _pick_device(wanted_dev: torch.device | str | None) -> torch.device:
    """The named device (checked to be present), or the automatic choice when ``None``."""
    source = "device"
    wanted = "" if wanted_dev is None else str(wanted_dev)
    if wanted_dev is None:
        source, wanted = DEVICE_ENV, os.environ.get(DEVICE_ENV, "").strip()
    if wanted:
        try:
            dev = torch.device(wanted)
        except RuntimeError as err:
            raise ValueError(
                f"{source}={wanted!r} is not a device name; expected e.g. 'cpu', 'cuda', "
                "'cuda:0' or 'mps'"
            ) from err
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{source}={wanted!r} asks for CUDA, but no CUDA GPU is present")
        if dev.type == "mps" and not _mps_available():
            raise ValueError(f"{source}={wanted!r} asks for MPS, but MPS is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, *, deterministic: bool = False) -> int:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every GPU).

    Same seed, same device, same numbers: on the CPU this is enough. On a GPU some kernels
    (atomics in backward passes) are nondeterministic; ``deterministic=True`` asks torch for
    deterministic algorithms where they exist, at some cost in speed.

    Args:
        seed: a non-negative integer below 2**32.
        deterministic: also switch torch to deterministic algorithms.

    Returns:
        The seed, for logging.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds the CPU and every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return seed


def budget() -> str:
    """The run budget: ``"full"`` on a CUDA GPU, ``"small"`` otherwise.

    Set the environment variable ``DLBOOK_BUDGET`` to ``small`` or ``full`` to override it, e.g.
    ``DLBOOK_BUDGET=small`` to try a notebook quickly on a GPU, or ``full`` to run the published
    settings on a CPU (slowly). Apple's MPS counts as ``small``: the full settings are sized for a
    data-centre GPU. After :func:`setup`, the budget it chose.
    """
    if _chosen is not None:
        return _chosen.budget
    return _pick_budget(None, device())


def _pick_budget(wanted: str | None, dev: torch.device) -> str:
    source = "budget"
    if wanted is None:
        source, wanted = BUDGET_ENV, os.environ.get(BUDGET_ENV, "")
    wanted = wanted.strip().lower()
    if wanted:
        if wanted not in BUDGETS:
            raise ValueError(f"{source} must be one of {BUDGETS}, got {wanted!r}")
        return wanted
    return "full" if dev.type == "cuda" else "small"


def smoke() -> bool:
    """Whether this is a smoke run (``DLBOOK_SMOKE=1``): the budget's code, loops cut short."""
    if _chosen is not None:
        return _chosen.smoke
    return _env_smoke()


def _env_smoke() -> bool:
    wanted = os.environ.get(SMOKE_ENV, "").strip().lower()
    if wanted in ("", "0", "false", "no"):
        return False
    if wanted in ("1", "true", "yes"):
        return True
    raise ValueError(f"{SMOKE_ENV} must be 1 or 0, got {wanted!r}")


def by_budget(small: T, full: T, *, smoke: T = _UNSET) -> T:
    """Pick one of two settings by the run budget: ``by_budget(small=500, full=5000)``.

    ``smoke``, given for loop lengths, is what a smoke run takes instead, whatever the budget:
    ``by_budget(small=1000, full=5000, smoke=3)``.
    """
    if smoke is not _UNSET and _smoke():
        return smoke
    return full if budget() == "full" else small


_smoke = smoke  # by_budget's keyword argument hides the function inside it


@dataclass(frozen=True)
class Runtime:
    """What :func:`setup` chose. ``device`` is a ``torch.device``; ``budget`` is a string;
    ``smoke`` says whether loops are cut short (see :func:`smoke`); ``threads`` is torch's number
    of CPU threads."""

    seed: int
    device: torch.device
    budget: str
    smoke: bool = False
    threads: int = 1

    def __str__(self) -> str:
        name = self.device.type
        if self.device.type == "cuda":
            name = f"cuda ({torch.cuda.get_device_name(self.device)})"
        return (
            f"dlbook {_version()} | torch {torch.__version__} | device: {name} | "
            f"budget: {self.budget}{' (smoke run: loops cut short)' if self.smoke else ''} | "
            f"seed: {self.seed}"
        )


def _version() -> str:
    from dlbook import __version__

    return __version__


def setup(
    seed: int = 0,
    *,
    budget: str | None = None,
    device: torch.device | str | None = None,
    threads: int | None = None,
    deterministic: bool = False,
    quiet: bool = False,
) -> Runtime:
    """Seed everything, pick the device and the budget, set the book's figure style.

    The first code cell of every notebook calls this. The choice is recorded: from then on
    :func:`device`, :func:`budget`, :func:`by_budget` and :func:`smoke` return it, and every
    ``device=None`` argument in dlbook means this device.

    Args:
        seed: passed to :func:`seed_everything`.
        budget: ``"small"`` or ``"full"``; ``None``: ``DLBOOK_BUDGET``, else by the device.
        device: e.g. ``"cpu"`` or ``"cuda:1"``; ``None``: ``DLBOOK_DEVICE``, else the fastest.
        threads: torch's CPU threads (``torch.set_num_threads``); ``1`` suits notebooks whose
            tensors are tiny (one thread is as fast, and results do not vary with the machine's
            load); ``None`` leaves torch's default.
        deterministic: passed to :func:`seed_everything`.
        quiet: do not print the one-line summary.

    Returns:
        A :class:`Runtime` with the seed, device, budget, smoke flag and thread count.
    """
    global _chosen
    from dlbook import plot

    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    dev = _pick_device(device)  # every argument is checked before anything changes
    chosen_budget = _pick_budget(budget, dev)
    if threads is not None:
        torch.set_num_threads(threads)
    chosen = Runtime(
        seed=seed,
        device=dev,
        budget=chosen_budget,
        smoke=_env_smoke(),
        threads=torch.get_num_threads(),
    )
    seed_everything(seed, deterministic=deterministic)
    _chosen = chosen
    plot.enable_inline()
    plot.use_book_style()
    if not quiet:
        print(chosen)
    return chosen


def reset() -> None:
    """Forget what :func:`setup` chose (the environment variables rule again); for tests."""
    global _chosen
    _chosen = None


@contextlib.contextmanager
def rng_scope(seed: int, dev: torch.device | str | None = None) -> Iterator[None]:
    """Draw from a private stream seeded by ``seed``; the global generators are restored after.

    Inside the block, torch (CPU, every CUDA GPU, MPS), NumPy's global generator and
    Python's ``random`` are seeded with ``seed``; on leaving it, all of them are as they were.
    This is how every dlbook trainer honours its ``seed`` argument: same seed, same numbers,
    whatever ran before, and the caller's own random stream is left untouched.
    """
    resolve_device(dev)  # validates it
    # torch.manual_seed reseeds every CUDA device, and Apple's MPS generator: save and restore
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    mps = getattr(torch.backends, "mps", None)
    mps_state = torch.mps.get_rng_state() if mps is not None and mps.is_available() else None
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            if mps_state is not None:
                torch.mps.set_rng_state(mps_state)


@contextlib.contextmanager
def eval_mode(module: Any) -> Iterator[Any]:
    """``with eval_mode(model):`` runs the block in eval mode (no dropout) and restores the
    module's training flag afterwards, whatever it was."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
