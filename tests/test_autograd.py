"""dlbook.autograd: the scalar engine against torch.autograd, which we did not write."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from dlbook.autograd import MLP, Value, draw

matplotlib.use("Agg")

# Each operation: how to apply it to Values and to torch tensors, and a safe input range.
UNARY = {
    "exp": (lambda v: v.exp(), torch.exp, (-3, 3)),
    "log": (lambda v: v.log(), torch.log, (0.1, 5)),
    "tanh": (lambda v: v.tanh(), torch.tanh, (-3, 3)),
    "sigmoid": (lambda v: v.sigmoid(), torch.sigmoid, (-6, 6)),
    "relu": (lambda v: v.relu(), torch.relu, (-3, 3)),
    "neg": (lambda v: -v, torch.neg, (-3, 3)),
    "square": (lambda v: v**2, lambda t: t**2, (-3, 3)),
    "cube": (lambda v: v**3, lambda t: t**3, (-3, 3)),
    "sqrt": (lambda v: v**0.5, torch.sqrt, (0.1, 5)),
    "reciprocal": (lambda v: 1 / v, lambda t: 1 / t, (0.2, 5)),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


def _tensor(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_each_unary_operation_matches_torch(name):
    v_op, t_op, (lo, hi) = UNARY[name]
    for x in np.linspace(lo, hi, 7):
        v, t = Value(float(x)), _tensor(float(x))
        out_v, out_t = v_op(v), t_op(t)
        out_v.backward()
        out_t.backward()
        assert out_v.data == pytest.approx(out_t.item(), rel=1e-12, abs=1e-12)
        assert v.grad == pytest.approx(t.grad.item(), rel=1e-12, abs=1e-12), (name, x)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_each_binary_operation_matches_torch_also_with_plain_numbers(name):
    op = BINARY[name]
    for a, b in [(1.5, -2.0), (-0.3, 0.7), (2.0, 3.0)]:
        va, vb, ta, tb = Value(a), Value(b), _tensor(a), _tensor(b)
        op(va, vb).backward()
        op(ta, tb).backward()
        assert (va.grad, vb.grad) == pytest.approx((ta.grad.item(), tb.grad.item()), rel=1e-12)
        # a Value with a plain number on either side
        va = Value(a)
        op(va, b).backward()
        ta = _tensor(a)
        op(ta, b).backward()
        assert va.grad == pytest.approx(ta.grad.item(), rel=1e-12)
        vb = Value(b)
        op(a, vb).backward()
        tb = _tensor(b)
        op(a, tb).backward()
        assert vb.grad == pytest.approx(tb.grad.item(), rel=1e-12)


# ----------------------------------------------------------------------------- random expressions


@st.composite
def expressions(draw_):
    """A random expression over three inputs, as a list of instructions (a small program)."""
    n_steps = draw_(st.integers(1, 12))
    program = []
    for i in range(n_steps):
        n_avail = 3 + i
        if draw_(st.booleans()):
            program.append(
                ("u", draw_(st.sampled_from(sorted(UNARY))), draw_(st.integers(0, n_avail - 1)))
            )
        else:
            program.append(
                (
                    "b",
                    draw_(st.sampled_from(sorted(BINARY))),
                    draw_(st.integers(0, n_avail - 1)),
                    draw_(st.integers(0, n_avail - 1)),
                )
            )
    return program


def _run(program, inputs, unary, binary, squash):
    vals = list(inputs)
    for ins in program:
        if ins[0] == "u":
            _, name, i = ins
            lo, hi = UNARY[name][2]
            # squash the argument into the operation's safe range first (with tanh), so that no
            # log of a negative number, division by ~0 or overflow can happen
            x = squash(vals[i], lo, hi)
            vals.append(unary[name](x))
        else:
            _, name, i, j = ins
            b = vals[j]
            if name == "div":
                b = squash(b, 0.5, 3.0)
            vals.append(binary[name](vals[i], b))
    return vals[-1] + vals[0] * 0.5  # every input and the last result reach the output


def _squash_value(v, lo, hi):
    return (v * 0.5).tanh() * ((hi - lo) / 2) + (hi + lo) / 2


def _squash_torch(t, lo, hi):
    return torch.tanh(t * 0.5) * ((hi - lo) / 2) + (hi + lo) / 2


@settings(max_examples=150, deadline=None)
@given(program=expressions(), xs=st.lists(st.floats(-2, 2), min_size=3, max_size=3))
def test_random_expressions_match_torch_autograd(program, xs):
    vs = [Value(x) for x in xs]
    ts = [_tensor(x) for x in xs]
    out_v = _run(program, vs, {k: u[0] for k, u in UNARY.items()}, BINARY, _squash_value)
    out_t = _run(program, ts, {k: u[1] for k, u in UNARY.items()}, BINARY, _squash_torch)
    out_v.backward()
    out_t.backward()
    assert out_v.data == pytest.approx(out_t.item(), rel=1e-9, abs=1e-9)
    for v, t in zip(vs, ts):
        expected = 0.0 if t.grad is None else t.grad.item()  # None: the input was not used
        assert v.grad == pytest.approx(expected, rel=1e-8, abs=1e-9)


# ----------------------------------------------------------------------------- the algorithm


def test_topological_order_puts_inputs_first_and_survives_long_chains():
    x = Value(0.5)
    total = Value(0.0)
    for k in range(5000):  # a chain 10,000 operations deep: recursion would fail
        total = total + x * (k % 3)
    order = total.topological_order()
    position = {id(v): i for i, v in enumerate(order)}
    assert all(position[id(c)] < position[id(v)] for v in order for c in v._prev)
    assert len(order) == len({id(v) for v in order})  # each value once
    total.backward()
    assert x.grad == pytest.approx(sum(k % 3 for k in range(5000)))


def test_a_value_used_twice_accumulates_and_backward_is_repeatable():
    x = Value(3.0)
    y = x * x + x  # dy/dx = 2x + 1 = 7
    y.backward()
    assert x.grad == 7.0
    y.backward()  # the graph's gradients are reset first: same answer, not 14
    assert x.grad == 7.0


def test_gradient_of_a_diamond_graph():
    # f = (a b) + (a + b)^2: both paths from a to f count
    a, b = Value(2.0), Value(-1.0)
    f = a * b + (a + b) ** 2
    f.backward()
    assert (a.grad, b.grad) == (b.data + 2 * (a.data + b.data), a.data + 2 * (a.data + b.data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Value("1.0"), "real number"),
        (lambda: Value(True), "real number"),
        (lambda: Value(-1.0).log(), "positive"),
        (lambda: Value(2.0) ** Value(2.0), "constant"),
        (lambda: Value(-2.0) ** 0.5, "non-integer power"),
        (lambda: Value(0.0) ** -1, "negative power"),
        (lambda: Value(1.0) + "a", "real number"),
        (lambda: Value(1.0) / Value(0.0), "negative power"),
    ],
)
def test_invalid_operations_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_value_accepts_numpy_and_int_scalars():
    assert Value(np.float32(1.5)).data == 1.5
    assert Value(np.int64(2)).data == 2.0
    assert isinstance(Value(3).data, float)
    assert "data=2" in repr(Value(2.0, label="w")) and "w" in repr(Value(2.0, label="w"))


def test_sigmoid_is_stable_for_large_inputs():
    assert Value(-800.0).sigmoid().data == pytest.approx(0.0)
    assert Value(800.0).sigmoid().data == 1.0


# ----------------------------------------------------------------------------- the tiny MLP


def test_mlp_matches_torch_with_the_same_weights():
    net = MLP(3, [4, 4, 1], act="tanh", seed=1)
    assert len(net.parameters()) == (3 * 4 + 4) + (4 * 4 + 4) + (4 + 1)
    x = [0.3, -1.2, 0.7]
    out = net(x)
    out.backward()
    # rebuild it in torch from the same numbers
    params = []
    h = torch.tensor(x, dtype=torch.float64)
    for k, layer in enumerate(net.layers):
        W = torch.tensor([[w.data for w in n.w] for n in layer.neurons], dtype=torch.float64)
        b = torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64)
        W.requires_grad_(True)
        params.append(W)
        h = W @ h + b
        if k < len(net.layers) - 1:
            h = torch.tanh(h)
    h.sum().backward()
    assert out.data == pytest.approx(h.sum().item(), rel=1e-12)
    assert [w.grad for w in net.layers[0].neurons[2].w] == pytest.approx(
        params[0].grad[2].tolist(), rel=1e-10
    )


def test_mlp_learns_xor_quickly_and_is_reproducible():
    data = [([0.0, 0.0], -1.0), ([0.0, 1.0], 1.0), ([1.0, 0.0], 1.0), ([1.0, 1.0], -1.0)]

    def train(seed):
        net = MLP(2, [8, 1], act="tanh", seed=seed)
        for _ in range(300):
            loss = sum(((net(x) - y) ** 2 for x, y in data), Value(0.0)) * 0.25
            loss.backward()
            for p in net.parameters():
                p.data -= 0.1 * p.grad
        return loss.data

    assert train(0) < 0.05
    assert train(0) == train(0)


def test_mlp_validates():
    with pytest.raises(ValueError, match="sizes"):
        MLP(2, [])
    with pytest.raises(ValueError, match="act"):
        MLP(2, [3, 1], act="softmax")
    with pytest.raises(ValueError, match="expected 2 inputs"):
        MLP(2, [3, 1])([1.0, 2.0, 3.0])


def test_draw_returns_a_titled_figure_with_every_value():
    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    loss = (a * b).tanh()
    loss.label = "L"
    loss.backward()
    fig = draw(loss, title="tiny")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "tiny"
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "grad 1" in texts and f"grad {a.grad:.4g}" in texts and "tanh" in texts
    with pytest.raises(ValueError, match="small graphs"):
        big = sum((Value(float(i)) for i in range(100)), Value(0.0))
        draw(big)
    assert math.isfinite(a.grad)
