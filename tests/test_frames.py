"""dlbook.frames: the grid rule of the HTML book's interactive figures, and their frames."""

from __future__ import annotations

import base64
import html.parser
import json
import math
import random

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest

from dlbook import frames
from dlbook.frames import MAX_FRAMES, MAX_STOPS, frame_grid, render_frames, render_png


def _size(axes) -> int:
    return math.prod(len(a.values) for a in axes)


def _random_control(rng: random.Random):
    """A control as the book's notebooks make them, with a random range and default."""
    kind = rng.choice(["int", "float", "log", "dropdown", "selection", "checkbox"])
    if kind == "int":  # a maximum that may lie off the steps
        lo, step = rng.randint(-5, 5), rng.choice([1, 1, 3, 7])
        hi = lo + rng.randint(1, 200)
        value = min(lo + step * rng.randint(0, 60), hi)
        return ipywidgets.IntSlider(value=value, min=lo, max=hi, step=step)
    if kind == "float":
        step = rng.choice([0.01, 0.05, 0.1, 0.25])
        k = rng.randint(1, 100)
        lo = round(rng.uniform(-1, 1), 2)
        value = lo + step * rng.randint(0, k)
        return ipywidgets.FloatSlider(value=value, min=lo, max=lo + k * step, step=step)
    if kind == "log":
        base = rng.choice([2, 10])
        lo = rng.randint(-3, 0)
        hi = lo + rng.randint(1, 4)
        step = rng.choice([0.05, 0.1, 0.25])
        n = round((hi - lo) / step)
        value = float(base) ** (lo + step * rng.randint(0, n))
        return ipywidgets.FloatLogSlider(value=value, base=base, min=lo, max=hi, step=step)
    if kind in ("dropdown", "selection"):  # as values or as (label, value) pairs
        options = [f"o{i}" for i in range(rng.randint(2, 40))]
        cls = ipywidgets.Dropdown if kind == "dropdown" else ipywidgets.SelectionSlider
        if rng.random() < 0.5:
            return cls(options=[(o.upper(), o) for o in options], value=rng.choice(options))
        return cls(options=options, value=rng.choice(options))
    return ipywidgets.Checkbox(value=rng.random() < 0.5)


def _stops_the_slider_can_take(w, axis) -> bool:
    """Every stop but the default lies on the slider's steps, between its ends."""
    for j, v in enumerate(axis.values):
        if j == axis.default or v == _end(w, "max"):
            continue
        x = math.log(v, w.base) if isinstance(w, ipywidgets.FloatLogSlider) else v
        k = (x - w.min) / w.step
        if not (w.min - 1e-9 <= x <= w.max + 1e-9 and abs(k - round(k)) < 1e-6):
            return False
    return True


@pytest.mark.parametrize("seed", range(40))
def test_random_grids_keep_the_rule(seed):
    """Random controls and budgets: the default and the ends are stops, the stops are values the
    control can take, in order, and the frames fit the budget."""
    rng = random.Random(seed)
    controls = {f"c{i}": _random_control(rng) for i in range(rng.randint(1, 4))}
    budget = rng.choice([8, 16, 30, 64, 100])
    try:
        axes = frame_grid(controls, max_frames=budget)
    except ValueError as err:  # only when even the fewest stops are too many
        fewest = math.prod(
            2 if isinstance(w, ipywidgets.Checkbox) or _default_is_an_end(w) else 3
            for w in controls.values()
        )
        assert fewest > budget, err
        return
    assert _size(axes) <= budget
    for (name, w), a in zip(controls.items(), axes):
        assert a.name == name
        assert a.values[a.default] == w.value
        if isinstance(w, ipywidgets.Checkbox):
            assert a.values == [False, True] and a.kind == "checkbox"
            continue
        if hasattr(w, "options") and w.options is not None and not hasattr(w, "min"):
            order = [o[1] if isinstance(o, tuple) else o for o in w.options]
            positions = [order.index(v) for v in a.values]
            assert positions == sorted(set(positions))
            assert positions[0] == 0 and positions[-1] == len(order) - 1
            continue
        assert a.values == sorted(set(a.values))
        assert len(set(a.labels)) == len(a.labels)  # each stop reads apart from the others
        assert len(a.values) <= max(MAX_STOPS, 3)
        assert math.isclose(a.values[0], _end(w, "min")) and math.isclose(
            a.values[-1], _end(w, "max")
        )
        assert _stops_the_slider_can_take(w, a)


