"""A scalar reverse-mode automatic differentiation engine, in the spirit of micrograd.

A :class:`Value` holds one number, ``data``, and remembers the operation that produced it and its
inputs (its *children* in the computational graph). Every operation also records its *local
derivatives*: how a small change in each input changes the output. :meth:`Value.backward` then
visits the graph in reverse topological order and applies the chain rule,

    d loss / d input  +=  d output / d input  *  d loss / d output,

once per edge, so that every node ends with ``grad = d loss / d node``. That is all of
backpropagation; tensors only batch it.

    >>> a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    >>> loss = (a * b + a.exp()).tanh()
    >>> loss.backward()
    >>> round(a.grad, 6), round(b.grad, 6)
    (0.967244, 0.440753)

The module ends with a tiny multi-layer perceptron built from Values (:class:`MLP`) and a drawing
of a graph with its values and gradients (:func:`draw`).

Derived in: Chapter 1, *Computational graphs and the chain rule* and *Reverse mode*.
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["MLP", "Layer", "Neuron", "Value", "draw"]


def _as_float(x: object, what: str) -> float:
    if type(x) is float:  # the common case, checked first because it is fast
        return x
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ValueError(f"{what} must be a real number, got {type(x).__name__} {x!r}")
    return float(x)


class Value:
    """One scalar in a computational graph, with the gradient of the loss with respect to it.

    Attributes:
        data: the number (a Python float).
        grad: ``d L / d self`` after ``L.backward()`` was called on a value ``L`` that depends on
            this one; 0.0 before.
        label: an optional name, shown by :func:`draw`.

    Derived in: Chapter 1, *Computational graphs and the chain rule*.
    """

    def __init__(
        self, data: float, _children: tuple[Value, ...] = (), _op: str = "", label: str = ""
    ) -> None:
        self.data = data if type(data) is float else _as_float(data, "Value(data)")
        self.grad = 0.0
        self.label = label
        self._prev = _children  # the inputs of the operation that made this value
        self._op = _op  # that operation's name, for drawing
        # _backward(out) sends out.grad to the inputs. It receives the output as an argument
        # instead of closing over it: then no reference cycle keeps a graph alive after its use.
        self._backward: Callable[[Value], None] = lambda out: None

    def __repr__(self) -> str:
        name = f"{self.label}: " if self.label else ""
        return f"Value({name}data={self.data:.6g}, grad={self.grad:.6g})"

    # ------------------------------------------------------------------ the basic operations
    # Each one computes its output, then defines _backward: the chain rule for its own inputs.
    # Gradients are *accumulated* (+=): a value used twice receives a contribution from each use.

    def __add__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(_as_float(other, "the other operand"))
        out = Value(self.data + other.data, (self, other), "+")

        def _backward(out: Value) -> None:  # d(a + b)/da = 1, d(a + b)/db = 1
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(_as_float(other, "the other operand"))
        out = Value(self.data * other.data, (self, other), "*")

        def _backward(out: Value) -> None:  # d(a b)/da = b, d(a b)/db = a
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, k: float) -> Value:
        """``self ** k`` for a constant exponent ``k`` (an int or a float, not a Value)."""
        if isinstance(k, Value):
            raise ValueError(
                "the exponent must be a constant number, got a Value; write (k * x.log()).exp() "
                "for x ** k with a learned k"
            )
        k = _as_float(k, "the exponent")
        if self.data < 0 and not k.is_integer():
            raise ValueError(f"a negative number ({self.data:g}) to a non-integer power ({k:g})")
        if self.data == 0 and k < 0:
            raise ValueError(f"0 to a negative power ({k:g}) is not defined")
        out = Value(self.data**k, (self,), f"**{k:g}")

        def _backward(out: Value) -> None:  # d(x^k)/dx = k x^(k-1)
            self.grad += k * self.data ** (k - 1) * out.grad

        out._backward = _backward
        return out

    def exp(self) -> Value:
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward(out: Value) -> None:  # d(e^x)/dx = e^x, which is out.data
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    def log(self) -> Value:
        """The natural logarithm; ``self.data`` must be positive."""
        if self.data <= 0:
            raise ValueError(f"log needs a positive number, got {self.data:g}")
        out = Value(math.log(self.data), (self,), "log")

        def _backward(out: Value) -> None:  # d(log x)/dx = 1/x
            self.grad += out.grad / self.data

        out._backward = _backward
        return out

    def tanh(self) -> Value:
        out = Value(math.tanh(self.data), (self,), "tanh")

        def _backward(out: Value) -> None:  # d(tanh x)/dx = 1 - tanh(x)^2
            self.grad += (1.0 - out.data**2) * out.grad

        out._backward = _backward
        return out

    def sigmoid(self) -> Value:
        x = self.data  # computed so that exp never overflows
        s = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
        out = Value(s, (self,), "sigmoid")

        def _backward(out: Value) -> None:  # d(sigma x)/dx = sigma(x) (1 - sigma(x))
            self.grad += out.data * (1.0 - out.data) * out.grad

        out._backward = _backward
        return out

    def relu(self) -> Value:
        out = Value(max(self.data, 0.0), (self,), "relu")

        def _backward(
            out: Value,
        ) -> None:  # 1 where x > 0, else 0 (at x = 0 we take 0, as PyTorch does)
            self.grad += (self.data > 0) * out.grad

        out._backward = _backward
        return out

    # ------------------------------------------------------------------ built from the above

    def __neg__(self) -> Value:  # -x
        return self * -1.0

    def __sub__(self, other: Value | float) -> Value:  # x - y
        return self + (-other)

    def __truediv__(self, other: Value | float) -> Value:  # x / y = x * y^-1
        if not isinstance(other, Value):
            other = Value(_as_float(other, "the divisor"))
        return self * other**-1

    def __radd__(self, other: float) -> Value:  # 2 + x
        return self + other

    def __rmul__(self, other: float) -> Value:  # 2 * x
        return self * other

    def __rsub__(self, other: float) -> Value:  # 2 - x
        return Value(_as_float(other, "the left operand")) - self

    def __rtruediv__(self, other: float) -> Value:  # 2 / x
        return Value(_as_float(other, "the numerator")) / self

    # ------------------------------------------------------------------ backpropagation

    def topological_order(self) -> list[Value]:
        """Every value this one depends on (itself included), each after all of its inputs.

        An iterative depth-first search, so a long chain (a sum of many terms) cannot exceed
        Python's recursion limit.
        """
        order: list[Value] = []
        visited: set[Value] = set()  # Values hash by identity
        stack: list[tuple[Value, bool]] = [(self, False)]
        while stack:
            node, inputs_done = stack.pop()
            if inputs_done:  # all of node's inputs are already in `order`: now node itself
                order.append(node)
            elif node not in visited:
                visited.add(node)
                stack.append((node, True))  # to be appended after its inputs
                for child in node._prev:
                    if child not in visited:
                        stack.append((child, False))
        return order

    def backward(self) -> None:
        """Set ``v.grad = d self / d v`` for every value ``v`` in this value's graph.

        The gradients of the whole graph are first set to zero, so calling ``backward`` twice
        gives the same gradients (PyTorch instead accumulates into its leaves across calls).
        Then ``self.grad = 1`` and each node, from the output back to the inputs, sends its
        gradient to its inputs with its local derivatives (the chain rule).

        Derived in: Chapter 1, *Reverse mode*.
        """
        order = self.topological_order()
        for node in order:
            node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):  # outputs before inputs
            node._backward(node)


# ----------------------------------------------------------------------------- a tiny network


class Neuron:
    """``act(w . x + b)`` for a list of ``n_in`` Values ``x``; ``act`` is tanh, relu or linear.

    Weights are drawn from N(0, 1/n_in) (Xavier/Glorot's variance for a square layer), the bias
    starts at 0.
    """

    def __init__(self, n_in: int, act: str = "tanh", rng: random.Random | None = None) -> None:
        if n_in < 1:
            raise ValueError(f"a neuron needs n_in >= 1 inputs, got {n_in}")
        if act not in ("tanh", "relu", "linear"):
            raise ValueError(f"act must be 'tanh', 'relu' or 'linear', got {act!r}")
        rng = rng or random.Random(0)
        self.w = [Value(rng.gauss(0.0, 1.0 / math.sqrt(n_in)), label="w") for _ in range(n_in)]
        self.b = Value(0.0, label="b")
        self.act = act

    def __call__(self, x: Sequence[Value | float]) -> Value:
        if len(x) != len(self.w):
            raise ValueError(f"expected {len(self.w)} inputs, got {len(x)}")
        z = self.b
        for wi, xi in zip(self.w, x):
            z = z + wi * xi
        if self.act == "tanh":
            return z.tanh()
        return z.relu() if self.act == "relu" else z

    def parameters(self) -> list[Value]:
        return [*self.w, self.b]


class Layer:
    """``n_out`` neurons reading the same ``n_in`` inputs."""

    def __init__(
        self, n_in: int, n_out: int, act: str = "tanh", rng: random.Random | None = None
    ) -> None:
        rng = rng or random.Random(0)
        self.neurons = [Neuron(n_in, act, rng) for _ in range(n_out)]

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        return [n(x) for n in self.neurons]

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]


class MLP:
    """A multi-layer perceptron on Values: ``MLP(2, [16, 16, 1])`` maps 2 inputs to 1 output.

    Hidden layers use ``act``; the last layer is linear (a score, or a regression output).
    """

    def __init__(self, n_in: int, sizes: Sequence[int], act: str = "tanh", seed: int = 0) -> None:
        if not sizes or any(s < 1 for s in sizes):
            raise ValueError(f"sizes must be a non-empty list of positive widths, got {sizes}")
        rng = random.Random(seed)
        widths = [n_in, *sizes]
        self.layers = [
            Layer(widths[i], widths[i + 1], act if i < len(sizes) - 1 else "linear", rng)
            for i in range(len(sizes))
        ]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        out: list[Value] = list(x)  # type: ignore[arg-type]
        for layer in self.layers:
            out = layer(out)
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]


# ----------------------------------------------------------------------------- drawing


def draw(root: Value, *, title: str = "", width: float | None = None) -> Figure:
    """Draw the graph of ``root``: one box per value (label, data, grad), one circle per operation.

    ``root`` is on the right; every other value sits one column left of the leftmost value that
    uses it, so inputs appear next to the operation that reads them. Within a column, values are
    ordered by the height of the values that use them, which avoids most crossings. Meant for
    graphs of up to a few dozen values.
    """
    import matplotlib.pyplot as plt

    order = root.topological_order()
    if len(order) > 80:
        raise ValueError(
            f"draw is meant for small graphs (<= 80 values), this one has {len(order)}"
        )
    # column: the longest path from the root (0 for the root itself)
    column: dict[Value, int] = {root: 0}
    users: dict[Value, list[Value]] = {v: [] for v in order}
    for v in reversed(order):  # every value before its inputs
        for c in v._prev:
            column[c] = max(column.get(c, 0), column[v] + 1)
            users[c].append(v)
    n_cols = 1 + max(column.values())
    y: dict[Value, float] = {root: 0.0}
    height = 1
    for col in range(1, n_cols):
        members = [v for v in order if column[v] == col]
        members.sort(key=lambda v: -np.mean([y[u] for u in users[v]]))
        height = max(height, len(members))
        for i, v in enumerate(members):
            y[v] = (len(members) - 1) / 2 - i

    fig, ax = plt.subplots(
        figsize=(width or max(6.4, 2.3 * n_cols), max(2.4, 0.9 * height + 0.9)),
        layout="constrained",
    )
    box = {"boxstyle": "round,pad=0.35", "fc": "#eef5fb", "ec": "#0072B2"}
    circle = {"boxstyle": "circle,pad=0.25", "fc": "#fff3d6", "ec": "#E69F00"}
    arrow = {"arrowstyle": "->", "color": "#555555", "lw": 0.9, "shrinkA": 2, "shrinkB": 2}
    boxes, ops = {}, {}
    for v in order:
        x = -3.0 * column[v]
        name = f"{v.label}\n" if v.label else ""
        text = f"{name}data {v.data:.4g}\ngrad {v.grad:.4g}"
        boxes[v] = ax.text(x, y[v], text, ha="center", va="center", fontsize=7.5, bbox=box)
        if v._prev:  # the operation, a circle just left of its result
            symbol = "×" if v._op == "*" else v._op
            ops[v] = ax.text(
                x - 1.4, y[v], symbol, ha="center", va="center", fontsize=8, bbox=circle
            )
    for v, op in ops.items():  # arrows from each input's box to the operation, then to the result
        for c in v._prev:
            ax.annotate("", (0, 0.5), (1, 0.5), xycoords=op, textcoords=boxes[c], arrowprops=arrow)
        ax.annotate("", (0, 0.5), (1, 0.5), xycoords=boxes[v], textcoords=op, arrowprops=arrow)
    ax.set_xlim(-3.0 * (n_cols - 1) - 2.2, 0.9)
    ax.set_ylim(-height / 2 - 0.1, height / 2 + 0.1)
    ax.set_axis_off()
    ax.set_title(title or "Computational graph: values and gradients")
    return fig
