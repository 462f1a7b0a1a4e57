"""Interactive figures that also work in the static HTML book.

In the built book a widget's Python callback cannot run. So every demo is a pure function
``plot(**params) -> Figure``. :func:`interactive_figure` draws it at the controls' default values
and shows ipywidgets controls whose changes redraw that figure in place, for readers in Jupyter or
Colab. When the notebook is executed for the book (``DLBOOK_FRAMES=1``, which the book's build
sets), it instead draws the figure at a grid of the controls' values and shows the frames with
native HTML controls and a few lines of JavaScript (:mod:`dlbook.frames`): the HTML book's reader
moves the controls too, offline and with no kernel. In Jupyter and Colab no frame is drawn; the
grid of stops is still worked out (cheaply) in every kernel, so that a control the HTML book
could not show fails where its author runs the notebook, not first in the book's build.

Both ipywidgets 8 and 7 work: Colab's runtime has ipywidgets 7.7 and IPython 7.34, and a widget of
ipywidgets 7 has no ``_repr_mimebundle_`` (it displays itself through ``_ipython_display_``), so
:func:`view_bundle` builds the same widget view either way.

Derived in: Preface, *How to read this book* (interactive figures).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from matplotlib.figure import Figure

from dlbook import frames as _frames

__all__ = ["VIEW_MIME", "InteractiveFigure", "interactive_figure", "view_bundle"]

NOTE = "Move the controls to redraw the figure (the HTML book shows frames drawn in advance)."

VIEW_MIME = "application/vnd.jupyter.widget-view+json"  # a live widget's output, for the front end


def view_bundle(widget: Any, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """A widget's display data (its live view and a text line), on ipywidgets 8 and 7 alike.

    ipywidgets 8 gives it through ``widget._repr_mimebundle_``. ipywidgets 7 (Colab's 7.7.1) has
    no such method: its ``_ipython_display_`` displays ``{"text/plain": repr,`` :data:`VIEW_MIME`
    ``: {"version_major": 2, "version_minor": 0, "model_id": ...}}`` and then runs the widget's
    ``on_displayed`` callbacks. This builds that same data, so that an object of the book can show
    a widget inside a display bundle of its own.

    Args:
        widget: an ipywidgets widget.
        include, exclude: passed on to ``_repr_mimebundle_`` where it exists.

    Returns:
        A new dict from MIME type to data.
    """
    if hasattr(widget, "_repr_mimebundle_"):  # ipywidgets >= 8 (set to None once closed)
        method = widget._repr_mimebundle_
        return dict((method(include=include, exclude=exclude) if method else None) or {})
    # ipywidgets 7: what its Widget._ipython_display_ displays, and its callbacks
    text = repr(widget)
    data: dict[str, Any] = {"text/plain": text[:110] + "…" if len(text) > 110 else text}
    if getattr(widget, "_view_name", None) is not None:
        data[VIEW_MIME] = {"version_major": 2, "version_minor": 0, "model_id": widget._model_id}
        widget._handle_displayed()
    return data


def _describe(name: str, w: Any) -> str:
    """One control in words: ``temperature: FloatLogSlider from 0.1 to 10 (default 1)``."""
    kind = type(w).__name__
    parts = [f"{name}: {kind}"]
    if getattr(w, "options", None):
        labels = [str(o[0] if isinstance(o, tuple) else o) for o in w.options]
        parts.append("one of " + ", ".join(labels))
    elif hasattr(w, "min") and hasattr(w, "max"):
        lo, hi = w.min, w.max
        if kind.endswith("LogSlider"):
            lo, hi = w.base**lo, w.base**hi
        parts.append(f"from {lo:g} to {hi:g}")
    value = w.value
    shown = (
        f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    )
    parts.append(f"(default {shown})")
    return " ".join(parts)


class _Controls:
    """Display object: live ipywidgets in a kernel, a description of them in the static book."""

    def __init__(self, box: Any, controls: dict[str, Any], note: bool) -> None:
        self.box, self.controls, self.note = box, controls, note

    def _repr_mimebundle_(self, include=None, exclude=None):
        import html

        lines = [_describe(n, w) for n, w in self.controls.items()]
        note = f"<br><em>{html.escape(NOTE)}</em>" if self.note else ""
        items = "".join(f"<li><code>{html.escape(line)}</code></li>" for line in lines)
        bundle = view_bundle(self.box, include=include, exclude=exclude)
        bundle["text/plain"] = "Controls:\n" + "\n".join(lines) + (f"\n{NOTE}" if self.note else "")
        bundle["text/html"] = (
            f'<div class="dlbook-controls"><strong>Controls</strong><ul>{items}</ul>{note}</div>'
        )
        return bundle


class InteractiveFigure:
    """A figure drawn by ``plot(**values)`` and redrawn whenever a control changes.

    Attributes:
        controls: the ipywidgets controls, by parameter name.
        figure: the latest figure.
        calls: how many times ``plot`` has been called by the controls (1 after construction;
            the frames for the HTML book are drawn apart and not counted).
        grid: the stops of each control that the HTML book shows (:func:`dlbook.frames.frame_grid`).
        frames: the frames drawn for the HTML book (:class:`dlbook.frames.Frames`), or None when
            the notebook is not executed for the book.
    """

    def __init__(
        self,
        plot: Callable[..., Figure],
        controls: dict[str, Any],
        *,
        note: bool = True,
        show: bool = True,
        max_frames: int = _frames.MAX_FRAMES,
        stops: dict[str, Any] | None = None,
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
        self.grid = _frames.frame_grid(controls, max_frames=max_frames, stops=stops)
        self.frames: _frames.Frames | None = None
        self.calls = 0
        self._handle = None
        self.figure = self._draw()
        if show:
            self._show(note)
        for w in controls.values():
            w.observe(self._on_change, names="value")

    def _ipython_display_(self) -> None:
        """Already on screen: shown once when made, so a bare ``interactive_figure(...)`` line
        does not print the object's repr."""

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
            from IPython.display import display
        except ImportError:  # pragma: no cover
            return
        if get_ipython() is None:
            return
        import ipywidgets

        from dlbook.plot import enable_inline

        enable_inline()
        if _frames.enabled():  # executed for the HTML book: frames and HTML controls instead
            self.frames = _frames.render_frames(self.plot, self.grid)
            self.frames.note = note
            display(self.frames)
            return
        self._handle = display(self.figure, display_id=True)
        display(_Controls(ipywidgets.VBox(list(self.controls.values())), self.controls, note))

    def _on_change(self, _change: dict) -> None:
        self.figure = self._draw()
        if self._handle is not None:
            self._handle.update(self.figure)


def interactive_figure(
    plot: Callable[..., Figure],
    *,
    note: bool = True,
    max_frames: int = _frames.MAX_FRAMES,
    stops: dict[str, Any] | None = None,
    **controls: Any,
) -> InteractiveFigure:
    """Draw ``plot`` at the controls' defaults, then wire the controls to redraw it.

    Example::

        def plot(temperature=1.0):
            ...
            return fig

        interactive_figure(plot, temperature=widgets.FloatLogSlider(value=1.0, min=-1, max=1))

    Args:
        plot: a pure function of the control values returning a ``matplotlib.figure.Figure``.
        note: add a one-line note on what the controls do where the figure is shown.
        max_frames: the HTML book's frame budget for this figure (:mod:`dlbook.frames`): lower
            it for a figure that is slow to draw or heavy to store.
        stops: the values the HTML book's controls stop at, for any control that should not
            follow the grid rule, e.g. ``stops={"episodes": [1, 4, 16, 64]}``.
        **controls: ipywidgets controls, one per keyword argument of ``plot`` (not named
            ``note``, ``max_frames`` or ``stops``).
    """
    return InteractiveFigure(plot, controls, note=note, max_frames=max_frames, stops=stops)
