"""A multi-layer perceptron in NumPy with a hand-written backward pass, and a gradient check.

Every layer has two methods. ``forward(x)`` computes the output and keeps what the backward pass
will need (its input, or its output). ``backward(grad_out)`` receives ``dL/d output`` and returns
``dL/d input``, a vector-Jacobian product; a layer with parameters also stores ``dL/d parameter``
in ``layer.grads``, under the same names and with the same shapes as ``layer.params``.

The batch is the leading axis, as in PyTorch: a linear layer maps ``X`` of shape ``(B, n)`` to

    Y = X W^T + 1 b^T,         W: (m, n),  b: (m,)

and its backward pass, for ``Delta = dL/dY`` of shape ``(B, m)``, is

    dL/dW = Delta^T X,   dL/db = Delta^T 1,   dL/dX = Delta W.

Losses (:class:`SoftmaxCrossEntropy`, :class:`MSELoss`) average over the batch; their
``backward()`` starts the chain. :func:`gradcheck` compares every parameter's gradient with
central finite differences in float64.

One file on purpose, like micrograd's ``engine.py`` and ``nn.py`` together: it is the chapter's
whole network (layers, losses, the gradient check, SGD and a small trainer), each part read in
the order the chapter derives it; its length (about 600 lines) is the backward passes written out.

Derived in: Chapter 1, *Gradients of the building blocks* and *The backward pass of an MLP*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import erf  # SciPy and threadpoolctl are installed with scikit-learn
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from dlbook.train import Run

__all__ = [
    "GELU",
    "SGD",
    "Layer",
    "Linear",
    "MSELoss",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Tanh",
    "accuracy",
    "gradcheck",
    "log_softmax",
    "logsumexp",
    "mlp",
    "numerical_gradient",
    "one_blas_thread",
    "relative_error",
    "sigmoid",
    "softmax",
    "train_classifier",
]

# ----------------------------------------------------------------------------- helpers


def _shape_error(where: str, what: str, expected: str, got: np.ndarray) -> ValueError:
    return ValueError(f"{where}: expected {what} of shape {expected}, got shape {got.shape}")


def _as_array(x: object, where: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{where}: expected a NumPy array, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{where}: expected a float array, got dtype {x.dtype}")
    return x


def one_blas_thread() -> threadpool_limits:
    """Run NumPy's matrix products on one thread inside a ``with`` block.

    BLAS splits even a (32, 64) @ (64, 256) product across threads; for products this small the
    threads' synchronisation costs more than it saves, and on a busy machine (a waiting thread
    that is not scheduled) up to 30 times more. Training and gradient checks of small networks
    do thousands of such products, so they run single-threaded.
    """
    return threadpool_limits(limits=1, user_api="blas")


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))``, elementwise, computed without overflow for large ``|z|``."""
    e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def logsumexp(z: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """``log(sum(exp(z)))`` along ``axis``, as ``m + log(sum(exp(z - m)))`` with ``m = max z``.

    Subtracting the maximum makes the largest exponent ``exp(0) = 1``: nothing overflows, and
    the sum is at least 1, so its log is finite.

    Derived in: Chapter 1, *Softmax and cross-entropy* (the log-sum-exp trick).
    """
    m = np.max(z, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """``z - logsumexp(z)`` along the last axis: log-probabilities, finite for any finite ``z``."""
    return z - logsumexp(z, axis=-1, keepdims=True)


def softmax(z: np.ndarray) -> np.ndarray:
    """``exp(z_i) / sum_j exp(z_j)`` along the last axis (through :func:`log_softmax`)."""
    return np.exp(log_softmax(z))


# ----------------------------------------------------------------------------- layers


class Layer:
    """Base class: ``params`` and ``grads`` are dicts of arrays with matching names and shapes."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def parameters(self) -> dict[str, np.ndarray]:
        """The parameter arrays themselves (not copies): an optimiser updates them in place."""
        return self.params

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients from the last ``backward``, same names and shapes as ``parameters()``."""
        return self.grads

    def _cached(self, name: str) -> np.ndarray:
        value = getattr(self, name, None)
        if value is None:
            raise ValueError(f"{type(self).__name__}: call forward before backward")
        return value

    def _check_grad(self, grad_out: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        grad_out = _as_array(grad_out, f"{type(self).__name__}.backward")
        if grad_out.shape != shape:
            raise ValueError(
                f"{type(self).__name__}.backward: expected grad_out of the output's shape "
                f"{shape}, got shape {grad_out.shape}"
            )
        return grad_out


class Linear(Layer):
    """``Y = X W^T + 1 b^T``: ``X`` (B, n_in) -> ``Y`` (B, n_out), like ``torch.nn.Linear``.

    Args:
        n_in, n_out: the widths.
        init: how to draw ``W``: ``"he"`` (variance 2 / n_in, for ReLU), ``"xavier"`` (variance
            2 / (n_in + n_out), Glorot and Bengio's), or a number: the standard deviation of a
            zero-mean normal. ``b`` starts at zero.
        rng: a NumPy generator (default: ``np.random.default_rng(0)``).
        dtype: float64 for gradient checks, float32 for speed.

    Derived in: Chapter 1, *The linear layer* and *Initialisation*.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        init: str | float = "he",
        rng: np.random.Generator | None = None,
        dtype: type | np.dtype = np.float64,
    ) -> None:
        super().__init__()
        if n_in < 1 or n_out < 1:
            raise ValueError(f"Linear needs n_in, n_out >= 1, got {n_in}, {n_out}")
        rng = rng if rng is not None else np.random.default_rng(0)
        if init == "he":
            std = np.sqrt(2.0 / n_in)
        elif init == "xavier":
            std = np.sqrt(2.0 / (n_in + n_out))
        elif isinstance(init, (int, float)) and not isinstance(init, bool) and init >= 0:
            std = float(init)
        else:
            raise ValueError(f"init must be 'he', 'xavier' or a std >= 0, got {init!r}")
        self.n_in, self.n_out = n_in, n_out
        self.params["W"] = (std * rng.standard_normal((n_out, n_in))).astype(dtype)
        self.params["b"] = np.zeros(n_out, dtype=dtype)
        self._x: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Linear({self.n_in} -> {self.n_out})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _as_array(x, f"{self!r}.forward")
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise _shape_error(f"{self!r}.forward", "x", f"(B, {self.n_in})", x)
        self._x = x  # backward needs the input: dL/dW = Delta^T X
        return x @ self.params["W"].T + self.params["b"]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x = self._cached("_x")
        delta = self._check_grad(grad_out, (x.shape[0], self.n_out))  # (B, m)
        self.grads["W"] = delta.T @ x  # (m, B) @ (B, n) = (m, n), the shape of W
        self.grads["b"] = delta.sum(axis=0)  # Delta^T 1: (m,)
        return delta @ self.params["W"]  # (B, m) @ (m, n) = (B, n), the shape of X


class Sigmoid(Layer):
    """``sigma(z) = 1 / (1 + e^-z)``; ``sigma'(z) = sigma(z) (1 - sigma(z))``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = sigmoid(_as_array(x, "Sigmoid.forward"))  # the output is all backward needs
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        y = self._cached("_y")
        return self._check_grad(grad_out, y.shape) * y * (1.0 - y)


class Tanh(Layer):
    """``tanh(z)``; ``tanh'(z) = 1 - tanh(z)^2``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = np.tanh(_as_array(x, "Tanh.forward"))
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        y = self._cached("_y")
        return self._check_grad(grad_out, y.shape) * (1.0 - y**2)


class ReLU(Layer):
    """``max(z, 0)``; derivative 1 where ``z > 0`` and 0 elsewhere (0 at ``z = 0``, as PyTorch)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _as_array(x, "ReLU.forward")
        self._mask = x > 0
        return np.where(self._mask, x, 0.0).astype(x.dtype)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        mask = self._cached("_mask")
        return self._check_grad(grad_out, mask.shape) * mask


class GELU(Layer):
    """``GELU(z) = z Phi(z)``, ``Phi`` the standard normal CDF (Hendrycks and Gimpel, 2016).

    ``GELU'(z) = Phi(z) + z phi(z)`` with ``phi`` the normal density. ``approximate="tanh"`` uses
    ``0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))``, as GPT-2 did; both match
    ``torch.nn.GELU(approximate=...)``.
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _as_array(x, "GELU.forward")
        self._x = x
        if self.approximate == "tanh":
            t = np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3))
            return 0.5 * x * (1.0 + t)
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x = self._cached("_x")
        grad_out = self._check_grad(grad_out, x.shape)
        if self.approximate == "tanh":
            c = np.sqrt(2.0 / np.pi)
            t = np.tanh(c * (x + 0.044715 * x**3))
            return grad_out * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * c * (1 + 0.134145 * x**2))
        cdf = 0.5 * (1.0 + erf(x / np.sqrt(2.0)))
        pdf = np.exp(-0.5 * x**2) / np.sqrt(2.0 * np.pi)
        return grad_out * (cdf + x * pdf)


ACTIVATIONS: dict[str, Callable[[], Layer]] = {
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "gelu": GELU,
}


class Sequential(Layer):
    """Layers applied in order; ``backward`` runs them in reverse order.

    Parameters are named ``"<index>.<name>"``, e.g. ``"0.W"``, ``"0.b"``, ``"2.W"``, as
    ``torch.nn.Sequential`` names them.
    """

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise ValueError("Sequential needs one or more Layer objects")
        self.layers = list(layers)

    def __repr__(self) -> str:
        return "Sequential(" + ", ".join(repr(layer) for layer in self.layers) + ")"

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def parameters(self) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, lay in enumerate(self.layers) for k, v in lay.params.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, lay in enumerate(self.layers) for k, v in lay.grads.items()}


def mlp(
    sizes: Sequence[int],
    activation: str = "relu",
    *,
    init: str | float | None = None,
    seed: int = 0,
    dtype: type | np.dtype = np.float64,
) -> Sequential:
    """An MLP: ``Linear, act, Linear, act, ..., Linear`` with widths ``sizes``.

    ``mlp([64, 128, 10])`` maps 64 inputs through 128 hidden units to 10 outputs (logits: no
    activation after the last layer). ``init`` defaults to He for ReLU and GELU, Xavier for
    sigmoid and tanh.
    """
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list at least two positive widths, got {list(sizes)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if init is None:
        init = "he" if activation in ("relu", "gelu") else "xavier"
    rng = np.random.default_rng(seed)
    layers: list[Layer] = []
    for i in range(len(sizes) - 1):
        layers.append(Linear(int(sizes[i]), int(sizes[i + 1]), init=init, rng=rng, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return Sequential(*layers)


# ----------------------------------------------------------------------------- losses


class SoftmaxCrossEntropy:
    """Mean cross-entropy of ``softmax(logits)`` against integer labels, and its gradient.

    ``forward(logits (B, V), labels (B,)) -> float`` is
    ``-(1/B) sum_i log softmax(z_i)[y_i]``, computed with the log-sum-exp trick;
    ``backward() -> (B, V)`` is ``(P - Y) / B`` with ``P`` the probabilities and ``Y`` the
    one-hot labels. Matches ``torch.nn.functional.cross_entropy``.

    Derived in: Chapter 1, *Softmax and cross-entropy*.
    """

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        logits = _as_array(logits, "SoftmaxCrossEntropy.forward")
        if logits.ndim != 2:
            raise _shape_error("SoftmaxCrossEntropy.forward", "logits", "(B, V)", logits)
        labels = np.asarray(labels)
        if labels.shape != (logits.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"SoftmaxCrossEntropy.forward: expected integer labels of shape "
                f"({logits.shape[0]},), got {labels.dtype} of shape {labels.shape}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise ValueError(
                f"SoftmaxCrossEntropy.forward: labels must be in [0, {logits.shape[1]}), "
                f"got values from {labels.min()} to {labels.max()}"
            )
        log_p = log_softmax(logits)
        self._p, self._labels = np.exp(log_p), labels
        return float(-log_p[np.arange(len(labels)), labels].mean())

    def backward(self) -> np.ndarray:
        if getattr(self, "_p", None) is None:
            raise ValueError("SoftmaxCrossEntropy: call forward before backward")
        grad = self._p.copy()
        grad[np.arange(len(self._labels)), self._labels] -= 1.0  # P - Y
        return grad / len(self._labels)

    __call__ = forward


class MSELoss:
    """Mean squared error over all entries, and its gradient ``2 (pred - target) / N``.

    Matches ``torch.nn.functional.mse_loss`` (reduction ``"mean"``).

    Derived in: Chapter 1, *The mean squared error*.
    """

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        pred = _as_array(pred, "MSELoss.forward")
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(
                f"MSELoss.forward: pred and target must have the same shape, got {pred.shape} "
                f"and {target.shape}"
            )
        self._diff = pred - target
        return float(np.mean(self._diff**2))

    def backward(self) -> np.ndarray:
        if getattr(self, "_diff", None) is None:
            raise ValueError("MSELoss: call forward before backward")
        return 2.0 * self._diff / self._diff.size

    __call__ = forward


# ----------------------------------------------------------------------------- gradient check


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Central differences ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` for every entry of ``x``.

    ``x`` is changed in place while ``f`` is evaluated (and restored), so ``f`` must read it:
    pass a parameter array of the model that ``f`` runs. The error is ``O(eps^2)`` from the
    Taylor expansion plus about ``1e-16 |f| / eps`` from rounding.
    """
    x = _as_array(x, "numerical_gradient")
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        f_plus = f()
        x[idx] = old - eps
        f_minus = f()
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b|| / (||a|| + ||b||)`` (Euclidean norms); 0 when both are zero."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"relative_error: shapes differ, {a.shape} and {b.shape}")
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def gradcheck(
    model: Layer,
    loss: SoftmaxCrossEntropy | MSELoss,
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: float = 1e-5,
    check_input: bool = True,
) -> dict[str, float]:
    """Compare ``model.backward``'s gradients with central finite differences, in float64.

    Runs ``loss(model(x), y)`` forward and backward once, then perturbs every entry of every
    parameter (and of ``x`` if ``check_input``) by ``+-eps``.

    Returns:
        ``{name: relative_error(analytic, numerical)}`` for each parameter, plus ``"input"``.
        A correct backward pass gives about 1e-9 or less; a wrong one about 1e-2 or more.

    Derived in: Chapter 1, *Checking gradients*.
    """
    x = _as_array(x, "gradcheck(x)")
    params = model.parameters()
    not64 = [n for n, p in {"x": x, **params}.items() if p.dtype != np.float64]
    if not64:
        raise ValueError(
            f"gradcheck needs float64 (float32 rounding swamps the finite differences); "
            f"{not64} are not: build the model with dtype=np.float64 and pass float64 inputs"
        )
    loss.forward(model.forward(x), y)
    grad_x = model.backward(loss.backward())
    analytic = {name: g.copy() for name, g in model.gradients().items()}

    def f() -> float:
        return loss.forward(model.forward(x), y)

    with one_blas_thread():  # thousands of small forward passes
        errors = {
            name: relative_error(analytic[name], numerical_gradient(f, p, eps))
            for name, p in params.items()
        }
        if check_input:
            errors["input"] = relative_error(grad_x, numerical_gradient(f, x, eps))
    return errors


# ----------------------------------------------------------------------------- training


class SGD:
    """Stochastic gradient descent with momentum: ``v <- mu v + g``, ``theta <- theta - lr v``.

    ``weight_decay`` adds ``wd * theta`` to the gradient of every weight matrix (not biases).
    """

    def __init__(
        self, model: Layer, lr: float, momentum: float = 0.0, weight_decay: float = 0.0
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.model, self.lr, self.momentum, self.weight_decay = model, lr, momentum, weight_decay
        self.velocity = {n: np.zeros_like(p) for n, p in model.parameters().items()}

    def step(self) -> None:
        grads = self.model.gradients()
        for name, p in self.model.parameters().items():
            g = grads[name]
            if self.weight_decay and p.ndim == 2:
                g = g + self.weight_decay * p
            v = self.velocity[name]
            v *= self.momentum
            v += g
            p -= self.lr * v  # in place: the model holds the same array


def accuracy(model: Layer, X: np.ndarray, y: np.ndarray, batch_size: int = 4096) -> float:
    """The share of rows of ``X`` whose largest logit is at the label ``y``."""
    correct = 0
    for i in range(0, len(X), batch_size):
        correct += int(
            (model.forward(X[i : i + batch_size]).argmax(axis=1) == y[i : i + batch_size]).sum()
        )
    return correct / len(X)


def train_classifier(
    model: Layer,
    X: np.ndarray,
    y: np.ndarray,
    *,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    desc: str = "training",
    progress: str = "plot",
) -> Run:
    """Minibatch SGD on the softmax cross-entropy, with a progress bar and a live loss plot.

    Each epoch visits the training set once in a new random order, drawn from a generator seeded
    by ``seed`` (the only random numbers the call draws: the model comes initialised). The
    validation loss and accuracy are recorded after every epoch (``"val"`` and ``"val_acc"``).
    ``progress``: ``"plot"``, ``"bar"`` or ``"off"`` (:func:`dlbook.train.train_loop`).

    Returns:
        A :class:`dlbook.train.Run`: ``model`` (trained in place) and its ``history``, with
        ``"train"`` (the loss of each step) and, when ``X_val`` is given, ``"val"`` and
        ``"val_acc"`` (steps are minibatch counts).
    """
    from dlbook.train import Run, train_loop

    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    rng = np.random.default_rng(seed)
    loss_fn, opt = SoftmaxCrossEntropy(), SGD(model, lr, momentum, weight_decay)
    per_epoch = int(np.ceil(len(X) / batch_size))
    order = rng.permutation(len(X))

    def step(i: int) -> float:
        nonlocal order
        k = i % per_epoch
        if k == 0 and i > 0:
            order = rng.permutation(len(X))
        idx = order[k * batch_size : (k + 1) * batch_size]
        value = loss_fn.forward(model.forward(X[idx]), y[idx])
        model.backward(loss_fn.backward())
        opt.step()
        return value

    def evaluate(_step: int) -> dict[str, float]:
        logits = model.forward(X_val)
        return {
            "val": SoftmaxCrossEntropy().forward(logits, y_val),
            "val_acc": accuracy(model, X_val, y_val),
        }

    with one_blas_thread():  # minibatch products are small
        history = train_loop(
            step,
            epochs * per_epoch,
            eval_fn=evaluate if X_val is not None else None,
            eval_every=per_epoch,
            desc=desc,
            progress=progress,
            plot={
                "names": ["train", "val"] if X_val is not None else ["train"],
                "title": "Training an MLP with backprop by hand",
                "smooth": max(1, per_epoch // 4),
            },
        )
    return Run(model=model, history=history)
