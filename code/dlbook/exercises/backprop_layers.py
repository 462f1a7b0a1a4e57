"""Checkers for Chapter 1's harder exercises: the backward passes Chapter 3's GPT relies on.

Broadcasting (a gradient summed back over the broadcast axes), an embedding table (a scatter-add
over repeated token ids), LayerNorm and BatchNorm (the gradient through the mean and the variance).
Every reference is PyTorch's autograd through ``torch.nn.functional`` in float64, not code of ours.
The student writes these backward passes with NumPy, so each exercise switches PyTorch's autograd
off as a whole while the student's function runs (:func:`by_hand`, on
:func:`~dlbook.exercises.checker.switched_off`): a tensor that requires grad, autograd's
functions and PyTorch's own backward formulas (``torch.ops.aten.*_backward*``) raise
:class:`~dlbook.exercises.checker.AutogradForbidden`, and the checker reports where. The
broadcasting exercise also switches off ``Tensor.sum_to_size``, which is its answer in one call.
``dlbook.exercises.backprop`` merges ``LAYER_EXERCISES`` into its ``EXERCISES`` and re-exports
the checkers.

Over 400 lines for a stated reason: four exercises, each a section with its cases, its reference
and its catalogue of mistakes (LayerNorm's and BatchNorm's share one family of wrong backward
passes), which a teacher reads together.

Derived in: Chapter 1, *Exercises*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dlbook.exercises.checker import (
    AUTOGRAD,
    AutogradForbidden,
    Case,
    CheckReport,
    Exercise,
    Mistake,
)

__all__ = [
    "BATCHNORM_MISTAKES",
    "BROADCAST_MISTAKES",
    "BY_HAND",
    "EMBEDDING_MISTAKES",
    "LAYERNORM_MISTAKES",
    "LAYER_EXERCISES",
    "AutogradForbidden",
    "by_hand",
    "check_batchnorm_backward",
    "check_broadcast_backward",
    "check_embedding_backward",
    "check_layernorm_backward",
]


def _t(a: Any, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


# ----------------------------------------------------------------------------- no autograd inside


BY_HAND = "this exercise asks for the backward pass derived by hand, with NumPy"


def by_hand(
    name: str,
    cases: Callable[[], Sequence[Case]],
    reference: Callable[..., Any],
    mistakes: Sequence[Mistake],
    *,
    also: tuple[str, ...] = (),
    rule: str = BY_HAND,
) -> Exercise:
    """An :class:`~dlbook.exercises.checker.Exercise` whose backward pass is derived by hand:
    while the student's function runs, autograd is switched off as a whole (no tensor may
    require grad, so there is no graph and no ``grad_fn`` to call), its functions and PyTorch's
    backward formulas (:data:`~dlbook.exercises.checker.AUTOGRAD`) raise
    :class:`AutogradForbidden`, and so do the library functions named in ``also``. Torch
    without autograd (tensors, ``index_add_``) stays allowed."""
    return Exercise(
        name,
        cases,
        reference,
        mistakes,
        forbidden=(*AUTOGRAD, *also),
        rule=rule,
        autograd_off=True,
    )


# ----------------------------------------------------------------------------- broadcasting


def broadcast_cases(seed: int = 0) -> list[Case]:
    """``(dout, shape)``: the gradient of a broadcast result and the operand's shape."""
    rng = np.random.default_rng(seed)
    pairs = [
        ((3, 4), (3, 1), "a column (3, 1) broadcast to (3, 4)"),
        ((2, 3, 4), (4,), "a bias (4,) broadcast to (2, 3, 4)"),
        ((5, 4), (1, 4), "a row (1, 4) broadcast to (5, 4)"),
        ((3, 2, 5, 4), (2, 1, 4), "(2, 1, 4) broadcast to (3, 2, 5, 4): new and size-1 axes"),
        ((3, 3), (3,), "a (3,) row broadcast to a square (3, 3)"),
        ((2, 3), (), "a scalar broadcast to (2, 3)"),
        ((3, 4), (3, 4), "nothing broadcast"),
    ]
    return [Case(args=(rng.normal(size=out), shape), name=name) for out, shape, name in pairs]


def _torch_broadcast_backward(dout: np.ndarray, shape: tuple) -> np.ndarray:
    a = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    a.expand(dout.shape).backward(_t(dout))
    return a.grad.numpy()


