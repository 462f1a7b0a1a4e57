"""Interactive figures in the HTML book itself: precomputed frames and native HTML controls.

A figure of :func:`dlbook.widgets.interactive_figure` is a pure function ``plot(**values)``. A
reader of the HTML book has no Python to call it. So when a notebook is executed for the book
(the environment variable ``DLBOOK_FRAMES=1``, which the book's build sets: see
``_ext/book_fixes.py``), the figure is also drawn at each point of a finite grid of control
values and shown as one self-contained HTML output: the frames as PNG images inside the page,
native controls (range inputs, drop-down selects, check boxes) and a few lines of plain
JavaScript that show the frame of the controls' values. No CDN, no kernel, no network: it works
from ``file://``; the controls take the keyboard; each frame's alt text names its values. In
Jupyter and Colab none of this runs (the variable is unset) and the ipywidgets call ``plot``.

The grid rule (:func:`frame_grid`), which the preface states for readers:

1. Each control has *stops*, the values it can show. A check box: off and on. A drop-down, a
   selection slider, radio or toggle buttons: their options. A slider: up to :data:`MAX_STOPS`
   of its values (all of them when it has fewer), always its two ends and its default, the
   others evenly spaced on the slider's own steps on either side of the default, in proportion
   to the room on each side; for a log slider, evenly spaced in the exponent (log-spaced).
2. While the product of the stop counts exceeds the figure's frame budget (:data:`MAX_FRAMES`
   unless the author gives another), the control with the most stops is sampled again by the
   same rule with one stop fewer (the first of them on a tie), options included; a control keeps
   its ends and its default, so no control goes below two stops (three when the default is
   not an end). Every combination of the stops is drawn.
3. An author may declare the stops of any control (``stops={"name": [...]}``: distinct, the
   default among them, a slider's increasing within its range, a selection's among its
   options); those are kept as given and the rule samples the others.

The module reads in the order of the work: the rule (:func:`frame_grid`), the drawing
(:func:`render_frames`: every frame cropped to one box, so that the figure does not move), the
page's HTML and script (:func:`frames_html`). It is about 580 lines because the three are one
pipeline whose parts share the :class:`Axis` and :class:`Frames` records; the tests follow the
same order.

Derived in: Preface, *How to read this book* (interactive figures).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

__all__ = [
    "FRAMES_ENV",
    "MAX_FRAMES",
    "MAX_STOPS",
    "Axis",
    "Frames",
    "enabled",
    "frame_grid",
    "render_frames",
    "render_png",
]

FRAMES_ENV = "DLBOOK_FRAMES"  # "1": draw the frames (the book's build sets it)
MAX_FRAMES = 64  # frames per figure, unless the figure says otherwise
MAX_STOPS = 9  # stops of one slider at the most


def enabled() -> bool:
    """Whether this kernel draws frames for the HTML book (``DLBOOK_FRAMES=1``)."""
    return os.environ.get(FRAMES_ENV, "") == "1"


@dataclass
class Axis:
    """The stops of one control: what the HTML book's control can show.

    Attributes:
        name: the keyword argument of ``plot``.
        label: what the control is called on screen (its description, else ``name``).
        kind: ``"range"`` (a slider), ``"select"`` (a drop-down) or ``"checkbox"``.
        values: the stops, in the control's order; ``values[default]`` is its default value.
        labels: each stop as shown, e.g. ``"0.316"``.
        default: the index of the default value in ``values``.
    """

    name: str
    label: str
    kind: str
    values: list[Any]
    labels: list[str]
    default: int


# ----------------------------------------------------------------------------- the grid rule


def _show(value: Any) -> str:
    """A stop as a reader sees it: ``0.316``, ``64``, ``relu``, ``on``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _labels(values: list[Any], log: bool = False) -> list[str]:
    """The stops as shown: three significant digits for a log slider's, six for other floats'
    (``1.012``, not ``1.01``), more where two would read the same."""
    shown = [f"{v:.6g}" if isinstance(v, float) and not log else _show(v) for v in values]
    if len(set(shown)) < len(shown):
        shown = [repr(v) for v in values]
    return shown


def _options(w: Any) -> tuple[list[str], list[Any]]:
    """A selection widget's option labels and values (options given as values or pairs)."""
    opts = w.options
    items = list(opts.items()) if isinstance(opts, Mapping) else list(opts)
    labels: list[str] = []
    values: list[Any] = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2:
            labels.append(str(item[0]))
            values.append(item[1])
        else:
            labels.append(_show(item))
            values.append(item)
    return labels, values