def _end(w, which: str) -> float:
    x = getattr(w, which)
    return float(w.base) ** x if isinstance(w, ipywidgets.FloatLogSlider) else x


def _default_is_an_end(w) -> bool:
    if hasattr(w, "options") and w.options is not None and not hasattr(w, "min"):
        order = [o[1] if isinstance(o, tuple) else o for o in w.options]
        return w.value in (order[0], order[-1])
    return w.value in (_end(w, "min"), _end(w, "max"))


def test_log_slider_stops_are_log_spaced_and_linear_ones_linear():
    log = ipywidgets.FloatLogSlider(value=0.01, base=10, min=-2, max=2, step=0.01)
    (a,) = frame_grid({"t": log})
    ratios = np.diff(np.log10(a.values))
    assert len(a.values) == MAX_STOPS
    np.testing.assert_allclose(ratios, 0.5, atol=0.011)  # 9 stops over 4 decades
    lin = ipywidgets.FloatSlider(value=0.0, min=0.0, max=4.0, step=0.01)
    (b,) = frame_grid({"x": lin})
    np.testing.assert_allclose(np.diff(b.values), 0.5, atol=0.011)


def test_the_default_splits_the_stops_in_proportion_and_is_always_one():
    w = ipywidgets.FloatLogSlider(value=1.0, min=-1, max=1, step=0.05)
    (a,) = frame_grid({"temperature": w})
    assert a.values[a.default] == 1.0
    assert a.values[0] == pytest.approx(0.1) and a.values[-1] == pytest.approx(10)
    below = [v for v in a.values if v < 1]
    above = [v for v in a.values if v > 1]
    assert abs(len(below) - len(above)) <= 1  # the default is in the middle of the range
    # an int slider whose default is near one end keeps the end too
    (e,) = frame_grid({"episodes": ipywidgets.IntSlider(value=4, min=1, max=64)})
    assert e.values[:2] == [1, 4] and e.values[-1] == 64 and len(e.values) == MAX_STOPS


def test_a_small_slider_shows_every_value_and_options_all_fit():
    axes = frame_grid(
        {
            "head": ipywidgets.Dropdown(options=[("first", 0), ("second", 1)], value=1),
            "n": ipywidgets.IntSlider(value=3, min=1, max=5),
        }
    )
    assert axes[0].values == [0, 1] and axes[0].labels == ["first", "second"]
    assert axes[0].default == 1 and axes[0].kind == "select"
    assert axes[1].values == [1, 2, 3, 4, 5] and axes[1].kind == "range"
    step = ipywidgets.SelectionSlider(options=list(range(0, 3001, 100)), value=3000)
    (s,) = frame_grid({"step": step})
    assert s.values == list(range(0, 3001, 100)) and s.default == 30 and s.kind == "range"


def test_budget_reduces_the_control_with_the_most_stops():
    controls = {
        "a": ipywidgets.IntSlider(value=0, min=0, max=100),
        "b": ipywidgets.Dropdown(options=list("xyz"), value="x"),
    }
    axes = frame_grid(controls, max_frames=12)
    assert [len(a.values) for a in axes] == [4, 3]
    axes = frame_grid(controls, max_frames=MAX_FRAMES)
    assert [len(a.values) for a in axes] == [MAX_STOPS, 3]
    axes = frame_grid(controls, max_frames=4)  # the options too, down to their ends
    assert [len(a.values) for a in axes] == [2, 2]
    assert axes[1].values == ["x", "z"]
    with pytest.raises(ValueError, match="max_frames=3"):
        frame_grid(controls, max_frames=3)