def _unbroadcast(lead: Callable, ones: Callable | None = None, left: bool = False) -> Callable:
    """A reduction that applies ``lead`` to the axes the operand lacks (the leading ones, or the
    trailing ones if ``left``) and ``ones`` (default: leave them) to its size-1 axes."""

    def wrong(dout: np.ndarray, shape: tuple) -> np.ndarray:
        extra = dout.ndim - len(shape)
        axes = range(len(shape), dout.ndim) if left else range(extra)
        g = lead(dout, tuple(axes))
        if ones is None:
            return g
        size_one = tuple(i for i, s in enumerate(shape) if s == 1)
        return ones(g, size_one)

    return wrong


def _sum(g: np.ndarray, axes: tuple) -> np.ndarray:
    return g.sum(axis=axes)


def _sum_keep(g: np.ndarray, axes: tuple) -> np.ndarray:
    return g.sum(axis=axes, keepdims=True)


BROADCAST_MISTAKES = [
    Mistake(
        "returned the unreduced gradient",
        lambda dout, shape: dout,
        "the gradient has the shape of the operand: an entry copied to k places of the result "
        "receives the sum of those k gradients.",
    ),
    Mistake(
        "mean instead of sum",
        _unbroadcast(lambda g, ax: g.mean(axis=ax), lambda g, ax: g.mean(axis=ax, keepdims=True)),
        "each copy of an entry passes its gradient back to that entry, and the contributions add "
        "up (the multivariate chain rule): sum over the broadcast axes, do not average.",
    ),
    Mistake(
        "size-1 axes not reduced",
        _unbroadcast(_sum),
        "summing the new leading axes is half of it: an axis of size 1 that was stretched also "
        "needs a sum, with keepdims=True.",
    ),
    Mistake(
        "size-1 axes summed without keepdims",
        _unbroadcast(_sum, _sum),
        "sum the stretched size-1 axes with keepdims=True, so that (3, 1) stays (3, 1).",
    ),
    Mistake(
        "aligned the shapes from the left",
        _unbroadcast(_sum, _sum_keep, left=True),
        "broadcasting lines the shapes up from the right: the axes the operand lacks are the "
        "leading ones, so sum over axes 0, ..., dout.ndim - len(shape) - 1.",
    ),
]


BROADCAST_BACKWARD = by_hand(
    "broadcast_backward",
    broadcast_cases,
    _torch_broadcast_backward,
    BROADCAST_MISTAKES,
    also=("torch.Tensor.sum_to_size", "torch.ops.aten.sum_to_size"),  # the answer in one call
    rule="this exercise asks for the backward pass derived by hand (which axes to sum), with NumPy",
)


def check_broadcast_backward(fn: Callable[[np.ndarray, tuple], np.ndarray]) -> CheckReport:
    """Check ``fn(dout, shape) -> grad`` with ``grad.shape == shape``: the gradient of an operand
    of shape ``shape`` that was broadcast to ``dout.shape``.

    The reference is ``torch.Tensor.expand`` and its autograd; autograd, and
    ``Tensor.sum_to_size`` (the answer in one call), are off inside ``fn``.
    """
    return BROADCAST_BACKWARD.check(fn)


# ----------------------------------------------------------------------------- embedding


def embedding_cases(seed: int = 0) -> list[Case]:
    """``(idx, dout, vocab_size)``: token ids ``(B, T)`` or ``(N,)`` int64, ``dout (*idx.shape,
    d)`` float64."""
    rng = np.random.default_rng(seed)
    cases = []
    for idx, v, d, name in [
        (rng.integers(0, 7, size=(2, 5)), 7, 3, "B=2, T=5, V=7, d=3"),
        (rng.integers(0, 5, size=(4, 8)), 5, 4, "B=4, T=8, V=5: many repeats"),
        (np.array([3, 1, 3, 0, 3, 8]), 10, 2, "a flat list of 6 ids, id 3 three times"),
        (np.array([[4, 0, 2]]), 6, 3, "no repeated id: three rows of dW stay zero"),
        (np.array([[2, 2, 2, 2], [1, 1, 2, 0]]), 3, 5, "every id repeated"),
    ]:
        idx = np.asarray(idx, dtype=np.int64)
        cases.append(Case(args=(idx, rng.normal(size=(*idx.shape, d)), v), name=name))
    return cases


