"""The training loop the book's trainers share, its progress output, and what trainers return.

:func:`train_loop` runs ``step_fn(step)`` for each step, shows a ``tqdm.auto`` progress bar with
the latest metrics, calls ``eval_fn(step)`` every ``eval_every`` steps, records everything in a
:class:`History`, and redraws one loss figure in place. Notebooks call it with a ``step_fn`` they
write in a cell, so the step itself stays where the reader sees it; the chapters' trainers
(``backprop.train_classifier``, ``gan.train_gan``, ``rl.train_reinforce``, ``rl.train_ppo``) call
it with theirs. The live plot updates an IPython display handle, so it works the same in Jupyter,
in Colab and when a notebook is executed headless (the book build): the last drawing is what stays
in the output.

Every trainer follows the same conventions:

- ``device=None`` means :func:`dlbook.device` (what :func:`dlbook.setup` chose);
- ``seed`` seeds everything the call draws, in a stream of its own
  (:func:`dlbook.runtime.rng_scope`): same seed, same numbers, the caller's generators untouched;
- ``progress`` is ``"plot"`` (bar and live curves), ``"bar"`` or ``"off"``;
- it returns a :class:`Run`: the trained ``model``, its ``history`` and any ``snapshots``.

The progress bar is ``tqdm.auto``'s: a widget in Jupyter and Colab, text in a terminal. In a
notebook, :func:`progress_bar` also gives the output a plain-text version that is brought up to
date when the loop ends, so the built HTML book (which runs no widget JavaScript) shows the final
bar, e.g. ``training: 100%|##########| 3000/3000 [02:10<00:00, 23.0it/s, train=1.92]``.

Derived in: Preface, *How to run the notebooks* (training loops).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm as auto_tqdm
from tqdm.notebook import tqdm as notebook_tqdm

from dlbook.runtime import eval_mode  # here for the trainers; it lives where torch models do

__all__ = [
    "PROGRESS",
    "History",
    "LivePlot",
    "Run",
    "StopTraining",
    "check_progress",
    "eval_mode",
    "progress_bar",
    "train_loop",
]

Metrics = Mapping[str, float]
PROGRESS = ("plot", "bar", "off")


def _as_float(v: object) -> float:
    """A Python float from a float, a NumPy scalar or a one-element torch tensor."""
    item = getattr(v, "item", None)
    return float(item() if callable(item) else v)


@dataclass
class History:
    """Metrics recorded over training: ``history["val"]`` is a list of ``(step, value)``."""

    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def log(self, step: int, **metrics: float) -> None:
        """Record ``metrics`` (name=value) at ``step``."""
        for name, value in metrics.items():
            self.series.setdefault(name, []).append((int(step), _as_float(value)))

    def __getitem__(self, name: str) -> list[tuple[int, float]]:
        if name not in self.series:
            raise KeyError(f"no metric {name!r} recorded; have {sorted(self.series)}")
        return self.series[name]

    def __contains__(self, name: str) -> bool:
        return name in self.series

    def steps(self, name: str) -> np.ndarray:
        """``(n,)`` the steps at which ``name`` was recorded."""
        return np.array([s for s, _ in self[name]])

    def values(self, name: str) -> np.ndarray:
        """``(n,)`` the recorded values of ``name``."""
        return np.array([v for _, v in self[name]])

    def last(self, name: str) -> float:
        """The latest value of ``name``."""
        return self[name][-1][1]

    def min(self, name: str) -> float:
        """The smallest value of ``name``."""
        return float(self.values(name).min())

    def plot(
        self,
        names: list[str] | None = None,
        *,
        title: str = "Training curves",
        xlabel: str = "step",
        ylabel: str = "loss",
        logy: bool = False,
        smooth: int = 1,
        fig: Figure | None = None,
    ) -> Figure:
        """Draw the recorded series on one axes and return the figure.

        Args:
            names: which series (default: all); those not recorded yet are skipped.
            smooth: moving-average window for series with many points (1: none).
            fig: draw into this figure (cleared first) instead of a new one.
        """
        from dlbook.plot import label

        if fig is None:
            fig = Figure(figsize=(6.4, 3.8), layout="constrained")
        fig.clear()
        ax = fig.add_subplot()
        for name in names or list(self.series):
            if name not in self.series:
                continue  # not recorded yet (a live plot redraws before every series has a point)
            x, y = self.steps(name), self.values(name)
            if smooth > 1 and len(y) > 2 * smooth:
                y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
                x = x[smooth - 1 :]
            ax.plot(x, y, label=name, marker="o" if len(x) < 30 else None, markersize=3)
        if logy:
            ax.set_yscale("log")
        label(ax, title, xlabel, ylabel, legend=len(self.series) > 1)
        return fig


@dataclass
class Run:
    """What every trainer returns.

    Attributes:
        model: the trained model to use afterwards (for a GAN, the generator it samples from).
        history: the :class:`History` of the run.
        snapshots: ``{step: value}`` kept during training (e.g. a GAN's samples on a fixed noise
            batch); empty unless the trainer keeps snapshots.
    """

    model: Any
    history: History
    snapshots: dict[int, Any] = field(default_factory=dict)


class StopTraining(Exception):
    """Raised by a ``step_fn`` to end :func:`train_loop` early (e.g. a target reached)."""


def check_progress(progress: str) -> str:
    """``progress`` if it is one of :data:`PROGRESS` (``"plot"``, ``"bar"``, ``"off"``)."""
    if progress not in PROGRESS:
        raise ValueError(f"progress must be one of {PROGRESS}, got {progress!r}")
    return progress


class LivePlot:
    """One figure redrawn in place while training, at most every ``refresh_s`` seconds.

    Outside IPython (a plain script) it draws nothing until :meth:`close` returns the figure.
    """

    def __init__(
        self,
        history: History,
        *,
        names: list[str] | None = None,
        title: str = "Training curves",
        ylabel: str = "loss",
        logy: bool = False,
        smooth: int = 1,
        refresh_s: float = 5.0,
    ) -> None:
        self.history = history
        self.kwargs = dict(names=names, title=title, ylabel=ylabel, logy=logy, smooth=smooth)
        self.refresh_s = refresh_s
        self.fig = Figure(figsize=(6.4, 3.8), layout="constrained")
        self._handle = None
        self._last = -math.inf

    def _display(self):
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # pragma: no cover - IPython is a dependency
            return None
        if get_ipython() is None:
            return None
        from dlbook.plot import enable_inline

        enable_inline()
        return display(self.fig, display_id=True)

    def update(self, *, force: bool = False) -> None:
        """Redraw if ``refresh_s`` has passed since the last drawing (or if ``force``)."""
        now = time.monotonic()
        if not self.history.series or (not force and now - self._last < self.refresh_s):
            return
        self._last = now
        self.history.plot(fig=self.fig, **self.kwargs)
        if self._handle is None:
            self._handle = self._display()
        else:
            self._handle.update(self.fig)

    def close(self) -> Figure:
        """Draw the final state and return the figure."""
        self.update(force=True)
        return self.fig


class _Bundle:
    """A display object with the widget view for live kernels and text for the static book."""

    def __init__(self, widget: object, text: str) -> None:
        self.widget, self.text = widget, text

    def _repr_mimebundle_(self, include=None, exclude=None):
        from dlbook.widgets import view_bundle  # ipywidgets 7 (Colab's) and 8 alike

        bundle = view_bundle(self.widget, include=include, exclude=exclude)
        bundle["text/plain"] = self.text
        return bundle


class _BookProgress(notebook_tqdm):
    """tqdm's notebook bar whose output also carries a plain-text copy, updated when it closes."""

    def __init__(self, *args, **kwargs):
        kwargs["display"] = False
        kwargs["delay"] = 0
        super().__init__(*args, **kwargs)
        from IPython.display import display

        self._handle = None
        if not self.disable:
            self._handle = display(_Bundle(self.container, str(self)), display_id=True)

    def close(self):
        if self.disable or getattr(self, "_closed_once", False):
            return super().close()
        self._closed_once = True
        super().close()
        if self._handle is not None:
            self._handle.update(_Bundle(self.container, str(self)))


