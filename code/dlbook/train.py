"""A training-loop helper: progress bar, live loss plot, evaluation hooks.

The loop itself stays in the notebooks, where the reader can see it; :func:`train_loop` only
calls ``step_fn(step)`` for each step, shows a ``tqdm.auto`` progress bar with the latest
metrics, calls ``eval_fn(step)`` every ``eval_every`` steps, records everything in a
:class:`History`, and redraws one loss figure in place. The live plot updates an IPython display
handle, so it works the same in Jupyter, in Colab and when a notebook is executed headless (the
book build, nbval): the last drawing is what stays in the output.

The progress bar is ``tqdm.auto``'s: a widget in Jupyter and Colab, text in a terminal. In a
notebook, :func:`progress` also gives the output a plain-text version that is brought up to date
when the loop ends, so the built HTML book (which runs no widget JavaScript) shows the final bar,
e.g. ``training: 100%|##########| 3000/3000 [02:10<00:00, 23.0it/s, train=1.92]``.

Derived in: Preface, *How to run the notebooks* (training loops).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

__all__ = ["History", "LivePlot", "progress", "train_loop"]

Metrics = Mapping[str, float]


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
            names: which series (default: all).
            smooth: moving-average window for series with many points (1: none).
            fig: draw into this figure (cleared first) instead of a new one.
        """
        from dlbook.plot import label

        if fig is None:
            fig = Figure(figsize=(6.4, 3.8), layout="constrained")
        fig.clear()
        ax = fig.add_subplot()
        for name in names or list(self.series):
            x, y = self.steps(name), self.values(name)
            if smooth > 1 and len(y) > 2 * smooth:
                y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
                x = x[smooth - 1 :]
            ax.plot(x, y, label=name, marker="o" if len(x) < 30 else None, markersize=3)
        if logy:
            ax.set_yscale("log")
        label(ax, title, xlabel, ylabel, legend=len(self.series) > 1)
        return fig


class LivePlot:
    """One figure redrawn in place while training, at most every ``refresh_s`` seconds.

    Outside IPython (a plain script) it draws nothing until :meth:`close` returns the figure.
    """

    def __init__(
        self,
        history: History,
        *,
        title: str = "Training curves",
        ylabel: str = "loss",
        logy: bool = False,
        smooth: int = 1,
        refresh_s: float = 5.0,
    ) -> None:
        self.history = history
        self.kwargs = dict(title=title, ylabel=ylabel, logy=logy, smooth=smooth)
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


def progress(iterable=None, **kwargs):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, whose final state also reads in the HTML book.

    Use it exactly like tqdm: ``for step in progress(range(n), desc="training"): ...``.
    """
    from tqdm.auto import tqdm as auto_tqdm
    from tqdm.notebook import tqdm as notebook_tqdm

    if not issubclass(auto_tqdm, notebook_tqdm):
        return auto_tqdm(iterable, **kwargs)

    class NotebookProgress(auto_tqdm):
        def __init__(self, *args, **kw):
            kw["display"] = False
            kw["delay"] = 0
            super().__init__(*args, **kw)
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

    return NotebookProgress(iterable, **kwargs)


def train_loop(
    step_fn: Callable[[int], float | Metrics],
    steps: int,
    *,
    eval_fn: Callable[[int], Metrics] | None = None,
    eval_every: int = 100,
    start_step: int = 0,
    history: History | None = None,
    desc: str = "training",
    live_plot: bool = True,
    plot_names: list[str] | None = None,
    title: str = "Training curves",
    ylabel: str = "loss",
    logy: bool = False,
    smooth: int = 1,
    refresh_s: float = 5.0,
    log_every: int = 1,
) -> History:
    """Run ``step_fn(step)`` for ``step = start_step .. steps - 1`` with a progress bar.

    Args:
        step_fn: does one optimisation step and returns its loss (a float or one-element tensor,
            recorded as ``"train"``) or a dict of named metrics.
        steps: the step to stop before (so ``steps - start_step`` steps run).
        eval_fn: called with the step number at step ``start_step``, every ``eval_every`` steps and
            after the last step; returns a dict of metrics, e.g. ``{"val": 1.93}``.
        start_step: where a resumed run starts.
        history: a :class:`History` to append to (e.g. a resumed run's); a new one by default.
        live_plot: redraw the curves in place during training; the final figure stays.
        plot_names: series drawn by the live plot (default: all).
        log_every: record ``step_fn``'s metrics every this many steps (1: every step); only
            then are they read (a tensor on a GPU is read back to the host only when logged).

    Returns:
        The :class:`History`; ``history.last("val")`` is the final evaluation.
    """
    if steps < start_step:
        raise ValueError(f"steps ({steps}) must be >= start_step ({start_step})")
    if eval_every < 1 or log_every < 1:
        raise ValueError(f"eval_every and log_every must be >= 1, got {eval_every}, {log_every}")
    history = history if history is not None else History()
    live = (
        LivePlot(history, title=title, ylabel=ylabel, logy=logy, smooth=smooth, refresh_s=refresh_s)
        if live_plot
        else None
    )
    if live is not None and plot_names is not None:
        live.kwargs["names"] = plot_names  # type: ignore[assignment]

    def evaluate(step: int) -> dict[str, float]:
        metrics = {k: _as_float(v) for k, v in eval_fn(step).items()} if eval_fn else {}
        history.log(step, **metrics)
        return metrics

    postfix: dict[str, float] = {}
    if eval_fn is not None:
        postfix.update(evaluate(start_step))
    bar = progress(range(start_step, steps), desc=desc, total=steps - start_step, mininterval=0.5)
    last_eval = start_step
    for step in bar:
        out = step_fn(step)
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
    if eval_fn is not None and last_eval != steps:
        evaluate(steps)
    if live is not None:
        live.close()
    return history
