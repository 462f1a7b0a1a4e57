"""Checkers for Chapter 1's exercises: backward passes written by hand.

Every reference is PyTorch's autograd (or ``torch.nn.functional``), not code of ours. Functions
that return several gradients return a dict, and the checker reports each entry on its own line
(exact, allclose with the largest difference, or what is off), so a student sees which step of a
backward pass went wrong. Each checker lists the plausible mistakes it recognises by name;
``EXERCISES`` maps each exercise's name to its :class:`~dlbook.exercises.checker.Exercise`; it
includes the harder exercises on broadcasting, embeddings, LayerNorm and BatchNorm, which live in
:mod:`dlbook.exercises.backprop_layers` and whose checkers are re-exported here. Exercises that
ask for a backward pass derived with NumPy switch PyTorch's autograd off as a whole while the
student's function runs (:func:`~dlbook.exercises.backprop_layers.by_hand`).

Over 400 lines for a stated reason: five exercises, each a section with its cases, its reference
and its catalogue of mistakes, which a teacher reads together.

Derived in: Chapter 1, *Exercises*.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from dlbook.autograd import Value
from dlbook.backprop import Layer, log_softmax, softmax
from dlbook.exercises.backprop_layers import (
    BATCHNORM_MISTAKES,
    BROADCAST_MISTAKES,
    EMBEDDING_MISTAKES,
    LAYER_EXERCISES,
    LAYERNORM_MISTAKES,
    by_hand,
    check_batchnorm_backward,
    check_broadcast_backward,
    check_embedding_backward,
    check_layernorm_backward,
)
from dlbook.exercises.checker import Case, CheckReport, Exercise, Mistake

__all__ = [
    "BATCHNORM_MISTAKES",
    "BROADCAST_MISTAKES",
    "EMBEDDING_MISTAKES",
    "EXERCISES",
    "IGNORE_INDEX",
    "LAYERNORM_MISTAKES",
    "LINEAR_MISTAKES",
    "MLP_MISTAKES",
    "SOFTMAX_CE_MISTAKES",
    "SOFTPLUS_MISTAKES",
    "TANH_MISTAKES",
    "BuggyTanh",
    "check_batchnorm_backward",
    "check_broadcast_backward",
    "check_embedding_backward",
    "check_layernorm_backward",
    "check_linear_backward",
    "check_mlp_backward",
    "check_softmax_cross_entropy",
    "check_softplus",
    "check_tanh_layer",
    "linear_cases",
    "mlp_cases",
    "softmax_ce_cases",
]


def _t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def _onehot(labels: np.ndarray, v: int) -> np.ndarray:
    return np.eye(v)[labels]


# ----------------------------------------------------------------------------- softmax + CE


IGNORE_INDEX = -100  # a label that marks a padding row, PyTorch's default ignore_index


def softmax_ce_cases(seed: int = 0) -> list[Case]:
    """Logits ``(B, V)`` float64 and labels ``(B,)`` int64: one case with logits near 1000, two
    with padding rows (label ``IGNORE_INDEX``), one of them also near 1000."""
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (8, 10), (1, 5), (16, 2), (3, 4), (8, 6), (5, 4)]
    names = ["4 x 3", "8 x 10", "a single example", "16 x 2", "logits near 1000"]
    names += ["8 x 6, 3 padding rows", "5 x 4 near 1000, 2 padding rows"]
    cases = []
    for (b, v), name in zip(shapes, names):
        logits = rng.normal(size=(b, v)) * 2
        if "near 1000" in name:
            logits = 1000.0 + 5 * logits
        labels = rng.integers(0, v, size=b)
        if "padding" in name:
            labels[rng.choice(b, size=int(name.split(", ")[-1][0]), replace=False)] = IGNORE_INDEX
        cases.append(Case(args=(logits, labels), name=name))
    return cases


def _torch_softmax_ce(logits: np.ndarray, labels: np.ndarray) -> dict:
    z = _t(logits, grad=True)
    loss = F.cross_entropy(z, torch.from_numpy(labels), ignore_index=IGNORE_INDEX)
    loss.backward()
    return {"loss": loss.item(), "dlogits": z.grad.numpy()}


def _ce_variant(
    sign: float = 1.0,
    divide: bool = True,
    onehot: bool = True,
    mean: bool = True,
    stable: bool = True,
    count: str = "kept",
    zero_padding: bool = True,
):
    """Softmax cross-entropy with padding, the loss averaged over the ``count`` rows ("kept": the
    rows that are not padding, "all": B) unless ``not mean``, and a gradient with each of the
    other switches."""

    def wrong(logits: np.ndarray, labels: np.ndarray) -> dict:
        b, v = logits.shape
        keep = labels != IGNORE_INDEX
        n = int(keep.sum()) if count == "kept" else b
        safe = np.where(keep, labels, 0)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if stable:
                log_p = log_softmax(logits)
            else:
                log_p = np.log(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
            nll = -log_p[np.arange(b), safe] * keep
            grad = np.exp(log_p) - (_onehot(safe, v) if onehot else 0.0)
        if zero_padding:
            grad = grad * keep[:, None]
        else:
            grad = grad + _onehot(safe, v) * ~keep[:, None] * onehot  # P itself in padding rows
        return {
            "loss": float(nll.sum() / n if mean else nll.sum()),
            "dlogits": sign * grad / (n if divide else 1),
        }

    return wrong


SOFTMAX_CE_MISTAKES = [
    Mistake(
        "y - p (the wrong sign)",
        _ce_variant(sign=-1.0),
        "the gradient of the loss with respect to the logits is p - y: raising the right class's "
        "logit lowers the loss, so its gradient entry must be negative.",
    ),
    Mistake(
        "not divided by the batch size",
        _ce_variant(divide=False),
        "the loss is the mean over the rows that count (labels != -100), so every row of the "
        "gradient carries a factor 1/N, N the number of those rows (B without padding).",
    ),
    Mistake(
        "forgot to subtract the one-hot labels",
        _ce_variant(onehot=False),
        "differentiate -log p_y too: it contributes -1 at the label's entry, giving (p - y) / N.",
    ),
    Mistake(
        "summed over the batch instead of averaged",
        _ce_variant(divide=False, mean=False),
        "both the loss and its gradient should be averaged over the rows that count, as torch's "
        "cross_entropy does by default.",
    ),
    Mistake(
        "no log-sum-exp (exp overflows)",
        _ce_variant(stable=False),
        "exp(1000) overflows to inf and inf/inf is nan: subtract each row's maximum before "
        "exponentiating (the log-sum-exp trick); it changes nothing mathematically.",
    ),
    Mistake(
        "averaged over all B rows, padding included",
        _ce_variant(count="all"),
        "padding rows are not examples: the mean divides by the number of rows whose label is not "
        "-100, (labels != -100).sum(), not by B, in the loss and in the gradient.",
    ),
    Mistake(
        "padding rows not zeroed in the gradient",
        _ce_variant(zero_padding=False),
        "a padding row does not enter the loss, so its gradient row is exactly 0: multiply the "
        "gradient by the mask (labels != -100)[:, None].",
    ),
]


SOFTMAX_CROSS_ENTROPY = by_hand(
    "softmax_cross_entropy", softmax_ce_cases, _torch_softmax_ce, SOFTMAX_CE_MISTAKES
)


def check_softmax_cross_entropy(
    fn: Callable[[np.ndarray, np.ndarray], dict],
) -> CheckReport:
    """Check ``fn(logits (B, V), labels (B,)) -> {"loss": float, "dlogits": (B, V)}``, where a
    label ``-100`` marks a padding row that does not count.

    The reference is ``torch.nn.functional.cross_entropy`` (``ignore_index=-100``: the mean over
    the rows that count) and its autograd; autograd is off inside ``fn``.
    """
    return SOFTMAX_CROSS_ENTROPY.check(fn)


# ----------------------------------------------------------------------------- linear layer


def linear_cases(seed: int = 0) -> list[Case]:
    """``(X (..., n), W (m, n), b (m,), dY (..., m))``: inputs ``(B, n)`` and ``(B, T, n)``."""
    rng = np.random.default_rng(seed)
    shapes = [((4,), 3, 2), ((2, 5), 3, 4), ((3, 4), 5, 5), ((1, 6), 3, 4), ((16,), 7, 3)]
    names = ["B=4, n=3, m=2", "B=2, T=5, n=3, m=4", "B=3, T=4, n=m=5 (square W)"]
    names += ["one sequence, B=1, T=6, n=3, m=4", "B=16, n=7, m=3"]
    cases = []
    for (lead, n, m), name in zip(shapes, names):
        X, W, b = rng.normal(size=(*lead, n)), rng.normal(size=(m, n)), rng.normal(size=m)
        cases.append(Case(args=(X, W, b, rng.normal(size=(*lead, m))), name=name))
    return cases


def _torch_linear_backward(X, W, b, dY) -> dict:
    x, w, bb = _t(X, True), _t(W, True), _t(b, True)
    F.linear(x, w, bb).backward(_t(dY))  # x w^T + b, as the book's notation
    return {"dX": x.grad.numpy(), "dW": w.grad.numpy(), "db": bb.grad.numpy()}


def _rows(A: np.ndarray) -> np.ndarray:
    """``A (..., k)`` as a matrix ``(N, k)``, every leading axis one row axis."""
    return A.reshape(-1, A.shape[-1])


def _linear_variant(**change: Callable) -> Callable:
    def wrong(X, W, b, dY) -> dict:
        out = {"dX": dY @ W, "dW": _rows(dY).T @ _rows(X), "db": _rows(dY).sum(axis=0)}
        out.update({k: f(X, W, b, dY) for k, f in change.items()})
        return out

    return wrong


LINEAR_MISTAKES = [
    Mistake(
        "transposed dW (X^T Delta)",
        _linear_variant(dW=lambda X, W, b, dY: _rows(X).T @ _rows(dY)),
        "dL/dW must have the shape of W, (m, n): it is Delta^T X, (m, B) @ (B, n) (for X "
        "(B, T, n), with the B T positions as the rows).",
    ),
    Mistake(
        "db not summed over the batch",
        _linear_variant(db=lambda X, W, b, dY: dY),
        "b is added to every row, so its gradient sums the rows of Delta: Delta^T 1, of shape "
        "(m,).",
    ),
    Mistake(
        "db averaged instead of summed",
        _linear_variant(db=lambda X, W, b, dY: _rows(dY).mean(axis=0)),
        "sum the rows of Delta, do not average them: any 1/B is already inside dY.",
    ),
    Mistake(
        "dW divided by the batch size",
        _linear_variant(dW=lambda X, W, b, dY: _rows(dY).T @ _rows(X) / len(X)),
        "dY already carries the loss's 1/B; dividing again counts it twice.",
    ),
    Mistake(
        "dX with W transposed (Delta W^T)",
        _linear_variant(dX=lambda X, W, b, dY: dY @ W.T),
        "Y = X W^T, so dL/dX = Delta W, (..., m) @ (m, n); it has the shape of X.",
    ),
    Mistake(
        "db summed over the batch axis only",
        _linear_variant(db=lambda X, W, b, dY: dY.sum(axis=0)),
        "for X of shape (B, T, n) the bias is added at every position of every sequence: sum dY "
        "over the batch and the time axes, dY.sum(axis=(0, 1)), or over all but the last.",
    ),
    Mistake(
        "dW summed over the batch axis only, not over time",
        _linear_variant(dW=lambda X, W, b, dY: np.einsum("b...m,b...n->...mn", dY, X)),
        "W is shared by every position too: sum dY_t^T X_t over time as well as over the batch, "
        "e.g. flatten to (B T, m) and (B T, n) first, then dY^T X.",
    ),
    Mistake(
        "one dW per sequence, not summed over the batch",
        _linear_variant(dW=lambda X, W, b, dY: np.swapaxes(dY, -1, -2) @ X),
        "dY^T X per sequence gives B matrices (B, m, n): W is shared by the whole batch, so add "
        "them, dW = sum over b and t of dY[b, t] outer X[b, t], shape (m, n).",
    ),
]


LINEAR_BACKWARD = by_hand("linear_backward", linear_cases, _torch_linear_backward, LINEAR_MISTAKES)


def check_linear_backward(fn: Callable[..., dict]) -> CheckReport:
    """Check ``fn(X, W, b, dY) -> {"dX", "dW", "db"}`` for ``Y = X W^T + b`` on ``X (B, n)`` or
    ``X (B, T, n)``, ``dY = dL/dY`` of the shape of ``Y``.

    The reference is ``torch.nn.functional.linear`` and its autograd; autograd is off inside
    ``fn``.
    """
    return LINEAR_BACKWARD.check(fn)


# ----------------------------------------------------------------------------- a two-layer MLP

MLP_KEYS = ("dZ2", "dW2", "db2", "dA1", "dZ1", "dW1", "db1")


def mlp_cases(seed: int = 0) -> list[Case]:
    """``(X (B, n), y (B,), params)`` with ``params = {"W1": (h, n), "b1", "W2": (V, h), "b2"}``."""
    rng = np.random.default_rng(seed)
    sizes = [(6, 4, 5, 3), (10, 3, 8, 4), (1, 5, 3, 2), (32, 8, 8, 8)]  # (B, n, h, V)
    names = ["B=6, n=4, h=5, V=3", "B=10, n=3, h=8, V=4", "a single example", "B=32, n=h=V=8"]
    cases = []
    for (b, n, h, v), name in zip(sizes, names):
        params = {
            "W1": rng.normal(size=(h, n)) / np.sqrt(n),
            "b1": rng.normal(size=h) * 0.1,
            "W2": rng.normal(size=(v, h)) / np.sqrt(h),
            "b2": rng.normal(size=v) * 0.1,
        }
        X, y = rng.normal(size=(b, n)), rng.integers(0, v, size=b)
        cases.append(Case(args=(X, y, params), name=name))
    return cases


def _torch_mlp_backward(X, y, params) -> dict:
    p = {k: _t(v, True) for k, v in params.items()}
    z1 = F.linear(_t(X), p["W1"], p["b1"])
    a1 = torch.relu(z1)
    z2 = F.linear(a1, p["W2"], p["b2"])
    for t in (z1, a1, z2):
        t.retain_grad()
    F.cross_entropy(z2, torch.from_numpy(y)).backward()
    g = {"dZ2": z2.grad, "dW2": p["W2"].grad, "db2": p["b2"].grad, "dA1": a1.grad}
    g |= {"dZ1": z1.grad, "dW1": p["W1"].grad, "db1": p["b1"].grad}
    return {k: g[k].numpy() for k in MLP_KEYS}


def _mlp_variant(
    sign: float = 1.0,
    divide: bool = True,
    relu_grad: bool = True,
    transpose_dw: bool = False,
    db_mean: bool = False,
) -> Callable:
    def wrong(X, y, params) -> dict:
        W1, b1, W2, b2 = (params[k] for k in ("W1", "b1", "W2", "b2"))
        Z1 = X @ W1.T + b1
        A1 = np.maximum(Z1, 0.0)
        Z2 = A1 @ W2.T + b2
        dZ2 = sign * (softmax(Z2) - _onehot(y, Z2.shape[1])) / (len(X) if divide else 1)
        dA1 = dZ2 @ W2
        dZ1 = dA1 * (Z1 > 0) if relu_grad else dA1
        g = {"dZ2": dZ2, "dA1": dA1, "dZ1": dZ1}
        g["dW2"] = A1.T @ dZ2 if transpose_dw else dZ2.T @ A1
        g["dW1"] = X.T @ dZ1 if transpose_dw else dZ1.T @ X
        g["db2"] = dZ2.mean(axis=0) if db_mean else dZ2.sum(axis=0)
        g["db1"] = dZ1.mean(axis=0) if db_mean else dZ1.sum(axis=0)
        return {k: g[k] for k in MLP_KEYS}

    return wrong


MLP_MISTAKES = [
    Mistake(
        "forgot the ReLU derivative",
        _mlp_variant(relu_grad=False),
        "dZ1 = dA1 * (Z1 > 0): the gradient passes through the ReLU only where it was active.",
    ),
    Mistake(
        "dZ2 not divided by the batch size",
        _mlp_variant(divide=False),
        "the loss is a mean over the batch: dZ2 = (P - Y) / B, and every later gradient "
        "inherits that 1/B.",
    ),
    Mistake(
        "y - p (the wrong sign)",
        _mlp_variant(sign=-1.0),
        "dZ2 = (P - Y) / B; with Y - P every gradient points uphill.",
    ),
    Mistake(
        "transposed weight gradients",
        _mlp_variant(transpose_dw=True),
        "dW has the shape of W, (out, in): dW2 = dZ2^T A1 and dW1 = dZ1^T X.",
    ),
    Mistake(
        "bias gradients averaged instead of summed",
        _mlp_variant(db_mean=True),
        "db = dZ^T 1 sums over the batch; the 1/B is already inside dZ2.",
    ),
]


MLP_BACKWARD = by_hand("mlp_backward", mlp_cases, _torch_mlp_backward, MLP_MISTAKES)


def check_mlp_backward(fn: Callable[..., dict]) -> CheckReport:
    """Check ``fn(X, y, params) -> {"dZ2", "dW2", "db2", "dA1", "dZ1", "dW1", "db1"}``.

    The network: ``Z1 = X W1^T + b1``, ``A1 = relu(Z1)``, ``Z2 = A1 W2^T + b2``, loss the mean
    softmax cross-entropy of ``Z2`` against ``y``. The reference is torch.autograd, with the
    gradients of the intermediate tensors kept (``retain_grad``), each reported separately;
    autograd is off inside ``fn``.
    """
    return MLP_BACKWARD.check(fn)


# ----------------------------------------------------------------------------- find the bug


class BuggyTanh(Layer):
    """A tanh layer whose backward pass has a bug, for the "find the bug" exercise."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return np.tanh(x)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x = self._cached("_x")
        return grad_out * (1.0 - x**2)