def _torch_embedding_backward(idx: np.ndarray, dout: np.ndarray, vocab_size: int) -> np.ndarray:
    W = torch.zeros(vocab_size, dout.shape[-1], dtype=torch.float64, requires_grad=True)
    F.embedding(torch.from_numpy(idx), W).backward(_t(dout))
    return W.grad.numpy()


def _assigned(idx: np.ndarray, dout: np.ndarray, vocab_size: int) -> np.ndarray:
    dW = np.zeros((vocab_size, dout.shape[-1]))
    dW[idx] = dout
    return dW


def _one_hot(idx: np.ndarray, vocab_size: int) -> np.ndarray:
    return np.eye(vocab_size)[idx]


def _averaged(idx: np.ndarray, dout: np.ndarray, vocab_size: int) -> np.ndarray:
    dW = np.zeros((vocab_size, dout.shape[-1]))
    np.add.at(dW, idx, dout)
    counts = np.bincount(idx.ravel(), minlength=vocab_size)
    return dW / np.maximum(counts, 1)[:, None]


EMBEDDING_MISTAKES = [
    Mistake(
        "dW[idx] = dout or dW[idx] += dout: repeated ids counted once",
        _assigned,
        "with repeated indices NumPy's fancy assignment writes each row once (dW[idx] += dout "
        "reads, adds and writes back once too), so an id that occurs k times keeps one gradient "
        "instead of the sum of k: use np.add.at(dW, idx, dout), a scatter-add.",
    ),
    Mistake(
        "one-hot product per sequence, not summed over the batch",
        lambda idx, dout, v: np.swapaxes(_one_hot(idx, v), -1, -2) @ dout,
        "dW = onehot^T dout must sum over every position of every sequence: flatten idx to (B T,) "
        "and dout to (B T, d) first, giving a (V, d) result.",
    ),
    Mistake(
        "transposed dW (dout^T onehot)",
        lambda idx, dout, v: dout.reshape(-1, dout.shape[-1]).T @ _one_hot(idx.ravel(), v),
        "dW has the shape of the table W, (V, d): onehot^T dout, (V, N) @ (N, d).",
    ),
    Mistake(
        "averaged over the occurrences of each id",
        _averaged,
        "a row used k times receives k gradients and they add up (the multivariate chain rule): "
        "do not divide by the count.",
    ),
]


EMBEDDING_BACKWARD = by_hand(
    "embedding_backward", embedding_cases, _torch_embedding_backward, EMBEDDING_MISTAKES
)


def check_embedding_backward(
    fn: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
) -> CheckReport:
    """Check ``fn(idx, dout, vocab_size) -> dW (vocab_size, d)`` for the lookup ``out = W[idx]``.

    The reference is ``torch.nn.functional.embedding`` and its autograd; autograd is off inside
    ``fn``.
    """
    return EMBEDDING_BACKWARD.check(fn)


# ----------------------------------------------------------------------------- LayerNorm


def _norm_case(rng: np.random.Generator, shape: tuple, eps: float, scale: float, name: str) -> Case:
    d = shape[-1]
    x = rng.normal(size=shape) * scale + rng.normal(size=(*shape[:-1], 1))
    gamma, beta = 1.0 + 0.5 * rng.normal(size=d), rng.normal(size=d)
    return Case(args=(x, gamma, beta, rng.normal(size=shape), eps), name=name)


def layernorm_cases(seed: int = 0) -> list[Case]:
    """``(x (..., d), gamma (d,), beta (d,), dy like x, eps)``, float64."""
    rng = np.random.default_rng(seed)
    return [
        _norm_case(rng, (4, 5), 1e-5, 1.0, "B=4, d=5"),
        _norm_case(rng, (2, 3, 8), 1e-5, 2.0, "B=2, T=3, d=8"),
        _norm_case(rng, (1, 6), 1e-5, 1.0, "a single row"),
        _norm_case(rng, (6, 4), 1e-2, 0.05, "variance near eps = 0.01"),
        _norm_case(rng, (3, 2, 16), 1e-5, 0.5, "B=3, T=2, d=16"),
    ]