def test_declared_stops_are_kept_and_checked():
    controls = {
        "episodes": ipywidgets.IntSlider(value=4, min=1, max=64),
        "baseline": ipywidgets.Dropdown(options=["none", "mean"], value="none"),
    }
    axes = frame_grid(controls, stops={"episodes": [1, 2, 4, 8, 16, 32, 64]})
    assert axes[0].values == [1, 2, 4, 8, 16, 32, 64] and axes[0].default == 2
    with pytest.raises(ValueError, match="the default 4 must be one of them"):
        frame_grid(controls, stops={"episodes": [1, 2, 8]})
    with pytest.raises(ValueError, match="not controls"):
        frame_grid(controls, stops={"episode": [1, 4]})
    with pytest.raises(ValueError, match="two or more distinct"):
        frame_grid(controls, stops={"episodes": [4]})
    with pytest.raises(ValueError, match="two or more distinct"):
        frame_grid(controls, stops={"episodes": [1, 4, 4]})
    with pytest.raises(ValueError, match="increasing values from 1 to 64"):
        frame_grid(controls, stops={"episodes": [50, 4, 1]})
    with pytest.raises(ValueError, match="increasing values from 1 to 64"):
        frame_grid(controls, stops={"episodes": [-3, 4]})
    with pytest.raises(ValueError, match="not all among its options"):
        frame_grid(controls, stops={"baseline": ["none", "median"]})
    box = {"on": ipywidgets.Checkbox(value=True)}
    with pytest.raises(ValueError, match=r"expected \[False, True\]"):
        frame_grid(box, stops={"on": [0, 1, True]})
    with pytest.raises(ValueError, match="cannot draw frames for a Text"):
        frame_grid({"s": ipywidgets.Text(value="hi")})
    with pytest.raises(ValueError, match="holds a range of values"):
        frame_grid({"r": ipywidgets.IntRangeSlider(value=(2, 5), min=0, max=10)})
    # options that share a value: the first one's label, as ipywidgets shows it
    pairs = ipywidgets.Dropdown(options=[("a", 1), ("b", 1), ("c", 2)], value=1)
    (a,) = frame_grid({"p": pairs}, stops={"p": [1, 2]})
    assert a.labels == ["a", "c"]


def test_a_maximum_off_the_steps_is_still_a_stop_and_labels_name_the_value():
    (a,) = frame_grid({"n": ipywidgets.IntSlider(value=10, min=0, max=10, step=3)})
    assert a.values == [0, 3, 6, 9, 10] and a.default == 4
    (b,) = frame_grid({"n": ipywidgets.IntSlider(value=0, min=0, max=100, step=7)})
    assert b.values[0] == 0 and b.values[-1] == 100 and len(b.values) == MAX_STOPS
    (c,) = frame_grid({"x": ipywidgets.FloatSlider(value=1.0, min=1.0, max=1.05, step=0.001)})
    assert "1.012" in c.labels or "1.013" in c.labels  # six digits, not "1.01"
    assert len(set(c.labels)) == len(c.labels)
    (d,) = frame_grid({"t": ipywidgets.FloatLogSlider(value=1.0, min=-1, max=1, step=0.5)})
    assert d.labels == ["0.1", "0.316", "1", "3.16", "10"]  # three digits for a log slider


# ----------------------------------------------------------------------------- frames


def _plot(temperature=1.0, scaled=True, kind="bars"):
    """A figure that depends on every parameter (its bars, title and style)."""
    x = np.arange(8)
    p = np.exp(-x / temperature)
    p = p / p.sum() if scaled else p
    fig, ax = plt.subplots(figsize=(4, 2.5), dpi=80)
    if kind == "bars":
        ax.bar(x, p)
    else:
        ax.plot(x, p, "o-")
    ax.set_title(f"temperature {temperature:g}, {kind}, {'normalised' if scaled else 'raw'}")
    return fig


CONTROLS = {
    "temperature": ipywidgets.FloatLogSlider(value=1.0, min=-1, max=1, step=0.5),
    "scaled": ipywidgets.Checkbox(value=True, description="normalised"),
    "kind": ipywidgets.Dropdown(options=["bars", "line"], value="bars"),
}