def _sample(m: int, n: int, d: float) -> list[float]:
    """About ``n`` of the positions ``0 .. m-1``: both ends, the default's position ``d`` (which
    may lie between two steps), and the others evenly spaced on either side of it, in proportion
    to the room on each side. Sorted, without repeats; three at least when ``d`` is inside."""
    if n >= m:  # every value, and a default between two steps too
        return sorted({float(p) for p in range(m)} | {d})
    if d <= 0 or d >= m - 1:  # the default is an end: evenly spaced over the whole range
        picks = {float(round(i * (m - 1) / (n - 1))) for i in range(n)}
        return sorted(picks - {0.0, float(m - 1)} | {0.0, float(m - 1), d})
    n = max(n, 3)
    left = min(max(1, round((n - 1) * d / (m - 1))), n - 2)  # intervals left of the default
    right = n - 1 - left
    picks = {float(round(d * i / left)) for i in range(left)}
    picks |= {float(round(d + (m - 1 - d) * j / right)) for j in range(1, right + 1)}
    return sorted(picks - {d} | {d})


def _on_step(d: float) -> float:
    """A position that rounding put a hair off a step (``18.999999999999996``), back on it."""
    return float(round(d)) if abs(d - round(d)) < 1e-6 else d


def _clean(x: float) -> float:
    """``0.30000000000000004`` as ``0.3``: a float as a slider's steps give it."""
    return float(f"{x:.12g}")


@dataclass
class _Control:
    """One control's possible values: ``m`` positions, the default's position ``d``."""

    name: str
    label: str
    kind: str
    m: int
    d: float
    value_at: Callable[[float], Any]
    labels: list[str] | None = None  # for options: the label of each position
    log: bool = False  # a log slider: its labels have three significant digits

    def axis(self, n: int) -> Axis:
        positions = _sample(self.m, n, self.d)
        values = [self.value_at(p) for p in positions]
        if self.labels is not None:
            labels = [self.labels[int(p)] for p in positions]
        else:
            labels = _labels(values, self.log)
        return Axis(self.name, self.label, self.kind, values, labels, positions.index(self.d))


def _control(name: str, w: Any) -> _Control:
    """What the grid rule needs of the ipywidgets control ``w`` (see the module's docstring)."""
    kind = type(w).__name__
    label = (getattr(w, "description", "") or name).strip() or name
    if isinstance(getattr(w, "value", None), tuple):
        raise ValueError(
            f"control {name!r}: a {kind} holds a range of values; frames take one value per "
            "control (declare the stops of another control, or split it into two)"
        )
    if getattr(w, "options", None) is not None:
        labels, values = _options(w)
        if not values:
            raise ValueError(f"control {name!r}: a {kind} with no options")
        try:
            d = next(i for i, v in enumerate(values) if v == w.value)
        except StopIteration:
            raise ValueError(
                f"control {name!r}: its value {w.value!r} is not one of its options"
            ) from None
        shape = "range" if kind.startswith("Selection") else "select"
        return _Control(name, label, shape, len(values), float(d), lambda p: values[int(p)], labels)
    if isinstance(w.value, bool):
        return _Control(name, label, "checkbox", 2, float(w.value), lambda p: bool(p))
    if not (hasattr(w, "min") and hasattr(w, "max")):
        raise ValueError(
            f"control {name!r}: cannot draw frames for a {kind}; use a slider, a drop-down or a "
            "check box, or declare its stops"
        )
    lo, hi = float(w.min), float(w.max)
    step = float(getattr(w, "step", 1) or 1)
    m = math.floor((hi - lo) / step + 1e-9) + 1
    past = hi - (lo + (m - 1) * step) > 1e-9 * step  # the maximum is not on a step: one more
    m += past

    def at(p: float) -> float:  # the position's value on the slider's own scale
        return hi if past and p == m - 1 else lo + p * step

    if kind.endswith("LogSlider"):
        base, value = float(w.base), float(w.value)
        d = _on_step((math.log(value, base) - lo) / step)
        if past and abs(math.log(value, base) - hi) < 1e-9:
            d = float(m - 1)

        def log_value(p: float) -> float:
            return value if p == d else _clean(base ** at(p))

        return _Control(name, label, "range", m, d, log_value, log=True)
    is_int = isinstance(w.value, int)
    value = w.value
    d = _on_step((float(value) - lo) / step)
    if past and abs(float(value) - hi) < 1e-9:
        d = float(m - 1)

    def lin_value(p: float) -> Any:
        if p == d:
            return value
        return round(at(p)) if is_int else _clean(at(p))

    return _Control(name, label, "range", m, d, lin_value)