def _tanh_cases(seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (8, 16), (1, 5)]
    return [
        Case(args=(rng.normal(size=s) * 1.5, rng.normal(size=s)), name=f"x of shape {s}")
        for s in shapes
    ]


def _run_layer(layer_cls: type) -> Callable[[np.ndarray, np.ndarray], dict]:
    def run(x: np.ndarray, grad_out: np.ndarray) -> dict:
        layer = layer_cls()
        y = layer.forward(x)
        return {"y": y, "dx": layer.backward(grad_out)}

    return run


def _torch_tanh(x: np.ndarray, grad_out: np.ndarray) -> dict:
    t = _t(x, True)
    y = torch.tanh(t)
    y.backward(_t(grad_out))
    return {"y": y.detach().numpy(), "dx": t.grad.numpy()}


def _tanh_variant(dx: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> Callable:
    def wrong(x: np.ndarray, grad_out: np.ndarray) -> dict:
        y = np.tanh(x)
        return {"y": y, "dx": dx(x, y, grad_out)}

    return wrong


TANH_MISTAKES = [
    Mistake(
        "the original bug: 1 - x^2 with the input x",
        _tanh_variant(lambda x, y, g: g * (1 - x**2)),
        "tanh'(x) = 1 - tanh(x)^2: square the layer's output, not its input.",
    ),
    Mistake(
        "forgot the square: 1 - tanh(x)",
        _tanh_variant(lambda x, y, g: g * (1 - y)),
        "tanh'(x) = 1 - tanh(x)^2, not 1 - tanh(x).",
    ),
    Mistake(
        "did not multiply by grad_out",
        _tanh_variant(lambda x, y, g: 1 - y**2),
        "backward returns a vector-Jacobian product: grad_out * tanh'(x), not tanh'(x) alone.",
    ),
    Mistake(
        "the sigmoid's derivative y (1 - y)",
        _tanh_variant(lambda x, y, g: g * y * (1 - y)),
        "y (1 - y) is the sigmoid's derivative; tanh's is 1 - y^2.",
    ),
]


TANH_LAYER = Exercise("tanh_layer", _tanh_cases, _torch_tanh, TANH_MISTAKES)


def check_tanh_layer(layer_cls: type) -> CheckReport:
    """Check a ``Layer`` subclass computing tanh: ``{"y": forward(x), "dx": backward(grad_out)}``.

    The reference is ``torch.tanh`` and its autograd.
    """
    if not isinstance(layer_cls, type):
        raise ValueError(f"pass the class itself (e.g. FixedTanh), got {type(layer_cls).__name__}")
    return TANH_LAYER.check(
        _run_layer(layer_cls), title=f"{layer_cls.__name__} (forward and backward)"
    )


# ----------------------------------------------------------------------------- a new Value op


def _softplus_cases() -> list[Case]:
    # (x, c, reuse): L = c * softplus(x), plus a second softplus(x) when reuse
    values = [(0.5, 1.0, False), (-2.0, 3.0, False), (3.0, -0.5, False), (1.2, 2.0, True)]
    names = ["x=0.5", "x=-2, L = 3 softplus(x)", "x=3, L = -0.5 softplus(x)"]
    names.append("x=1.2, softplus(x) used twice")
    return [Case(args=v, name=n) for v, n in zip(values, names)]


def _run_op(op: Callable[[Value], Value]) -> Callable[[float, float, bool], dict]:
    if not callable(op):
        raise ValueError(f"check_softplus expects a function of a Value, got {type(op).__name__}")

    def run(x0: float, c: float, reuse: bool) -> dict:
        x = Value(x0, label="x")
        y = op(x)
        if not isinstance(y, Value):
            raise ValueError(f"softplus must return a Value, got {type(y).__name__}")
        loss = c * y + op(x) if reuse else c * y
        loss.backward()
        return {"value": y.data, "grad": x.grad}

    return run


def _torch_softplus(x0: float, c: float, reuse: bool) -> dict:
    x = _t(np.array(x0), True)
    y = F.softplus(x)
    loss = c * y + F.softplus(x) if reuse else c * y
    loss.backward()
    return {"value": y.item(), "grad": x.grad.item()}


def _softplus_op(local: Callable[[float], float], accumulate: bool = True, chain: bool = True):
    import math

    def op(x: Value) -> Value:
        out = Value(math.log1p(math.exp(x.data)), (x,), "softplus")

        def _backward(out: Value) -> None:
            g = local(x.data) * (out.grad if chain else 1.0)
            x.grad = x.grad + g if accumulate else g

        out._backward = _backward
        return out

    return _run_op(op)


def _sigmoid(t: float) -> float:
    return 1.0 / (1.0 + np.exp(-t))


SOFTPLUS_MISTAKES = [
    Mistake(
        "forgot the inner derivative e^x",
        _softplus_op(lambda t: 1.0 / (1.0 + np.exp(t))),
        "d/dx log(1 + e^x) = e^x / (1 + e^x) = sigmoid(x): the chain rule multiplies 1/(1 + e^x) "
        "by the derivative of 1 + e^x.",
    ),
    Mistake(
        "did not multiply by out.grad",
        _softplus_op(_sigmoid, chain=False),
        "the chain rule: x.grad += sigmoid(x) * out.grad; the local derivative alone ignores "
        "everything after softplus.",
    ),
    Mistake(
        "assigned the gradient (=) instead of accumulating it (+=)",
        _softplus_op(_sigmoid, accumulate=False),
        "a value used twice receives a gradient from each use: write x.grad += ..., never "
        "x.grad = ...",
    ),
]


SOFTPLUS = Exercise("softplus", _softplus_cases, _torch_softplus, SOFTPLUS_MISTAKES)


def check_softplus(op: Callable[[Value], Value]) -> CheckReport:
    """Check ``op(x: Value) -> Value`` computing ``softplus(x) = log(1 + e^x)`` with its backward.

    Each case builds ``L = c * op(x)`` (plus a second ``op(x)`` when ``x`` is used twice), calls
    ``L.backward()`` and compares ``{"value": op(x).data, "grad": x.grad}`` with
    ``torch.nn.functional.softplus`` and its autograd.
    """
    return SOFTPLUS.check(_run_op(op))


EXERCISES = {
    e.name: e
    for e in (
        SOFTMAX_CROSS_ENTROPY,
        LINEAR_BACKWARD,
        MLP_BACKWARD,
        TANH_LAYER,
        SOFTPLUS,
        *LAYER_EXERCISES,  # Exercises 7 to 10, in dlbook.exercises.backprop_layers
    )
}