@pytest.fixture(scope="module")
def drawn():
    axes = frame_grid(CONTROLS)
    return render_frames(_plot, axes)


def test_the_default_frame_is_the_plain_figure(drawn):
    plain = _plot()  # the function's own defaults, drawn apart from the grid
    try:
        assert drawn.pngs[drawn.default] == render_png(plain, box=drawn.box)
    finally:
        plt.close(plain)
    assert drawn.axes[0].values == pytest.approx([0.1, 0.316, 1, 3.16, 10], 1e-3)
    assert len(drawn.pngs) == 5 * 2 * 2


def test_each_frame_is_the_figure_at_its_values_the_last_control_fastest(drawn):
    assert len(set(drawn.pngs)) == len(drawn.pngs)  # every combination draws another figure
    for k in (1, 7, 13, len(drawn.pngs) - 1):
        index = drawn.indices[k]
        values = {a.name: a.values[i] for a, i in zip(drawn.axes, index)}
        fig = _plot(**values)
        try:
            assert drawn.pngs[k] == render_png(fig, box=drawn.box), (k, values)
        finally:
            plt.close(fig)
        alt = drawn.alts[k]
        for a, i in zip(drawn.axes, index):
            assert f"{a.label} = {a.labels[i]}" in alt
        assert f"temperature {values['temperature']:g}, {values['kind']}, " in alt  # the title
    assert drawn.indices[1] == (0, 0, 1)  # the row-major order the page's script reads


def test_every_frame_has_one_size_so_the_figure_does_not_jump(drawn):
    import io

    from PIL import Image

    sizes = {Image.open(io.BytesIO(png)).size for png in drawn.pngs}
    assert len(sizes) == 1, sizes
    # each frame alone would be cropped to its own ink, and these differ in size
    own = set()
    for k in range(len(drawn.pngs)):
        fig = _plot(**{a.name: a.values[i] for a, i in zip(drawn.axes, drawn.indices[k])})
        try:
            own.add(Image.open(io.BytesIO(render_png(fig))).size)
        finally:
            plt.close(fig)
    assert len(own) > 1


def test_frames_are_palette_pngs_smaller_than_matplotlibs():
    import io

    from PIL import Image

    fig = _plot()
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
        ours = render_png(fig)
    finally:
        plt.close(fig)
    mine, theirs = Image.open(io.BytesIO(ours)), Image.open(buf)
    assert mine.mode == "P"
    # cropped about as matplotlib's tight bounding box crops (it pads text boxes, we the ink)
    assert np.allclose(mine.size, theirs.size, atol=10), (mine.size, theirs.size)
    assert len(ours) < 0.6 * len(buf.getvalue())

    def ink(image):  # the drawn part: what is not the background
        a = np.asarray(image.convert("RGB"), dtype=float)
        drawn = (a != a[0, 0]).any(axis=2)
        rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
        return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    def differ(a, b):  # mean absolute difference at the best shift of up to 2 pixels
        h, w = min(a.shape[0], b.shape[0]) - 4, min(a.shape[1], b.shape[1]) - 4
        return min(
            np.abs(a[2 : 2 + h, 2 : 2 + w] - b[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]).mean()
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        )

    a, b = ink(mine), ink(theirs)
    assert np.allclose(a.shape, b.shape, atol=2)  # the same picture, to a pixel ...
    other = _plot(temperature=10.0, kind="line")
    try:
        c = ink(Image.open(io.BytesIO(render_png(other))))
    finally:
        plt.close(other)
    # ... as close to matplotlib's as the palette and a sub-pixel shift allow: far closer than
    # another figure of the same size and style is
    assert differ(a, b) < 0.15 * differ(a, c), (differ(a, b), differ(a, c))  # 1.9 vs 23.5


class _Parser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.data: dict[str, str] = {}
        self._in = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = dict(attrs).get("class") if tag == "script" else None

    def handle_data(self, data):
        if self._in is not None:
            self.data[self._in] = self.data.get(self._in, "") + data


