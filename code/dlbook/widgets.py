"""Interactive figures that also read well in the static HTML book.

In the built book a widget's controls are shown but its Python callback cannot run. So every
demo is a pure function ``plot(**params) -> Figure``: :func:`interactive_figure` draws it once at
the controls' default values, as an ordinary figure output (what the HTML book shows), and then
shows ipywidgets controls whose changes redraw that same output in place, for readers in Jupyter
or Colab.

Derived in: Preface, *How to read this book* (interactive figures).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from matplotlib.figure import Figure

__all__ = ["InteractiveFigure", "interactive_figure"]

NOTE = (
    "Move the controls in Jupyter or Colab to redraw the figure; the HTML book shows the defaults."
)


class InteractiveFigure:
    """A figure drawn by ``plot(**values)`` and redrawn whenever a control changes.

    Attributes:
        controls: the ipywidgets controls, by parameter name.
        figure: the latest figure.
        calls: how many times ``plot`` has been called (1 after construction).
    """

    def __init__(
        self,
        plot: Callable[..., Figure],
        controls: dict[str, Any],
        *,
        note: bool = True,
        show: bool = True,
    ) -> None:
        if not controls:
            raise ValueError("interactive_figure needs at least one control")
        for name, w in controls.items():
            if not hasattr(w, "value") or not hasattr(w, "observe"):
                raise ValueError(
                    f"control {name!r} must be an ipywidgets widget with a .value, "
                    f"got {type(w).__name__}"
                )
        self.plot = plot
        self.controls = controls
        self.calls = 0
        self._handle = None
        self.figure = self._draw()
        if show:
            self._show(note)
        for w in controls.values():
            w.observe(self._on_change, names="value")

    def values(self) -> dict[str, Any]:
        """The controls' current values, by parameter name."""
        return {name: w.value for name, w in self.controls.items()}

    def _draw(self) -> Figure:
        import matplotlib.pyplot as plt

        fig = self.plot(**self.values())
        if not isinstance(fig, Figure):
            raise ValueError(f"plot(...) must return a matplotlib Figure, got {type(fig).__name__}")
        self.calls += 1
        plt.close(fig)  # we display it ourselves; keep pyplot from showing it a second time
        return fig

    def _show(self, note: bool) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import Markdown, display
        except ImportError:  # pragma: no cover
            return
        if get_ipython() is None:
            return
        import ipywidgets

        self._handle = display(self.figure, display_id=True)
        display(ipywidgets.VBox(list(self.controls.values())))
        if note:
            display(Markdown(f"*{NOTE}*"))

    def _on_change(self, _change: dict) -> None:
        self.figure = self._draw()
        if self._handle is not None:
            self._handle.update(self.figure)


def interactive_figure(
    plot: Callable[..., Figure], *, note: bool = True, **controls: Any
) -> InteractiveFigure:
    """Draw ``plot`` at the controls' defaults, then wire the controls to redraw it.

    Example::

        def plot(temperature=1.0):
            ...
            return fig

        interactive_figure(plot, temperature=widgets.FloatLogSlider(value=1.0, min=-1, max=1))

    Args:
        plot: a pure function of the control values returning a ``matplotlib.figure.Figure``.
        note: print a one-line note that the controls work only in a live kernel.
        **controls: ipywidgets controls, one per keyword argument of ``plot``.
    """
    return InteractiveFigure(plot, controls, note=note)