def _torch_layernorm_backward(x, gamma, beta, dy, eps) -> dict:
    xt, g, b = _t(x, True), _t(gamma, True), _t(beta, True)
    F.layer_norm(xt, (x.shape[-1],), g, b, eps).backward(_t(dy))
    return {"dx": xt.grad.numpy(), "dgamma": g.grad.numpy(), "dbeta": b.grad.numpy()}


def _norm_variant(
    axis: int = -1,
    dx_terms: str = "both",
    ddof: int = 0,
    eps_inside: bool = True,
    reduce: str = "all",
) -> Callable[..., dict]:
    """The backward pass of ``gamma * (x - mean) / sqrt(var + eps) + beta`` with the statistics
    over ``axis``, keeping the terms of dx through the mean and the variance named in
    ``dx_terms`` ("both", "mean", "var", "none"); ``reduce`` is how dgamma and dbeta are reduced:
    "all" leading axes, axis "0" only, or "none"."""

    def wrong(x, gamma, beta, dy, eps) -> dict:
        n = x.shape[axis]
        mu = x.mean(axis=axis, keepdims=True)
        var = ((x - mu) ** 2).sum(axis=axis, keepdims=True) / (n - ddof)
        rstd = 1.0 / np.sqrt(var + eps) if eps_inside else 1.0 / (np.sqrt(var) + eps)
        xhat = (x - mu) * rstd
        g = dy * gamma
        dx = g.copy()
        if dx_terms in ("both", "mean"):
            dx = dx - g.mean(axis=axis, keepdims=True)
        if dx_terms in ("both", "var"):
            dx = dx - xhat * (g * xhat).sum(axis=axis, keepdims=True) / (n - ddof)
        dx = dx * rstd
        leading = tuple(range(x.ndim - 1)) if reduce == "all" else 0
        if reduce == "none":
            return {"dx": dx, "dgamma": dy * xhat, "dbeta": dy}
        return {"dx": dx, "dgamma": (dy * xhat).sum(axis=leading), "dbeta": dy.sum(axis=leading)}

    return wrong


_CONSTANT_STATS = (
    "the mean and the variance depend on x too: dx = (dxhat - mean(dxhat) - xhat "
    "mean(dxhat xhat)) / sqrt(var + eps), with dxhat = gamma dy and the means over the "
    "normalised axis; gamma dy / sqrt(var + eps) is only the first term."
)

LAYERNORM_MISTAKES = [
    Mistake(
        "mean and variance treated as constants", _norm_variant(dx_terms="none"), _CONSTANT_STATS
    ),
    Mistake(
        "missing the term through the variance",
        _norm_variant(dx_terms="mean"),
        "the variance depends on x too: subtract xhat * mean(dxhat * xhat) as well, with "
        "dxhat = gamma dy (with eps = 0 the rows of dx are then orthogonal to xhat).",
    ),
    Mistake(
        "missing the term through the mean",
        _norm_variant(dx_terms="var"),
        "the mean depends on x too: subtract mean(dxhat) over the row as well (the rows of dx then "
        "sum to zero, as shifting a row changes nothing after the normalisation).",
    ),
    Mistake(
        "normalised over the batch axis (that is BatchNorm)",
        _norm_variant(axis=0),
        "LayerNorm normalises each row over its d features, the last axis: mean(axis=-1, "
        "keepdims=True), for the forward pass and the means of the backward pass.",
    ),
    Mistake(
        "dgamma and dbeta not summed over the batch",
        _norm_variant(reduce="none"),
        "gamma and beta are shared by every row: their gradients sum dy * xhat and dy over all "
        "leading axes, giving shape (d,).",
    ),
    Mistake(
        "dgamma and dbeta summed over axis 0 only",
        _norm_variant(reduce="0"),
        "for an input (B, T, d) gamma and beta are shared by every position of every sequence: "
        "sum over the batch and time axes, axis=(0, 1), or over all but the last.",
    ),
    Mistake(
        "eps outside the square root",
        _norm_variant(eps_inside=False),
        "the normalisation divides by sqrt(var + eps), eps inside the square root (as "
        "torch.nn.functional.layer_norm does); it matters when the variance is near eps.",
    ),
]


