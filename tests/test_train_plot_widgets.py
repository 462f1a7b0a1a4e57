"""dlbook.train, dlbook.plot and dlbook.widgets."""

from __future__ import annotations

import ipywidgets
import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from dlbook import plot
from dlbook.train import History, StopTraining, eval_mode, train_loop
from dlbook.widgets import interactive_figure

matplotlib.use("Agg")


def test_train_loop_trains_records_and_evaluates():
    torch.manual_seed(0)
    w = torch.zeros(3, requires_grad=True)
    target = torch.tensor([1.0, -2.0, 0.5])
    opt = torch.optim.SGD([w], lr=0.1)
    eval_steps = []

    def step(i):
        opt.zero_grad()
        loss = ((w - target) ** 2).sum()
        loss.backward()
        opt.step()
        return loss

    def evaluate(i):
        eval_steps.append(i)
        return {"val": ((w - target) ** 2).sum()}

    h = train_loop(step, 50, eval_fn=evaluate, eval_every=20, progress="bar")
    assert eval_steps == [0, 20, 40, 50]
    assert len(h["train"]) == 50 and h.steps("val").tolist() == [0, 20, 40, 50]
    assert h.last("val") < 1e-6 < h.values("val")[0]
    assert h.min("train") <= h.values("train")[0]


def test_train_loop_resumes_into_an_existing_history():
    h = History()
    train_loop(lambda i: {"loss": float(i)}, 10, progress="off", history=h)
    train_loop(lambda i: {"loss": float(i)}, 15, start_step=10, progress="off", history=h)
    assert h.steps("loss").tolist() == list(range(15))


def test_train_loop_live_plot_outside_ipython_returns_quietly():
    h = train_loop(lambda i: 1.0 / (i + 1), 5, progress="plot", plot={"refresh_s": 0.0})
    fig = h.plot(title="t")
    ax = fig.axes[0]
    assert ax.get_title() == "t" and ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"


def test_train_loop_validates():
    with pytest.raises(ValueError, match="start_step"):
        train_loop(lambda i: 0.0, 3, start_step=5)
    with pytest.raises(ValueError, match="eval_every"):
        train_loop(lambda i: 0.0, 3, eval_every=0)
    with pytest.raises(ValueError, match="progress must be one of"):
        train_loop(lambda i: 0.0, 3, progress="live")
    with pytest.raises(KeyError, match="no metric 'val'"):
        History()["val"]


def test_train_loop_stops_early_and_evaluates_where_it_stopped():
    evals = []

    def step(i):
        if i == 7:
            raise StopTraining
        return float(i)

    def evaluate(i):
        evals.append(i)
        return {"val": float(i)}

    h = train_loop(step, 100, eval_fn=evaluate, eval_every=5, progress="off")
    assert h.steps("train").tolist() == list(range(7))
    assert evals == [0, 5, 7]


def test_progress_off_prints_nothing_and_bar_prints_a_bar(capsys):
    train_loop(lambda i: float(i), 3, progress="off")
    assert capsys.readouterr().err == ""
    train_loop(lambda i: float(i), 3, progress="bar", desc="xyz")
    assert "xyz" in capsys.readouterr().err


def test_eval_mode_restores_the_training_flag():
    net = torch.nn.Dropout(0.5)
    for before in (True, False):
        net.train(before)
        with eval_mode(net):
            assert not net.training
        assert net.training is before
    net.train()
    with pytest.raises(RuntimeError), eval_mode(net):
        raise RuntimeError
    assert net.training


def test_label_adds_a_legend_only_for_several_lines():
    plot.use_book_style()
    _, ax = plot.subplots()
    ax.plot([0, 1], label="a")
    plot.label(ax, "one", "x", "y")
    assert ax.get_legend() is None
    ax.plot([1, 0], label="b")
    plot.label(ax, "two", "x", "y")
    assert ax.get_legend() is not None and ax.get_title() == "two"


def test_heatmap_and_image_grid():
    _, ax = plot.subplots()
    plot.heatmap(
        ax,
        np.eye(3),
        title="I",
        xlabel="key",
        ylabel="query",
        annotate=True,
        xticklabels="abc",
        yticklabels="abc",
    )
    assert ax.get_xlabel() == "key" and len(ax.texts) == 9
    with pytest.raises(ValueError, match="2-D array"):
        plot.heatmap(ax, np.zeros(3), title="", xlabel="", ylabel="")
    g = plot.image_grid(np.zeros((5, 8, 8)), title="digits", labels=list("01234"))
    assert isinstance(g, Figure) and g.get_suptitle() == "digits"
    with pytest.raises(ValueError, match="labels"):
        plot.image_grid(np.zeros((5, 8, 8)), title="", labels=["0"])


def test_interactive_figure_draws_defaults_then_redraws_on_change():
    calls = []

    def draw(temperature):
        calls.append(temperature)
        fig = Figure()
        fig.add_subplot().plot([0, 1], [0, temperature])
        return fig

    slider = ipywidgets.FloatSlider(value=1.0, min=0.1, max=5.0)
    fig = interactive_figure(draw, temperature=slider)
    assert calls == [1.0] and fig.calls == 1
    slider.value = 2.5
    assert calls == [1.0, 2.5] and fig.values() == {"temperature": 2.5}


def test_interactive_figure_validates():
    with pytest.raises(ValueError, match="at least one control"):
        interactive_figure(lambda: Figure())
    with pytest.raises(ValueError, match="must be an ipywidgets widget"):
        interactive_figure(lambda t: Figure(), t=3)
    with pytest.raises(ValueError, match="must return a matplotlib Figure"):
        interactive_figure(lambda t: None, t=ipywidgets.IntSlider(value=1))


def test_controls_describe_themselves_for_the_static_book():
    from dlbook.widgets import _Controls

    controls = {
        "temperature": ipywidgets.FloatLogSlider(value=1.0, min=-1, max=1),
        "activation": ipywidgets.Dropdown(options=["relu", "tanh"], value="tanh"),
    }
    bundle = _Controls(ipywidgets.VBox(list(controls.values())), controls, True)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # live kernels get the widgets
    html = bundle["text/html"]
    assert "temperature: FloatLogSlider from 0.1 to 10 (default 1)" in html
    assert "activation: Dropdown one of relu, tanh (default tanh)" in html


def test_progress_outside_a_notebook_is_plain_tqdm():
    from tqdm.std import tqdm as std_tqdm

    from dlbook.train import progress_bar

    bar = progress_bar(range(3), desc="x", disable=True)
    assert isinstance(bar, std_tqdm) and list(bar) == [0, 1, 2]


def test_enable_inline_is_a_no_op_outside_a_kernel():
    assert plot.enable_inline() is False