def _declared(name: str, w: Any, values: Sequence[Any]) -> Axis:
    """The author's stops for ``w``, checked: at least two, distinct, the default among them;
    a slider's in increasing order within its range, a selection's among its options."""
    values = list(values)
    if len(values) < 2 or len(set(map(repr, values))) < len(values):
        raise ValueError(
            f"stops for {name!r}: expected two or more distinct values, got {values!r}"
        )
    if w.value not in values:
        raise ValueError(
            f"stops for {name!r}: the default {w.value!r} must be one of them, got {values!r}"
        )
    label = (getattr(w, "description", "") or name).strip() or name
    if getattr(w, "options", None) is not None:
        names: dict[Any, str] = {}
        for text, v in zip(*_options(w)):
            names.setdefault(v, text)  # as ipywidgets: the first option of a value
        if any(v not in names for v in values):
            raise ValueError(f"stops for {name!r}: {values!r} are not all among its options")
        labels = [names[v] for v in values]
        kind = "range" if type(w).__name__.startswith("Selection") else "select"
    elif isinstance(w.value, bool):
        if values != [False, True] or not all(isinstance(v, bool) for v in values):
            raise ValueError(
                f"stops for the check box {name!r}: expected [False, True], got {values}"
            )
        labels, kind = ["off", "on"], "checkbox"
    else:
        lo, hi = (w.base**w.min, w.base**w.max) if hasattr(w, "base") else (w.min, w.max)
        if values != sorted(values) or not lo - 1e-9 <= values[0] <= values[-1] <= hi + 1e-9:
            raise ValueError(
                f"stops for {name!r}: expected increasing values from {lo:g} to {hi:g}, "
                f"got {values}"
            )
        labels, kind = _labels(values, log=hasattr(w, "base")), "range"
    return Axis(name, label, kind, values, labels, values.index(w.value))


def frame_grid(
    controls: Mapping[str, Any],
    *,
    max_frames: int = MAX_FRAMES,
    stops: Mapping[str, Sequence[Any]] | None = None,
) -> list[Axis]:
    """The stops of each control, by the grid rule of this module's docstring.

    Args:
        controls: ipywidgets controls by ``plot``'s keyword (sliders of ints, floats or logs,
            selection widgets, check boxes).
        max_frames: the frame budget: the product of the stop counts stays at or below it.
        stops: declared stops for some controls, kept as given.

    Returns:
        One :class:`Axis` per control, in the order of ``controls``; the frames are every
        combination of their ``values`` (the last control varying fastest).

    Raises:
        ValueError: an unknown name in ``stops``, a control the rule cannot sample, or a budget
            that even two stops per sampled control (and the declared stops) exceed.
    """
    stops = dict(stops or {})
    unknown = sorted(set(stops) - set(controls))
    if unknown:
        raise ValueError(f"stops for {unknown}, which are not controls: {sorted(controls)}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    fixed = {name: _declared(name, controls[name], stops[name]) for name in stops}
    free = {name: _control(name, w) for name, w in controls.items() if name not in stops}
    counts = {
        name: c.m if c.kind == "checkbox" or c.labels is not None else min(MAX_STOPS, c.m)
        for name, c in free.items()
    }
    sizes = {name: len(a.values) for name, a in fixed.items()}

    def size() -> int:
        sizes.update({name: len(free[name].axis(n).values) for name, n in counts.items()})
        return math.prod(sizes.values())

    while size() > max_frames:
        # a control that would still have fewer stops with one fewer asked of it
        can = [n for n, c in counts.items() if c > 2 and len(free[n].axis(c - 1).values) < sizes[n]]
        if not can:
            raise ValueError(
                f"{size()} frames with the fewest stops per control exceed "
                f"max_frames={max_frames}: raise max_frames or declare fewer stops"
            )
        counts[max(can, key=lambda name: sizes[name])] -= 1  # max: the first on a tie
    axes = []
    for name in controls:
        if name in fixed:
            axes.append(fixed[name])
        else:
            axes.append(free[name].axis(counts[name]))
    return axes


# ----------------------------------------------------------------------------- drawing them


def _pixels(fig: Figure):
    """``fig`` drawn once on matplotlib's Agg canvas at its dpi: ``(H, W, 3)`` uint8 RGB."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def _ink_box(rgb, pad: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of what differs from the corner's background, plus
    ``pad`` pixels, within the image."""
    import numpy as np

    ink = (rgb != rgb[0, 0]).any(axis=2)
    if not ink.any():
        return 0, rgb.shape[0], 0, rgb.shape[1]
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return (
        max(rows[0] - pad, 0),
        min(rows[-1] + 1 + pad, rgb.shape[0]),
        max(cols[0] - pad, 0),
        min(cols[-1] + 1 + pad, rgb.shape[1]),
    )


def _png(rgb) -> bytes:
    """RGB pixels as a PNG of 256 colours (a fast-octree palette)."""
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb))
    out = io.BytesIO()
    image.quantize(256, method=Image.Quantize.FASTOCTREE).save(out, format="PNG")
    return out.getvalue()