LAYERNORM_BACKWARD = by_hand(
    "layernorm_backward", layernorm_cases, _torch_layernorm_backward, LAYERNORM_MISTAKES
)


def check_layernorm_backward(fn: Callable[..., dict]) -> CheckReport:
    """Check ``fn(x, gamma, beta, dy, eps) -> {"dx", "dgamma", "dbeta"}`` for LayerNorm over the
    last axis of ``x (..., d)``: ``gamma * (x - mean) / sqrt(var + eps) + beta``, the variance
    biased.

    The reference is ``torch.nn.functional.layer_norm`` and its autograd (float64); autograd is
    off inside ``fn``.
    """
    return LAYERNORM_BACKWARD.check(fn)


# ----------------------------------------------------------------------------- BatchNorm


def batchnorm_cases(seed: int = 1) -> list[Case]:
    """``(x (B, d), gamma (d,), beta (d,), dy (B, d), eps)``, float64, ``B >= 2``."""
    rng = np.random.default_rng(seed)
    cases = [
        _norm_case(rng, (8, 3), 1e-5, 1.0, "B=8, d=3"),
        _norm_case(rng, (4, 6), 1e-5, 2.0, "B=4, d=6"),
        _norm_case(rng, (16, 2), 1e-5, 1.0, "B=16, d=2"),
        _norm_case(rng, (5, 4), 1e-2, 0.05, "variance near eps = 0.01"),
    ]
    for c in cases:  # a different mean per feature, as a batch has (the rows share one above)
        c.args = (c.args[0] + rng.normal(size=c.args[0].shape[-1]) * 3, *c.args[1:])
    return cases


def _torch_batchnorm_backward(x, gamma, beta, dy, eps) -> dict:
    xt, g, b = _t(x, True), _t(gamma, True), _t(beta, True)
    F.batch_norm(xt, None, None, g, b, training=True, eps=eps).backward(_t(dy))
    return {"dx": xt.grad.numpy(), "dgamma": g.grad.numpy(), "dbeta": b.grad.numpy()}


BATCHNORM_MISTAKES = [
    Mistake(
        "mean and variance treated as constants",
        _norm_variant(axis=0, dx_terms="none"),
        _CONSTANT_STATS.replace("normalised axis", "batch axis"),
    ),
    Mistake(
        "missing the term through the variance",
        _norm_variant(axis=0, dx_terms="mean"),
        "the batch variance depends on every x in the column: subtract xhat * mean(dxhat * "
        "xhat, axis=0) as well, with dxhat = gamma dy.",
    ),
    Mistake(
        "normalised over the features (that is LayerNorm)",
        _norm_variant(axis=-1, reduce="all"),
        "BatchNorm normalises each feature over the batch, axis 0: mean(axis=0) and var(axis=0), "
        "in the forward pass and in the means of the backward pass.",
    ),
    Mistake(
        "unbiased variance (divided by B - 1)",
        _norm_variant(axis=0, ddof=1),
        "in training mode BatchNorm normalises with the biased variance, the mean of the squared "
        "deviations (divide by B); PyTorch uses B - 1 only for its running estimate.",
    ),
    Mistake(
        "dgamma and dbeta not summed over the batch",
        _norm_variant(axis=0, reduce="none"),
        "gamma and beta are shared by every example: dgamma = (dy * xhat).sum(axis=0), dbeta = "
        "dy.sum(axis=0), shape (d,).",
    ),
]


BATCHNORM_BACKWARD = by_hand(
    "batchnorm_backward", batchnorm_cases, _torch_batchnorm_backward, BATCHNORM_MISTAKES
)


def check_batchnorm_backward(fn: Callable[..., dict]) -> CheckReport:
    """Check ``fn(x, gamma, beta, dy, eps) -> {"dx", "dgamma", "dbeta"}`` for BatchNorm in
    training mode on ``x (B, d)``: each feature normalised over the batch with the batch mean and
    the biased batch variance.

    The reference is ``torch.nn.functional.batch_norm(training=True)`` and its autograd
    (float64); autograd is off inside ``fn``.
    """
    return BATCHNORM_BACKWARD.check(fn)


LAYER_EXERCISES = (BROADCAST_BACKWARD, EMBEDDING_BACKWARD, LAYERNORM_BACKWARD, BATCHNORM_BACKWARD)