def test_html_is_self_contained_with_one_native_control_per_axis(drawn):
    page = frames.frames_html(drawn)
    p = _Parser()
    p.feed(page)
    tags = [t for t, _ in p.tags]
    assert tags.count("img") == 1 and tags.count("script") == 2
    img = next(a for t, a in p.tags if t == "img")
    assert img["alt"] == drawn.alts[drawn.default]
    assert int(img["data-frame"]) == drawn.default
    controls = [(t, a) for t, a in p.tags if "data-axis" in a]
    assert [(t, a.get("type")) for t, a in controls] == [
        ("input", "range"),
        ("input", "checkbox"),
        ("select", None),
    ]
    assert controls[0][1]["value"] == str(drawn.axes[0].default)
    assert "checked" in controls[1][1]
    # disabled until the script runs: without JavaScript the controls do not pretend to work
    assert all("disabled" in a for _, a in controls)
    data = json.loads(p.data["dlbook-frames-data"])
    assert data["shape"] == [5, 2, 2] and len(data["frames"]) == 20
    assert data["alts"] == drawn.alts
    for a, labels in zip(drawn.axes, data["labels"]):
        assert labels == a.labels
    # nothing is fetched: the one image is a data URI, the script has no URL in it
    assert img["src"].startswith("data:image/png;base64,")
    assert [a for t, a in p.tags if t != "img" and ({"src", "href"} & set(a))] == []
    script = page.rsplit("<script>", 1)[1]
    assert "http" not in script and "fetch" not in script and "import" not in script


def test_interactive_figure_validates_its_grid_in_a_live_kernel_too():
    from dlbook.widgets import interactive_figure

    with pytest.raises(ValueError, match="not controls"):
        interactive_figure(_plot, stops={"temp": [0.1, 1]}, temperature=CONTROLS["temperature"])
    with pytest.raises(ValueError, match="max_frames=11"):
        interactive_figure(_plot, max_frames=11, **CONTROLS)  # 3 x 2 x 2 at the fewest
    fig = interactive_figure(_plot, max_frames=12, **CONTROLS)
    try:
        assert [len(a.values) for a in fig.grid] == [3, 2, 2]
        assert fig.frames is None  # no kernel here: nothing is drawn for the book
    finally:
        plt.close(fig.figure)


def test_frames_are_on_only_for_the_book(monkeypatch):
    monkeypatch.delenv(frames.FRAMES_ENV, raising=False)
    assert not frames.enabled()
    monkeypatch.setenv(frames.FRAMES_ENV, "1")
    assert frames.enabled()
    monkeypatch.setenv(frames.FRAMES_ENV, "0")
    assert not frames.enabled()


def test_in_a_kernel_the_book_gets_frames_and_jupyter_the_live_controls(monkeypatch):
    """``interactive_figure`` in a (stand-in) kernel: with ``DLBOOK_FRAMES=1`` it displays one
    output, the frames; without, the live figure and its ipywidgets, and draws no frame."""
    import IPython
    import IPython.display

    from dlbook.widgets import _Controls, interactive_figure

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())  # a shell with no kernel
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    controls = {
        "temperature": ipywidgets.FloatLogSlider(value=1.0, min=-1, max=1, step=0.5),
        "kind": ipywidgets.Dropdown(options=["bars", "line"], value="bars"),
    }
    monkeypatch.setenv(frames.FRAMES_ENV, "1")
    fig = interactive_figure(_plot, **controls)
    plt.close(fig.figure)
    assert len(shown) == 1 and shown[0] is fig.frames
    assert len(fig.frames.pngs) == 5 * 2 and fig.calls == 1  # the frames are drawn apart
    bundle = fig.frames._repr_mimebundle_()
    assert 'class="dlbook-frames"' in bundle["text/html"]
    assert base64.b64decode(bundle["image/png"]) == fig.frames.pngs[fig.frames.default]
    shown.clear()
    monkeypatch.delenv(frames.FRAMES_ENV)
    live = interactive_figure(_plot, **controls)
    plt.close(live.figure)
    assert live.frames is None and [type(o) for o in shown] == [type(live.figure), _Controls]