def render_png(fig: Figure, box: tuple[int, int, int, int] | None = None) -> bytes:
    """``fig`` as a PNG of 256 colours at the figure's dpi, its white margins cropped.

    One draw on matplotlib's Agg canvas, cropped to ``box`` (``(top, bottom, left, right)`` in
    pixels) or else to what was drawn plus 0.1 inch (what ``bbox_inches="tight"`` gives, which
    draws twice), then quantised to a palette: frames of line plots and bar charts come out 2 to
    3 times smaller than the RGBA PNG that Jupyter shows, with no visible change at these sizes.
    """
    rgb = _pixels(fig)
    top, bottom, left, right = box or _ink_box(rgb, round(0.1 * fig.dpi))
    return _png(rgb[top:bottom, left:right])


def _alt(fig: Figure, axes: list[Axis], index: tuple[int, ...]) -> str:
    """A frame's alt text: its control values, then the figure's title or its first axes'
    titles (TeX markup dropped: ``$\\gamma$`` reads ``gamma``)."""
    values = ", ".join(f"{a.label} = {a.labels[i]}" for a, i in zip(axes, index))
    titles = [t for t in (ax.get_title() for ax in fig.axes) if t]
    if len(titles) > 3:  # a grid of images with a caption each: the first three
        titles = [*titles[:3], "..."]
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    text = "; ".join([suptitle] if suptitle else titles)
    text = text.replace("$", "").replace("\\", "")
    return f"Figure at {values}." + (f" {text}" if text else "")


@dataclass
class Frames:
    """Every frame of a figure: PNG bytes and alt text, in the order of the grid.

    ``pngs[k]`` and ``alts[k]`` are the frame of ``indices[k]``, a tuple of one stop index per
    axis; the last axis varies fastest. ``box`` is the crop all frames share. Displayed in a
    notebook, it is the HTML of :func:`frames_html` (and the default frame as a PNG).
    """

    axes: list[Axis]
    pngs: list[bytes]
    alts: list[str]
    note: bool = True
    box: tuple[int, int, int, int] | None = None  # (top, bottom, left, right): the common crop

    @property
    def indices(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(len(a.values)) for a in self.axes)))

    @property
    def default(self) -> int:
        """The index of the frame at every control's default."""
        return self.indices.index(tuple(a.default for a in self.axes))

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        n = len(self.pngs)
        names = ", ".join(a.label for a in self.axes)
        return {
            "text/plain": f"<interactive figure: {n} frames over {names}>",
            "text/html": frames_html(self),
            # for renderers without HTML (a PDF, a terminal): the figure at its defaults
            "image/png": base64.b64encode(self.pngs[self.default]).decode("ascii"),
        }