def progress_bar(iterable=None, **kwargs):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, whose final state also reads in the HTML book.

    Use it exactly like tqdm: ``for step in progress_bar(range(n), desc="training"): ...``.
    """
    # tqdm.auto is the notebook bar in a Jupyter kernel, the text bar anywhere else
    bar = _BookProgress if issubclass(auto_tqdm, notebook_tqdm) else auto_tqdm
    return bar(iterable, **kwargs)


def train_loop(
    step_fn: Callable[[int], float | Metrics],
    steps: int,
    *,
    eval_fn: Callable[[int], Metrics] | None = None,
    eval_every: int = 100,
    log_every: int = 1,
    history: History | None = None,
    start_step: int = 0,
    desc: str = "training",
    progress: str = "plot",
    plot: Mapping[str, Any] | None = None,
) -> History:
    """Run ``step_fn(step)`` for ``step = start_step .. steps - 1`` with a progress bar.

    Args:
        step_fn: does one optimisation step and returns its loss (a float or one-element tensor,
            recorded as ``"train"``) or a dict of named metrics; it may raise
            :class:`StopTraining` to end the run early.
        steps: the step to stop before (so ``steps - start_step`` steps run).
        eval_fn: called with the step number at step ``start_step``, every ``eval_every`` steps and
            after the last step; returns a dict of metrics, e.g. ``{"val": 1.93}``.
        log_every: record ``step_fn``'s metrics every this many steps (1: every step); only
            then are they read (a tensor on a GPU is read back to the host only when logged).
        history: a :class:`History` to append to (e.g. a resumed run's); a new one by default.
        start_step: where a resumed run starts.
        progress: ``"plot"``: the bar and the curves redrawn in place (the final figure stays);
            ``"bar"``: the bar only; ``"off"``: nothing.
        plot: keyword arguments for the live plot (:class:`LivePlot`: ``names``, ``title``,
            ``ylabel``, ``logy``, ``smooth``, ``refresh_s``).

    Returns:
        The :class:`History`; ``history.last("val")`` is the final evaluation.
    """
    if steps < start_step:
        raise ValueError(f"steps ({steps}) must be >= start_step ({start_step})")
    if eval_every < 1 or log_every < 1:
        raise ValueError(f"eval_every and log_every must be >= 1, got {eval_every}, {log_every}")
    check_progress(progress)
    history = history if history is not None else History()
    live = LivePlot(history, **(plot or {})) if progress == "plot" else None

    def evaluate(step: int) -> dict[str, float]:
        metrics = {k: _as_float(v) for k, v in eval_fn(step).items()} if eval_fn else {}
        history.log(step, **metrics)
        return metrics

    postfix: dict[str, float] = {}
    if eval_fn is not None:
        postfix.update(evaluate(start_step))
    bar = progress_bar(
        range(start_step, steps),
        desc=desc,
        total=steps - start_step,
        mininterval=0.5,
        disable=progress == "off",
    )
    last_eval = done = start_step
    for step in bar:
        try:
            out = step_fn(step)
        except StopTraining:
            break
        if (step - start_step) % log_every == 0 or step == steps - 1:
            # Reading a tensor's value waits for its device: only on the steps that are logged.
            metrics = dict(out) if isinstance(out, Mapping) else {"train": out}
            metrics = {k: _as_float(v) for k, v in metrics.items()}
            history.log(step, **metrics)
            postfix.update(metrics)
        done = step + 1
        if eval_fn is not None and (done % eval_every == 0 or done == steps):
            postfix.update(evaluate(done))
            last_eval = done
        bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
        if live is not None:
            live.update()
    bar.close()
    if eval_fn is not None and last_eval != done:
        evaluate(done)
    if live is not None:
        live.close()
    return history