def render_frames(plot: Callable[..., Figure], axes: list[Axis]) -> Frames:
    """Call ``plot`` at every combination of the axes' stops; render each figure (PNG).

    Every frame is cropped to the same box, the union of what the frames drew (plus 0.1 inch),
    so that the figure keeps its size and place while a reader moves a control.
    """
    import matplotlib.pyplot as plt

    combos = list(itertools.product(*(range(len(a.values)) for a in axes)))
    pixels, alts = [], []
    pad = 0
    for index in combos:
        fig = plot(**{a.name: a.values[i] for a, i in zip(axes, index)})
        if not isinstance(fig, Figure):
            raise ValueError(f"plot(...) must return a matplotlib Figure, got {type(fig).__name__}")
        pixels.append(_pixels(fig))
        alts.append(_alt(fig, axes, index))
        pad = round(0.1 * fig.dpi)
        plt.close(fig)
    if len({p.shape for p in pixels}) > 1:
        raise ValueError(
            f"plot(...) drew figures of different sizes {sorted({p.shape for p in pixels})}: "
            "give every figure the same size and dpi"
        )
    boxes = [_ink_box(p, pad) for p in pixels]
    box = (
        min(b[0] for b in boxes),
        max(b[1] for b in boxes),
        min(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
    pngs = [_png(p[box[0] : box[1], box[2] : box[3]]) for p in pixels]
    return Frames(axes, pngs, alts, box=box)


# ----------------------------------------------------------------------------- the HTML

# Shows the frame of the controls' positions; the last control varies fastest. The controls are
# disabled in the HTML until this runs (without JavaScript they would move nothing), and it shows
# the frame of their positions once at the start (a browser may restore a form's positions).
_SCRIPT = """(function (root) {
  var data = JSON.parse(root.querySelector("script.dlbook-frames-data").textContent);
  var img = root.querySelector("img.dlbook-frame");
  var live = root.querySelector(".dlbook-frames-live");
  var inputs = Array.prototype.slice.call(root.querySelectorAll("[data-axis]"));
  function show() {
    var k = 0;
    inputs.forEach(function (el, i) {
      var p = el.type === "checkbox" ? (el.checked ? 1 : 0) : parseInt(el.value, 10);
      k = k * data.shape[i] + p;
      if (el.type === "range") {
        el.setAttribute("aria-valuetext", data.labels[i][p]);
        root.querySelector('output[for="' + el.id + '"]').textContent = data.labels[i][p];
      }
    });
    if (img.getAttribute("data-frame") !== String(k)) {
      img.src = "data:image/png;base64," + data.frames[k];
      img.alt = data.alts[k];
      img.setAttribute("data-frame", String(k));
      live.textContent = data.alts[k];
    }
  }
  inputs.forEach(function (el) {
    el.disabled = false;
    el.addEventListener("input", show);
    el.addEventListener("change", show);
  });
  show();
})(document.currentScript.parentNode);"""

NOTE = (
    "Drawn in advance at {n} combinations of the controls' stops; in Jupyter or Colab the "
    "controls take every value and redraw the figure."
)

_counter = itertools.count()


def frames_html(frames: Frames) -> str:
    """The HTML of a figure's frames: an image, its controls, the frames' data and the script."""
    from PIL import Image

    first = frames.default
    digest = hashlib.sha1(b"".join(frames.pngs[:4])).hexdigest()[:8]
    uid = f"dlbook-frames-{digest}-{next(_counter)}"
    width, height = Image.open(io.BytesIO(frames.pngs[first])).size
    b64 = [base64.b64encode(png).decode("ascii") for png in frames.pngs]
    controls = []
    for i, a in enumerate(frames.axes):
        cid = f"{uid}-{i}"
        label = html.escape(a.label)
        if a.kind == "checkbox":
            checked = " checked" if a.values[a.default] else ""
            controls.append(
                f'<label><input type="checkbox" id="{cid}" data-axis="{i}"{checked} disabled> '
                f"{label}</label>"
            )
        elif a.kind == "select":
            options = "".join(
                f'<option value="{j}"{" selected" if j == a.default else ""}>'
                f"{html.escape(t)}</option>"
                for j, t in enumerate(a.labels)
            )
            controls.append(
                f'<label for="{cid}">{label}</label> '
                f'<select id="{cid}" data-axis="{i}" disabled>{options}</select>'
            )
        else:
            shown = html.escape(a.labels[a.default])
            controls.append(
                f'<label for="{cid}">{label}</label> <input type="range" id="{cid}" '
                f'data-axis="{i}" min="0" max="{len(a.values) - 1}" step="1" '
                f'value="{a.default}" aria-valuetext="{shown}" disabled> '
                f'<output for="{cid}">{shown}</output>'
            )
    data = {
        "shape": [len(a.values) for a in frames.axes],
        "labels": [a.labels for a in frames.axes],
        "alts": frames.alts,
        "frames": b64,
    }
    blob = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    note = (
        f'<p class="dlbook-frames-note"><em>{html.escape(NOTE.format(n=len(b64)))}</em></p>'
        if frames.note
        else ""
    )
    items = "".join(
        f'<span class="dlbook-frames-control" style="margin-right:1.5em">{c}</span>'
        for c in controls
    )
    return (
        f'<div class="dlbook-frames" id="{uid}">'
        f'<img class="dlbook-frame" src="data:image/png;base64,{b64[first]}" '
        f'alt="{html.escape(frames.alts[first])}" data-frame="{first}" width="{width}" '
        f'height="{height}" style="max-width:100%;height:auto">'
        f'<div class="dlbook-frames-controls" style="display:flex;flex-wrap:wrap;'
        f'align-items:center;gap:0.4em">{items}</div>{note}'
        '<span class="dlbook-frames-live" aria-live="polite" style="position:absolute;'
        'width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)"></span>'
        f'<script type="application/json" class="dlbook-frames-data">{blob}</script>'
        f"<script>{_SCRIPT}</script></div>"
    )
