"""Right and wrong answers to every auto-checked exercise, written the way a student would.

For each chapter, ``ANSWERS[chapter][exercise]`` holds right answers (each must pass the
exercise's checker) and wrong ones (each must fail with the named mistake's hint, plus any further
words in ``also``). They are written independently of the checkers' own references and mistake
functions, so that passing and recognising a mistake do not depend on an answer being computed
exactly as the checker computes it. The keys match each module's ``EXERCISES``; the contract in
``test_exercises_contract.py`` runs them. They live here, not in ``dlbook``, because students
import ``dlbook``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from dlbook import attention as A
from dlbook import backprop as bp
from dlbook import gan, gpt, rl, rlhf
from dlbook.autograd import Value
from dlbook.exercises import attention, backprop, demo
from dlbook.exercises import gan as gan_ex
from dlbook.exercises import gpt as gpt_ex
from dlbook.exercises import rl as rl_ex
from dlbook.exercises import rlhf as rlhf_ex


@dataclass(frozen=True)
class Wrong:
    """A wrong answer and what the feedback on it must contain."""

    answer: Any  # what the student passes to the checker: a function, or a class
    mistake: str  # the name of the checker's Mistake it must be recognised as
    also: tuple[str, ...] = ()  # further words the feedback must contain


@dataclass(frozen=True)
class Answers:
    """Right and wrong answers to one exercise."""

    right: tuple[Any, ...]
    wrong: tuple[Wrong, ...] = ()


# ----------------------------------------------------------------------------- 00: the demo


def mse_right(y_pred, y):
    return float(np.mean((y_pred - y) ** 2))


def mse_grad_right(y_pred, y):
    return 2 * (y_pred - y) / y_pred.size


def mse_summed_in_a_loop(y_pred, y):
    return float(sum((a - b) ** 2 for a, b in zip(y_pred.ravel(), y.ravel())))


def mse_grad_over_len(y_pred, y):
    return 2 * (y_pred - y) / len(y_pred)  # right for vectors, not for matrices


DEMO = {
    "mse": Answers(
        right=(mse_right,), wrong=(Wrong(mse_summed_in_a_loop, "a sum instead of a mean"),)
    ),
    "mse_grad": Answers(
        right=(mse_grad_right,),
        wrong=(Wrong(mse_grad_over_len, "divided by the number of rows only"),),
    ),
}


# ----------------------------------------------------------------------------- 01: backprop


def softmax_ce_right(logits, labels):
    keep = labels != -100  # padding rows do not count
    n, rows = keep.sum(), np.arange(len(labels))[keep]
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    dlogits = np.exp(log_p) * keep[:, None]
    dlogits[rows, labels[keep]] -= 1
    return {"loss": float(-log_p[rows, labels[keep]].sum() / n), "dlogits": dlogits / n}


def softmax_ce_right_kept_rows(logits, labels):
    """Only the rows that count, then scattered back into a gradient of zeros."""
    keep = labels != -100
    z, y = logits[keep], labels[keep]
    lse = z.max(axis=1) + np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1))
    p = np.exp(z - lse[:, None])
    p[np.arange(len(y)), y] -= 1
    dlogits = np.zeros_like(logits)
    dlogits[keep] = p / len(y)
    return {"loss": float(np.mean(lse - z[np.arange(len(y)), y])), "dlogits": dlogits}


def softmax_ce_wrong_sign(logits, labels):
    out = softmax_ce_right(logits, labels)
    return {"loss": out["loss"], "dlogits": -out["dlogits"]}


def softmax_ce_no_batch_division(logits, labels):
    out = softmax_ce_right(logits, labels)
    return {"loss": out["loss"], "dlogits": out["dlogits"] * np.sum(labels != -100)}


def softmax_ce_naive(logits, labels):
    keep = labels != -100
    z, y = logits[keep], labels[keep]
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(len(y)), y]))
    p[np.arange(len(y)), y] -= 1
    dlogits = np.zeros_like(logits)
    dlogits[keep] = p / len(y)
    return {"loss": float(loss), "dlogits": dlogits}


def softmax_ce_no_onehot(logits, labels):
    out = softmax_ce_right(logits, labels)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = p / p.sum(1, keepdims=True) * (labels != -100)[:, None]
    return {"loss": out["loss"], "dlogits": p / np.sum(labels != -100)}


def softmax_ce_mean_over_b(logits, labels):
    """Padding rows masked out, then the mean over all B rows."""
    B = len(labels)
    mask = (labels != -100).astype(float)
    safe = np.where(labels == -100, 0, labels)
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -(log_p[np.arange(B), safe] * mask).mean()
    dlogits = np.exp(log_p)
    dlogits[np.arange(B), safe] -= 1
    return {"loss": float(loss), "dlogits": dlogits * mask[:, None] / B}


def softmax_ce_padding_gradient_kept(logits, labels):
    keep = labels != -100
    n, rows = keep.sum(), np.arange(len(labels))[keep]
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    dlogits = np.exp(log_p)  # P in every row, padding rows too
    dlogits[rows, labels[keep]] -= 1
    return {"loss": float(-log_p[rows, labels[keep]].sum() / n), "dlogits": dlogits / n}


def linear_right(X, W, b, dY):
    X2, dY2 = X.reshape(-1, X.shape[-1]), dY.reshape(-1, dY.shape[-1])  # (B T, n), (B T, m)
    return {"dX": dY @ W, "dW": dY2.T @ X2, "db": dY2.sum(axis=0)}


def linear_right_tensordot(X, W, b, dY):
    lead = list(range(X.ndim - 1))  # contract every axis but the last
    return {
        "dX": dY @ W,
        "dW": np.tensordot(dY, X, axes=(lead, lead)),
        "db": dY.sum(axis=tuple(lead)),
    }


def linear_dw_transposed(X, W, b, dY):
    lead = list(range(X.ndim - 1))
    return {
        "dX": dY @ W,
        "dW": np.tensordot(X, dY, axes=(lead, lead)),
        "db": dY.sum(axis=tuple(lead)),
    }


def linear_db_unsummed(X, W, b, dY):
    return linear_right(X, W, b, dY) | {"db": dY}


def linear_db_mean(X, W, b, dY):
    return linear_right(X, W, b, dY) | {"db": np.mean(dY.reshape(-1, dY.shape[-1]), axis=0)}


def linear_dw_over_batch(X, W, b, dY):
    return linear_right(X, W, b, dY) | {"dW": linear_right(X, W, b, dY)["dW"] / X.shape[0]}


def linear_dx_with_w_transposed(X, W, b, dY):
    return linear_right(X, W, b, dY) | {"dX": dY @ W.T}


def linear_db_over_batch_axis(X, W, b, dY):
    """The 2-D answer's db, dY.sum(axis=0), kept for (B, T, m)."""
    X2, dY2 = X.reshape(-1, X.shape[-1]), dY.reshape(-1, dY.shape[-1])
    return {"dX": dY @ W, "dW": dY2.T @ X2, "db": dY.sum(axis=0)}


def linear_dw_over_batch_axis(X, W, b, dY):
    if X.ndim == 2:
        return linear_right(X, W, b, dY)
    dW = np.stack([dY[:, t].T @ X[:, t] for t in range(X.shape[1])])  # summed over B only
    return {"dX": dY @ W, "dW": dW, "db": dY.sum(axis=(0, 1))}


def linear_dw_per_sequence(X, W, b, dY):
    lead = tuple(range(X.ndim - 1))
    return {"dX": dY @ W, "dW": dY.swapaxes(-1, -2) @ X, "db": dY.sum(axis=lead)}


def broadcast_right(dout, shape):
    g = dout
    while g.ndim > len(shape):  # the axes broadcasting put in front
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:  # the size-1 axes it stretched
            g = g.sum(axis=axis, keepdims=True)
    return g


def broadcast_right_reshape(dout, shape):
    lead = dout.ndim - len(shape)
    stretched = tuple(lead + i for i, size in enumerate(shape) if size == 1)
    return dout.sum(axis=tuple(range(lead)) + stretched).reshape(shape)


def broadcast_unreduced(dout, shape):
    return dout


def broadcast_mean(dout, shape):
    g = dout
    while g.ndim > len(shape):
        g = g.mean(axis=0)
    for axis, size in enumerate(shape):
        if size == 1:
            g = g.mean(axis=axis, keepdims=True)
    return g


def broadcast_size_one_forgotten(dout, shape):
    g = dout
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    return g


def broadcast_no_keepdims(dout, shape):
    lead = dout.ndim - len(shape)
    stretched = tuple(lead + i for i, size in enumerate(shape) if size == 1)
    return dout.sum(axis=tuple(range(lead)) + stretched)


def broadcast_from_the_left(dout, shape):
    g = dout
    while g.ndim > len(shape):  # the extra axes taken to be the last ones
        g = g.sum(axis=-1)
    for axis, size in enumerate(shape):
        if size == 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


def embedding_right(idx, dout, vocab_size):
    dW = np.zeros((vocab_size, dout.shape[-1]))
    np.add.at(dW, idx, dout)  # a scatter-add: repeated ids add up
    return dW


def embedding_right_one_hot(idx, dout, vocab_size):
    one_hot = np.eye(vocab_size)[idx.ravel()]  # (N, V)
    return one_hot.T @ dout.reshape(-1, dout.shape[-1])


def embedding_right_loop(idx, dout, vocab_size):
    dW = np.zeros((vocab_size, dout.shape[-1]))
    for token, grad in zip(idx.ravel(), dout.reshape(-1, dout.shape[-1])):
        dW[token] += grad
    return dW


def embedding_assigned(idx, dout, vocab_size):
    dW = np.zeros((vocab_size, dout.shape[-1]))
    dW[idx] = dout
    return dW


def embedding_fancy_plus_equals(idx, dout, vocab_size):
    dW = np.zeros((vocab_size, dout.shape[-1]))
    dW[idx] += dout  # looks like a scatter-add, is not one
    return dW


def embedding_one_hot_per_sequence(idx, dout, vocab_size):
    one_hot = np.eye(vocab_size)[idx]  # (B, T, V)
    return one_hot.swapaxes(-1, -2) @ dout


def embedding_transposed(idx, dout, vocab_size):
    d = dout.shape[-1]
    return dout.reshape(-1, d).T @ np.eye(vocab_size)[idx.ravel()]


def embedding_averaged(idx, dout, vocab_size):
    dW = embedding_right(idx, dout, vocab_size)
    counts = np.bincount(idx.ravel(), minlength=vocab_size)
    return dW / np.maximum(counts, 1)[:, None]


def _layernorm(x, gamma, beta, dy, eps, axis=-1, ddof=0, terms=("mean", "var"), sum_axes=None):
    """The 3-term formula over ``axis``; ``terms`` are the parts of dx through the statistics,
    ``sum_axes`` the axes dgamma and dbeta are summed over (default: all but the last)."""
    n = x.shape[axis]
    mu = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, keepdims=True, ddof=ddof)
    rstd = 1 / np.sqrt(var + eps)
    xhat = (x - mu) * rstd
    dxhat = dy * gamma
    dx = dxhat
    if "mean" in terms:
        dx = dx - dxhat.mean(axis=axis, keepdims=True)
    if "var" in terms:
        dx = dx - xhat * (dxhat * xhat).sum(axis=axis, keepdims=True) / (n - ddof)
    axes = tuple(range(x.ndim - 1)) if sum_axes is None else sum_axes
    return {"dx": dx * rstd, "dgamma": (dy * xhat).sum(axis=axes), "dbeta": dy.sum(axis=axes)}


def layernorm_right(x, gamma, beta, dy, eps):
    return _layernorm(x, gamma, beta, dy, eps)


def layernorm_right_step_by_step(x, gamma, beta, dy, eps):
    """Backward through each line of the forward pass, as in "backprop ninja"."""
    d = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc**2).mean(axis=-1, keepdims=True)
    rstd = (var + eps) ** -0.5
    xhat = xc * rstd
    dxhat = dy * gamma
    drstd = (dxhat * xc).sum(axis=-1, keepdims=True)
    dvar = drstd * -0.5 * (var + eps) ** -1.5
    dxc = dxhat * rstd + dvar * 2 * xc / d
    dmu = -dxc.sum(axis=-1, keepdims=True)
    dx = dxc + dmu / d
    rows = dy.reshape(-1, d), xhat.reshape(-1, d)
    return {"dx": dx, "dgamma": (rows[0] * rows[1]).sum(0), "dbeta": rows[0].sum(0)}


def layernorm_constant_stats(x, gamma, beta, dy, eps):
    return _layernorm(x, gamma, beta, dy, eps, terms=())


def layernorm_no_variance_term(x, gamma, beta, dy, eps):
    return _layernorm(x, gamma, beta, dy, eps, terms=("mean",))


def layernorm_no_mean_term(x, gamma, beta, dy, eps):
    return _layernorm(x, gamma, beta, dy, eps, terms=("var",))


def layernorm_over_batch(x, gamma, beta, dy, eps):
    return _layernorm(x, gamma, beta, dy, eps, axis=0)


def layernorm_params_unsummed(x, gamma, beta, dy, eps):
    out = _layernorm(x, gamma, beta, dy, eps)
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return out | {"dgamma": dy * xhat, "dbeta": dy}


def layernorm_params_axis0(x, gamma, beta, dy, eps):
    return _layernorm(x, gamma, beta, dy, eps, sum_axes=0)


def layernorm_eps_outside(x, gamma, beta, dy, eps):
    mu, sigma = x.mean(-1, keepdims=True), x.std(-1, keepdims=True)
    xhat = (x - mu) / (sigma + eps)
    dxhat = dy * gamma
    dx = dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True)
    axes = tuple(range(x.ndim - 1))
    return {"dx": dx / (sigma + eps), "dgamma": (dy * xhat).sum(axes), "dbeta": dy.sum(axes)}


def batchnorm_right(x, gamma, beta, dy, eps):
    return _layernorm(x, gamma, beta, dy, eps, axis=0, sum_axes=0)


def batchnorm_right_step_by_step(x, gamma, beta, dy, eps):
    B = len(x)
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).mean(axis=0)
    xhat = (x - mu) / np.sqrt(var + eps)
    dxhat = dy * gamma
    dvar = (dxhat * (x - mu)).sum(axis=0) * -0.5 * (var + eps) ** -1.5
    dmu = -(dxhat / np.sqrt(var + eps)).sum(axis=0) + dvar * -2 * (x - mu).mean(axis=0)
    dx = dxhat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / B + dmu / B
    return {"dx": dx, "dgamma": (dy * xhat).sum(axis=0), "dbeta": dy.sum(axis=0)}


def batchnorm_constant_stats(x, gamma, beta, dy, eps):
    return _layernorm(x, gamma, beta, dy, eps, axis=0, terms=(), sum_axes=0)


def batchnorm_no_variance_term(x, gamma, beta, dy, eps):
    return _layernorm(x, gamma, beta, dy, eps, axis=0, terms=("mean",), sum_axes=0)


def batchnorm_over_features(x, gamma, beta, dy, eps):
    return _layernorm(x, gamma, beta, dy, eps)


def batchnorm_unbiased(x, gamma, beta, dy, eps):
    """np.var(ddof=1), then the backward pass line by line."""
    B = len(x)
    mu, var = x.mean(axis=0), x.var(axis=0, ddof=1)
    xhat = (x - mu) / np.sqrt(var + eps)
    dxhat = dy * gamma
    dvar = (dxhat * (x - mu)).sum(axis=0) * -0.5 * (var + eps) ** -1.5
    dmu = -(dxhat / np.sqrt(var + eps)).sum(axis=0)
    dx = dxhat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / (B - 1) + dmu / B
    return {"dx": dx, "dgamma": (dy * xhat).sum(axis=0), "dbeta": dy.sum(axis=0)}


def batchnorm_params_unsummed(x, gamma, beta, dy, eps):
    out = batchnorm_right(x, gamma, beta, dy, eps)
    xhat = (x - x.mean(0)) / np.sqrt(x.var(0) + eps)
    return out | {"dgamma": dy * xhat, "dbeta": dy}


def layernorm_with_autograd(x, gamma, beta, dy, eps):
    """The shortcut the exercise forbids: PyTorch's autograd does the backward pass."""
    xt, g, b = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    torch.nn.functional.layer_norm(xt, (x.shape[-1],), g, b, eps).backward(torch.tensor(dy))
    return {"dx": xt.grad.numpy(), "dgamma": g.grad.numpy(), "dbeta": b.grad.numpy()}


def mlp_right(X, y, params):
    Z1 = X @ params["W1"].T + params["b1"]
    A1 = np.maximum(Z1, 0)
    Z2 = A1 @ params["W2"].T + params["b2"]
    P = np.exp(Z2 - Z2.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    dZ2 = P.copy()
    dZ2[np.arange(len(y)), y] -= 1
    dZ2 /= len(y)
    dA1 = dZ2 @ params["W2"]
    dZ1 = dA1 * (Z1 > 0)
    return {
        "dZ2": dZ2,
        "dW2": dZ2.T @ A1,
        "db2": dZ2.sum(0),
        "dA1": dA1,
        "dZ1": dZ1,
        "dW1": dZ1.T @ X,
        "db1": dZ1.sum(0),
    }


def mlp_forgot_relu(X, y, params):
    g = mlp_right(X, y, params)
    dZ1 = g["dA1"]
    return g | {"dZ1": dZ1, "dW1": dZ1.T @ X, "db1": dZ1.sum(0)}


def mlp_sum_not_mean(X, y, params):
    return {k: v * len(y) for k, v in mlp_right(X, y, params).items()}


def mlp_wrong_sign(X, y, params):
    return {k: -v for k, v in mlp_right(X, y, params).items()}


class FixedTanh(bp.Layer):
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, grad_out):
        return grad_out * (1 - self.out**2)


class ForgotSquare(FixedTanh):
    def backward(self, grad_out):
        return grad_out * (1 - self.out)


class NoUpstream(FixedTanh):
    def backward(self, grad_out):
        return 1 - self.out**2


class SigmoidDerivative(FixedTanh):
    def backward(self, grad_out):
        return grad_out * self.out * (1 - self.out)


def softplus_right(x: Value) -> Value:
    out = Value(math.log1p(math.exp(x.data)), (x,), "softplus")

    def _backward(out):
        x.grad += out.grad / (1 + math.exp(-x.data))

    out._backward = _backward
    return out


def softplus_composed(x: Value) -> Value:
    return (x.exp() + 1).log()  # from the engine's own operations


def _softplus_op(local: Callable[[float], float], assign: bool = False, chain: bool = True):
    """A softplus whose backward multiplies ``local(x)`` (times ``out.grad`` if ``chain``)
    into ``x.grad``, with ``=`` if ``assign``."""

    def op(x):
        out = Value(math.log(1 + math.exp(x.data)), (x,), "softplus")

        def _backward(out):
            g = local(x.data) * (out.grad if chain else 1)
            if assign:
                x.grad = g
            else:
                x.grad += g

        out._backward = _backward
        return out

    return op


def _sig(t):
    return math.exp(t) / (1 + math.exp(t))


BACKPROP = {
    "softmax_cross_entropy": Answers(
        right=(softmax_ce_right, softmax_ce_right_kept_rows),
        wrong=(
            Wrong(softmax_ce_wrong_sign, "y - p (the wrong sign)", also=("sign is flipped",)),
            Wrong(softmax_ce_no_batch_division, "not divided by the batch size"),
            # only the two cases with logits near 1000 overflow: the other five pass
            Wrong(
                softmax_ce_naive, "no log-sum-exp (exp overflows)", also=("2 of 7 cases failed",)
            ),
            Wrong(softmax_ce_no_onehot, "forgot to subtract the one-hot labels"),
            # only the two cases with padding rows differ
            Wrong(
                softmax_ce_mean_over_b,
                "averaged over all B rows, padding included",
                also=("2 of 7 cases failed", "output['loss']: max |difference|"),
            ),
            # the loss is right, its gradient is not
            Wrong(
                softmax_ce_padding_gradient_kept,
                "padding rows not zeroed in the gradient",
                also=("output['loss']: \u2713",),
            ),
        ),
    ),
    "linear_backward": Answers(
        right=(linear_right, linear_right_tensordot),
        wrong=(
            Wrong(linear_dw_transposed, "transposed dW (X^T Delta)", also=("transpose",)),
            Wrong(linear_db_unsummed, "db not summed over the batch", also=("expected shape",)),
            Wrong(linear_db_mean, "db averaged instead of summed"),
            Wrong(linear_dw_over_batch, "dW divided by the batch size"),
            # the non-square cases cannot even multiply; the square one is recognised
            Wrong(
                linear_dx_with_w_transposed,
                "dX with W transposed (Delta W^T)",
                also=("raised ValueError",),
            ),
            # right for X (B, n): only the three (B, T, n) cases fail
            Wrong(
                linear_db_over_batch_axis,
                "db summed over the batch axis only",
                also=("3 of 5 cases failed", "expected shape (4,), got (5, 4)"),
            ),
            Wrong(linear_dw_over_batch_axis, "dW summed over the batch axis only, not over time"),
            Wrong(linear_dw_per_sequence, "one dW per sequence, not summed over the batch"),
        ),
    ),
    "mlp_backward": Answers(
        right=(mlp_right,),
        wrong=(
            Wrong(mlp_forgot_relu, "forgot the ReLU derivative"),
            Wrong(mlp_sum_not_mean, "dZ2 not divided by the batch size"),
            Wrong(mlp_wrong_sign, "y - p (the wrong sign)"),
        ),
    ),
    "tanh_layer": Answers(
        right=(FixedTanh, bp.Tanh),
        wrong=(
            # the forward pass is right, only dx is wrong
            Wrong(
                backprop.BuggyTanh,
                "the original bug: 1 - x^2 with the input x",
                also=("output['y']: \u2713",),
            ),
            Wrong(ForgotSquare, "forgot the square: 1 - tanh(x)"),
            Wrong(NoUpstream, "did not multiply by grad_out"),
            Wrong(SigmoidDerivative, "the sigmoid's derivative y (1 - y)"),
        ),
    ),
    "softplus": Answers(
        right=(softplus_right, softplus_composed),
        wrong=(
            Wrong(_softplus_op(lambda t: 1 / (1 + math.exp(t))), "forgot the inner derivative e^x"),
            Wrong(_softplus_op(_sig, chain=False), "did not multiply by out.grad"),
            Wrong(
                _softplus_op(_sig, assign=True),
                "assigned the gradient (=) instead of accumulating it (+=)",
            ),
        ),
    ),
    "broadcast_backward": Answers(
        right=(broadcast_right, broadcast_right_reshape),
        wrong=(
            Wrong(broadcast_unreduced, "returned the unreduced gradient", also=("expected shape",)),
            Wrong(broadcast_mean, "mean instead of sum"),
            Wrong(broadcast_size_one_forgotten, "size-1 axes not reduced"),
            Wrong(
                broadcast_no_keepdims,
                "size-1 axes summed without keepdims",
                also=("expected shape (3, 1), got (3,)",),
            ),
            Wrong(broadcast_from_the_left, "aligned the shapes from the left"),
        ),
    ),
    "embedding_backward": Answers(
        right=(embedding_right, embedding_right_one_hot, embedding_right_loop),
        wrong=(
            # right where no id repeats: 4 of the 5 cases fail
            Wrong(
                embedding_assigned,
                "dW[idx] = dout or dW[idx] += dout: repeated ids counted once",
                also=("4 of 5 cases failed",),
            ),
            Wrong(
                embedding_fancy_plus_equals,
                "dW[idx] = dout or dW[idx] += dout: repeated ids counted once",
            ),
            Wrong(
                embedding_one_hot_per_sequence,
                "one-hot product per sequence, not summed over the batch",
                also=("extra leading dimension",),
            ),
            Wrong(embedding_transposed, "transposed dW (dout^T onehot)"),
            Wrong(embedding_averaged, "averaged over the occurrences of each id"),
        ),
    ),
    "layernorm_backward": Answers(
        right=(layernorm_right, layernorm_right_step_by_step),
        wrong=(
            # dgamma and dbeta are right: only dx is wrong
            Wrong(
                layernorm_constant_stats,
                "mean and variance treated as constants",
                also=("output['dgamma']: \u2713",),
            ),
            Wrong(layernorm_no_variance_term, "missing the term through the variance"),
            Wrong(layernorm_no_mean_term, "missing the term through the mean"),
            Wrong(layernorm_over_batch, "normalised over the batch axis (that is BatchNorm)"),
            Wrong(layernorm_params_unsummed, "dgamma and dbeta not summed over the batch"),
            Wrong(layernorm_params_axis0, "dgamma and dbeta summed over axis 0 only"),
            Wrong(layernorm_eps_outside, "eps outside the square root"),
        ),
    ),
    "batchnorm_backward": Answers(
        right=(batchnorm_right, batchnorm_right_step_by_step),
        wrong=(
            Wrong(batchnorm_constant_stats, "mean and variance treated as constants"),
            Wrong(batchnorm_no_variance_term, "missing the term through the variance"),
            Wrong(batchnorm_over_features, "normalised over the features (that is LayerNorm)"),
            Wrong(batchnorm_unbiased, "unbiased variance (divided by B - 1)"),
            Wrong(batchnorm_params_unsummed, "dgamma and dbeta not summed over the batch"),
        ),
    ),
}


# ----------------------------------------------------------------------------- 02: attention


def masked_attention_right(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=scores.dtype))
    out = torch.softmax(scores, dim=-1) @ v
    return torch.where(mask.any(dim=-1, keepdim=True), out, torch.zeros_like(out))


def masked_attention_nan_to_num(q, k, v, mask):
    s = torch.einsum("...id,...jd->...ij", q, k) / q.shape[-1] ** 0.5
    weights = torch.softmax(s.masked_fill(~mask, -math.inf), dim=-1)
    return torch.nan_to_num(weights, nan=0.0) @ v  # a row of NaN (no allowed key) becomes 0


def masked_attention_times_mask(q, k, v, mask):
    s = torch.matmul(q, k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    return torch.softmax(s * mask, dim=-1) @ v  # multiplying by the mask: 0, not -inf


def masked_attention_unscaled(q, k, v, mask):
    s = torch.einsum("...id,...jd->...ij", q, k)
    return torch.softmax(s.masked_fill(mask == 0, -1e30), dim=-1) @ v


def masked_attention_wrong_axis(q, k, v, mask):
    s = (q @ k.mT) / math.sqrt(k.shape[-1])
    return s.masked_fill(~mask, -math.inf).softmax(dim=-2) @ v


def masked_attention_three_lines(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # a query with no allowed key: 0/0


def masked_attention_minus_1e9(q, k, v, mask):
    scores = (q @ k.mT) / math.sqrt(q.shape[-1])
    return torch.softmax(scores.masked_fill(~mask, -1e9), dim=-1) @ v


def multi_head_right(x, w_in, b_in, w_out, b_out, h):
    B, T, d = x.shape
    w_q, w_k, w_v = w_in.chunk(3)
    b_q, b_k, b_v = b_in.chunk(3)

    def heads(z):
        return z.reshape(B, T, h, d // h).permute(0, 2, 1, 3)

    q, k, v = heads(x @ w_q.T + b_q), heads(x @ w_k.T + b_k), heads(x @ w_v.T + b_v)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // h), dim=-1)
    out = (weights @ v).permute(0, 2, 1, 3).reshape(B, T, d)
    return out @ w_out.T + b_out


def multi_head_with_sdpa(x, w_in, b_in, w_out, b_out, h):
    B, T, d = x.shape
    q, k, v = (x @ w_in.t() + b_in).split(d, dim=-1)
    q, k, v = (z.view(B, T, h, d // h).transpose(1, 2) for z in (q, k, v))
    o = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # allowed: one head at a time
    return o.transpose(1, 2).reshape(B, T, d) @ w_out.t() + b_out


def _sdpa(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def multi_head_no_transpose(x, w_in, b_in, w_out, b_out, h):
    B, T, d = x.shape
    q, k, v = torch.chunk(x @ w_in.t() + b_in, 3, dim=-1)
    q, k, v = (z.view(B, h, T, d // h) for z in (q, k, v))
    o = _sdpa(q, k, v).transpose(1, 2).reshape(B, T, d)
    return o @ w_out.t() + b_out


def multi_head_forgot_projection(x, w_in, b_in, w_out, b_out, h):
    B, T, d = x.shape
    q, k, v = torch.chunk(x @ w_in.t() + b_in, 3, dim=-1)
    q, k, v = (z.view(B, T, h, d // h).transpose(1, 2) for z in (q, k, v))
    return _sdpa(q, k, v).transpose(1, 2).reshape(B, T, d)


def softmax_jacobian_right(z):
    p = torch.exp(z - z.max()) / torch.exp(z - z.max()).sum()
    return torch.diag(p) - p[:, None] * p[None, :]


def softmax_jacobian_entrywise(z):
    p = torch.softmax(z, dim=0)  # the forward softmax is allowed
    n = len(z)
    jac = torch.empty(n, n, dtype=z.dtype)
    for i in range(n):
        for j in range(n):
            jac[i, j] = p[i] * ((1.0 if i == j else 0.0) - p[j])
    return jac


def softmax_jacobian_only_diagonal(z):
    p = torch.softmax(z, 0)
    return torch.diag_embed(p - p**2)


def softmax_jacobian_sign_flipped(z):
    p = torch.softmax(z, 0)
    return torch.outer(p, p) - torch.diag(p)


def softmax_jacobian_outer_only(z):
    p = z.softmax(-1)
    return -p[:, None] @ p[None, :]


def _forward(q, k, v):
    """P and O, as a student computes them first."""
    scale = 1 / math.sqrt(q.shape[-1])
    P = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1)
    return scale, P, P @ v  # the scale s, P and the output O


def attention_backward_right(q, k, v, dout):
    s, P, out = _forward(q, k, v)
    dV = P.transpose(-2, -1) @ dout
    dP = dout @ v.transpose(-2, -1)
    delta = (dout * out).sum(dim=-1, keepdim=True)  # rowsum(dO * O)
    dS = P * (dP - delta)
    return {"dq": s * dS @ k, "dk": s * dS.transpose(-2, -1) @ q, "dv": dV}


def attention_backward_einsum(q, k, v, dout):
    scale = q.shape[-1] ** -0.5
    S = torch.einsum("...id,...jd->...ij", q, k) * scale
    P = torch.exp(S - S.amax(-1, keepdim=True))
    P = P / P.sum(-1, keepdim=True)
    dP = torch.einsum("...ic,...jc->...ij", dout, v)
    dS = P * (dP - (dP * P).sum(-1, keepdim=True))  # rowsum(dP * P)
    return {
        "dq": scale * torch.einsum("...ij,...jd->...id", dS, k),
        "dk": scale * torch.einsum("...ij,...id->...jd", dS, q),
        "dv": torch.einsum("...ij,...ic->...jc", P, dout),
    }


def attention_backward_no_delta(q, k, v, dout):
    s, P, _ = _forward(q, k, v)
    dS = P * (dout @ v.mT)  # the softmax's Jacobian taken as diag(P)
    return {"dq": s * dS @ k, "dk": s * dS.mT @ q, "dv": P.mT @ dout}


def attention_backward_no_scale(q, k, v, dout):
    _, P, out = _forward(q, k, v)
    dP = dout @ v.mT
    dS = P * (dP - (dout * out).sum(-1, keepdim=True))
    return {"dq": dS @ k, "dk": dS.mT @ q, "dv": P.mT @ dout}


def attention_backward_ds_without_p(q, k, v, dout):
    s, P, _ = _forward(q, k, v)
    dP = dout @ v.mT
    dS = dP - (dP * P).sum(-1, keepdim=True)
    return {"dq": s * dS @ k, "dk": s * dS.mT @ q, "dv": P.mT @ dout}


def attention_backward_dv_not_transposed(q, k, v, dout):
    s, P, out = _forward(q, k, v)
    dP = dout @ v.mT
    dS = P * (dP - (dout * out).sum(-1, keepdim=True))
    return {"dq": s * dS @ k, "dk": s * dS.mT @ q, "dv": P @ dout}


def attention_backward_dk_not_transposed(q, k, v, dout):
    s, P, out = _forward(q, k, v)
    dP = dout @ v.mT
    dS = P * (dP - (dout * out).sum(-1, keepdim=True))
    return {"dq": s * dS @ k, "dk": s * dS @ q, "dv": P.mT @ dout}


def online_softmax_right(blocks):
    m = torch.tensor(float("-inf"), dtype=torch.float64)
    s = torch.tensor(0.0, dtype=torch.float64)
    for chunk in blocks():  # pass 1: the statistics
        new_m = torch.maximum(m, chunk.max())
        s = s * torch.exp(m - new_m) + torch.exp(chunk - new_m).sum()
        m = new_m
    return torch.cat([torch.exp(chunk - m) / s for chunk in blocks()])  # pass 2: the output


def online_softmax_floats(blocks):
    m, total = -math.inf, 0.0
    for xb in blocks():
        m_new = max(m, float(xb.max()))
        total = total * math.exp(m - m_new) + float(torch.exp(xb - m_new).sum())
        m = m_new
    out = []
    for xb in blocks():
        out.append(torch.exp(xb - m) / total)
    return torch.cat(out)


def online_softmax_no_rescale(blocks):
    m, s = -math.inf, 0.0
    for b in blocks():
        m = max(m, float(b.max()))
        s += float(torch.exp(b - m).sum())
    return torch.cat([torch.exp(b - m) / s for b in blocks()])


def online_softmax_inverted(blocks):
    m = torch.tensor(-math.inf, dtype=torch.float64)
    l = torch.tensor(0.0, dtype=torch.float64)  # noqa: E741
    for b in blocks():
        m_new = torch.maximum(m, b.max())
        l = l * torch.exp(m_new - m) + torch.exp(b - m_new).sum()  # noqa: E741
        m = m_new
    return torch.cat([torch.exp(b - m) / l for b in blocks()])


def online_softmax_no_max(blocks):
    total = sum(torch.exp(b).sum() for b in blocks())
    return torch.cat([torch.exp(b) / total for b in blocks()])


def online_softmax_per_block(blocks):
    return torch.cat([torch.exp(b - b.max()) / torch.exp(b - b.max()).sum() for b in blocks()])


def tiled_attention_right(q, k, v, block):
    T_q, T_k = q.shape[-2], k.shape[-2]
    scale = 1 / math.sqrt(q.shape[-1])
    rows = []
    for i in range(0, T_q, block):  # one block of queries at a time
        qi = q[..., i : i + block, :]
        m = torch.full((*qi.shape[:-1], 1), -math.inf, dtype=q.dtype)
        l = torch.zeros_like(m)  # noqa: E741
        acc = torch.zeros((*qi.shape[:-1], v.shape[-1]), dtype=q.dtype)
        for j in range(0, T_k, block):  # one tile of keys and values
            s = qi @ k[..., j : j + block, :].transpose(-2, -1) * scale
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            p = torch.exp(s - m_new)
            alpha = torch.exp(m - m_new)
            l = alpha * l + p.sum(-1, keepdim=True)  # noqa: E741
            acc = alpha * acc + p @ v[..., j : j + block, :]
            m = m_new
        rows.append(acc / l)
    return torch.cat(rows, dim=-2)


def tiled_attention_normalised_in_the_loop(q, k, v, block):
    """FlashAttention-1's order: the output is kept normalised, l_old put back each time."""
    scale = q.shape[-1] ** -0.5
    o = torch.zeros((*q.shape[:-1], v.shape[-1]), dtype=q.dtype)
    m = torch.full((*q.shape[:-1], 1), -math.inf, dtype=q.dtype)
    l = torch.zeros_like(m)  # noqa: E741
    for kb, vb in zip(k.split(block, dim=-2), v.split(block, dim=-2)):
        s = (q @ kb.mT) * scale
        m_new = torch.maximum(m, s.max(-1, keepdim=True).values)
        p = (s - m_new).exp()
        l_new = l * (m - m_new).exp() + p.sum(-1, keepdim=True)
        o = (o * l * (m - m_new).exp() + p @ vb) / l_new
        m, l = m_new, l_new  # noqa: E741
    return o


def tiled_attention_acc_not_rescaled(q, k, v, block):
    scale = q.shape[-1] ** -0.5
    m = torch.full((*q.shape[:-1], 1), -math.inf, dtype=q.dtype)
    l = torch.zeros_like(m)  # noqa: E741
    acc = 0
    for j in range(0, k.shape[-2], block):
        s = q @ k[..., j : j + block, :].mT * scale
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        p = torch.exp(s - m_new)
        l = l * torch.exp(m - m_new) + p.sum(-1, keepdim=True)  # noqa: E741
        acc = acc + p @ v[..., j : j + block, :]  # forgot * exp(m - m_new)
        m = m_new
    return acc / l


def tiled_attention_divides_in_loop(q, k, v, block):
    scale = q.shape[-1] ** -0.5
    m = torch.full((*q.shape[:-1], 1), -math.inf, dtype=q.dtype)
    l = torch.zeros_like(m)  # noqa: E741
    o = torch.zeros((*q.shape[:-1], v.shape[-1]), dtype=q.dtype)
    for j in range(0, k.shape[-2], block):
        s = q @ k[..., j : j + block, :].mT * scale
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        p = torch.exp(s - m_new)
        alpha = torch.exp(m - m_new)
        l = l * alpha + p.sum(-1, keepdim=True)  # noqa: E741
        o = (o * alpha + p @ v[..., j : j + block, :]) / l
        m = m_new
    return o


def tiled_attention_full_blocks_only(q, k, v, block):
    scale = q.shape[-1] ** -0.5
    m = torch.full((*q.shape[:-1], 1), -math.inf, dtype=q.dtype)
    l = torch.zeros_like(m)  # noqa: E741
    acc = torch.zeros((*q.shape[:-1], v.shape[-1]), dtype=q.dtype)
    for n in range(k.shape[-2] // block):  # the last, shorter tile is never read
        kb, vb = k[..., n * block : (n + 1) * block, :], v[..., n * block : (n + 1) * block, :]
        s = q @ kb.mT * scale
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        p = torch.exp(s - m_new)
        l = l * torch.exp(m - m_new) + p.sum(-1, keepdim=True)  # noqa: E741
        acc = acc * torch.exp(m - m_new) + p @ vb
        m = m_new
    return acc / l


def tiled_attention_unscaled(q, k, v, block):
    m = torch.full((*q.shape[:-1], 1), -math.inf, dtype=q.dtype)
    l = torch.zeros_like(m)  # noqa: E741
    acc = torch.zeros((*q.shape[:-1], v.shape[-1]), dtype=q.dtype)
    for kb, vb in zip(k.split(block, -2), v.split(block, -2)):
        s = q @ kb.mT  # no / sqrt(d_k)
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        p = torch.exp(s - m_new)
        l = l * torch.exp(m - m_new) + p.sum(-1, keepdim=True)  # noqa: E741
        acc = acc * torch.exp(m - m_new) + p @ vb
        m = m_new
    return acc / l


ATTENTION = {
    "masked_attention": Answers(
        right=(masked_attention_right, masked_attention_nan_to_num),
        wrong=(
            Wrong(masked_attention_times_mask, "masked scores set to 0"),
            Wrong(masked_attention_unscaled, "no scaling"),
            Wrong(masked_attention_wrong_axis, "softmax over the queries"),
            Wrong(masked_attention_three_lines, "NaN for a query with no allowed key"),
            Wrong(masked_attention_minus_1e9, "a finite fill value"),
        ),
    ),
    "multi_head_attention": Answers(
        right=(multi_head_right, multi_head_with_sdpa),
        wrong=(
            Wrong(multi_head_no_transpose, "heads split without a transpose"),
            Wrong(multi_head_forgot_projection, "no output projection"),
        ),
    ),
    "softmax_jacobian": Answers(
        right=(softmax_jacobian_right, softmax_jacobian_entrywise),
        wrong=(
            Wrong(softmax_jacobian_only_diagonal, "the diagonal only"),
            Wrong(softmax_jacobian_sign_flipped, "the sign flipped"),
            Wrong(softmax_jacobian_outer_only, "no diag(p) term"),
        ),
    ),
    "attention_backward": Answers(
        right=(attention_backward_right, attention_backward_einsum),
        wrong=(
            Wrong(attention_backward_no_delta, "no delta term"),
            Wrong(attention_backward_no_scale, "no scale on dq and dk", ("times the expected",)),
            Wrong(attention_backward_ds_without_p, "dS without P"),
            Wrong(attention_backward_dv_not_transposed, "dV = P dO, not P^T dO"),
            Wrong(attention_backward_dk_not_transposed, "dK with dS, not dS^T"),
        ),
    ),
    "online_softmax": Answers(
        right=(online_softmax_right, online_softmax_floats),
        wrong=(
            Wrong(online_softmax_no_rescale, "the running sum not rescaled"),
            Wrong(online_softmax_inverted, "rescaled the wrong way"),
            Wrong(online_softmax_no_max, "no maximum subtracted", ("NaN or inf",)),
            Wrong(online_softmax_per_block, "each block normalised on its own"),
        ),
    ),
    "tiled_attention": Answers(
        right=(tiled_attention_right, tiled_attention_normalised_in_the_loop),
        wrong=(
            Wrong(tiled_attention_acc_not_rescaled, "accumulator not rescaled"),
            Wrong(tiled_attention_divides_in_loop, "divided by l inside the loop"),
            Wrong(tiled_attention_full_blocks_only, "last partial block dropped"),
            Wrong(tiled_attention_unscaled, "no scale"),
        ),
    ),
}


# ----------------------------------------------------------------------------- 03: GPT


def nucleus_right(probs, p):
    order = np.argsort(-probs)
    sorted_probs = probs[order]
    before = np.cumsum(sorted_probs) - sorted_probs
    out = np.zeros_like(probs)
    out[order[before < p]] = sorted_probs[before < p]
    return out / out.sum()


def nucleus_with_dlbook(probs, p):
    """Through dlbook.gpt.top_p_filter on log-probabilities."""
    logits = torch.from_numpy(np.log(probs))
    return torch.softmax(gpt.top_p_filter(logits, p), -1).numpy()


def nucleus_not_renormalised(probs, p):
    idx = np.argsort(probs)[::-1]
    total, out = 0.0, np.zeros_like(probs)
    for i in idx:
        if total >= p:
            break
        out[i] = probs[i]
        total += probs[i]
    return out  # forgot to divide by total


def nucleus_strict(probs, p):
    idx = np.argsort(probs)[::-1]
    out, total = np.zeros_like(probs), 0.0
    for i in idx:
        total += probs[i]
        if total > p and out.any():
            break
        out[i] = probs[i]
    return out / out.sum()


def causal_right(q, k, v):
    t, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v


def causal_with_dlbook(q, k, v):
    return A.scaled_dot_product_attention(q, k, v, is_causal=True, explicit=True)


def causal_after_softmax(q, k, v):
    w = torch.softmax(q @ k.mT / q.shape[-1] ** 0.5, dim=-1)
    return torch.tril(w) @ v


def causal_wrong_triangle(q, k, v):
    t = q.shape[-2]
    mask = torch.tril(torch.ones(t, t)) == 1
    s = (q @ k.mT / q.shape[-1] ** 0.5).masked_fill(mask.T == 0, -1e30)
    return torch.softmax(s, dim=-1) @ v


def param_count_right(V, T, L, d):
    attention = 3 * d * d + 3 * d + d * d + d
    mlp = 4 * d * d + 4 * d + 4 * d * d + d
    layer_norms = 2 * 2 * d
    return V * d + T * d + L * (attention + mlp + layer_norms) + 2 * d


def param_count_untied(V, T, L, d):
    return param_count_right(V, T, L, d) + d * V  # an lm_head of its own


GPT = {
    "nucleus": Answers(
        right=(nucleus_right, nucleus_with_dlbook),
        wrong=(
            Wrong(nucleus_not_renormalised, "not renormalised"),
            Wrong(nucleus_strict, "the crossing token dropped"),
        ),
    ),
    "causal_attention": Answers(
        right=(causal_right, causal_with_dlbook),
        wrong=(
            Wrong(causal_after_softmax, "masked after the softmax"),
            Wrong(causal_wrong_triangle, "the wrong triangle"),
        ),
    ),
    "param_count": Answers(
        right=(param_count_right, gpt.param_count),
        wrong=(Wrong(param_count_untied, "an untied output layer"),),
    ),
}


# ----------------------------------------------------------------------------- 04: GANs


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def saturating_right(logits):
    return float(-_softplus(logits).mean())


def nonsaturating_right(logits):
    return float(_softplus(-logits).mean())


def d_star_right(p_data, p_g):
    return p_data / (p_data + p_g)


def modes_right(samples, modes, std):
    m = gan.mode_metrics(samples, modes, std)
    return m["modes_captured"], m["high_quality_rate"]


def modes_every_nearest(samples, modes, std):
    nearest = np.argmin(((samples[:, None] - modes[None]) ** 2).sum(-1), axis=1)
    return len(set(nearest.tolist())), modes_right(samples, modes, std)[1]


GANS = {
    "saturating_loss": Answers(
        right=(saturating_right,),
        wrong=(
            Wrong(
                lambda logits: float(np.mean(_softplus(-logits))),
                "the non-saturating loss instead",
            ),
            Wrong(lambda logits: float(np.sum(-_softplus(logits))), "a sum instead of a mean"),
            Wrong(lambda logits: float(np.mean(_softplus(logits))), "the wrong sign"),
            Wrong(
                lambda logits: float(np.mean(np.log(1 - _sigmoid(logits)))),
                "log of the sigmoid computed directly",
            ),
        ),
    ),
    "nonsaturating_loss": Answers(
        right=(nonsaturating_right,),
        wrong=(
            Wrong(
                lambda logits: float(-np.mean(np.log(_sigmoid(logits)))),
                "log of the sigmoid computed directly",
            ),
            Wrong(lambda logits: float(np.mean(-_softplus(logits))), "the saturating loss instead"),
            Wrong(lambda logits: float(np.mean(-_softplus(-logits))), "the wrong sign"),
        ),
    ),
    "d_star": Answers(
        right=(d_star_right, gan.optimal_discriminator),
        wrong=(
            Wrong(lambda p, q: q / (q + p), "p_g on top"),
            Wrong(lambda p, q: np.divide(p, q), "the density ratio"),
            Wrong(lambda p, q: _sigmoid(p - q), "sigmoid of the difference"),
        ),
    ),
    "mode_metrics": Answers(
        right=(modes_right,),
        wrong=(
            Wrong(lambda s, m, std: modes_right(s, m, std / 3), "one standard deviation"),
            Wrong(modes_every_nearest, "every nearest mode counted"),
            Wrong(
                lambda s, m, std: (modes_right(s, m, std)[0], modes_right(s, m, std)[1] * len(s)),
                "a count instead of a rate",
            ),
        ),
    ),
}


# ----------------------------------------------------------------------------- 05: RL


def bellman_right(P, R, gamma, V):
    return rl.bellman_backup(rl.MDP(P, R, gamma), V)


def bellman_returned_v(P, R, gamma, V):
    return np.max(R + gamma * np.einsum("sat,t->sa", P, V), axis=1)


def returns_right(rewards, dones, gamma):
    G = rl.discounted_returns(torch.tensor(rewards)[:, None], torch.tensor(dones)[:, None], gamma)
    return G[:, 0].numpy()


def returns_no_reset(rewards, dones, gamma):
    out, acc = [], 0.0
    for r in rewards[::-1]:
        acc = r + gamma * acc
        out.append(acc)
    return np.array(out[::-1])


def gae_right(rewards, values, next_values, dones, gamma, lam):
    # next_values is already 0 after a termination: nothing for rl.gae to zero (terminated False)
    never = np.zeros_like(dones)
    col = [torch.tensor(x)[:, None] for x in (rewards, values, next_values, never, dones)]
    return rl.gae(*col, gamma, lam)[0][:, 0].numpy()


def gae_no_reset(rewards, values, next_values, dones, gamma, lam):
    advantages, acc = np.zeros_like(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * next_values[t] - values[t] + gamma * lam * acc
        advantages[t] = acc
    return advantages


def ppo_right(logp_new, logp_old, adv, eps):
    loss = rl.ppo_clip_loss(*(torch.tensor(x) for x in (logp_new, logp_old, adv)), eps)
    return -loss.item()


def ppo_with_max(logp_new, logp_old, adv, eps):
    ratio = np.exp(logp_new - logp_old)
    return float(
        np.mean([max(r * a, np.clip(r, 1 - eps, 1 + eps) * a) for r, a in zip(ratio, adv)])
    )


RL = {
    "bellman_backup": Answers(
        right=(bellman_right,),
        wrong=(Wrong(bellman_returned_v, "took the max over actions (returned V, not Q)"),),
    ),
    "discounted_returns": Answers(
        right=(returns_right,),
        wrong=(Wrong(returns_no_reset, "did not stop at the end of an episode"),),
    ),
    "gae": Answers(
        right=(gae_right,),
        wrong=(Wrong(gae_no_reset, "did not stop at the end of an episode"),),
    ),
    "ppo_clip_objective": Answers(
        right=(ppo_right,), wrong=(Wrong(ppo_with_max, "max instead of min"),)
    ),
}


# ----------------------------------------------------------------------------- 06: assistant


def bt_right(r_chosen, r_rejected):
    return -torch.nn.functional.logsigmoid(r_chosen - r_rejected).mean()


def bt_softplus(r_chosen, r_rejected):
    return torch.nn.functional.softplus(r_rejected - r_chosen).mean()


def bt_stable_by_hand(r_chosen, r_rejected):
    d = r_chosen - r_rejected  # -log sigmoid(d) = max(-d, 0) + log(1 + exp(-|d|))
    return (torch.clamp(-d, min=0) + torch.log1p(torch.exp(-d.abs()))).mean()


def bt_as_written(r_chosen, r_rejected):
    return -torch.log(torch.sigmoid(r_chosen - r_rejected)).mean()


def bt_as_classifier(r_chosen, r_rejected):
    scores = torch.cat([r_chosen, r_rejected])
    labels = torch.cat([torch.ones_like(r_chosen), torch.zeros_like(r_rejected)])
    return torch.nn.functional.binary_cross_entropy_with_logits(scores, labels)


def dpo_right(logp_c, logp_r, ref_logp_c, ref_logp_r, beta):
    margin = beta * (logp_c - ref_logp_c) - beta * (logp_r - ref_logp_r)
    return torch.nn.functional.softplus(-margin).mean()


def dpo_margins_first(logp_c, logp_r, ref_logp_c, ref_logp_r, beta):
    policy_margin, ref_margin = logp_c - logp_r, ref_logp_c - ref_logp_r
    return -torch.nn.functional.logsigmoid(beta * (policy_margin - ref_margin)).mean()


def dpo_no_reference(logp_c, logp_r, ref_logp_c, ref_logp_r, beta):
    return -torch.nn.functional.logsigmoid(beta * (logp_c - logp_r)).mean()


def dpo_ratio_upside_down(logp_c, logp_r, ref_logp_c, ref_logp_r, beta):
    log_ratio_c, log_ratio_r = ref_logp_c - logp_c, ref_logp_r - logp_r
    return -torch.nn.functional.logsigmoid(beta * (log_ratio_c - log_ratio_r)).mean()


def dpo_swapped(logp_c, logp_r, ref_logp_c, ref_logp_r, beta):
    return rlhf.dpo_loss(logp_r, logp_c, ref_logp_r, ref_logp_c, beta)


def dpo_over_beta(logp_c, logp_r, ref_logp_c, ref_logp_r, beta):
    margin = (logp_c - ref_logp_c) - (logp_r - ref_logp_r)
    return torch.nn.functional.softplus(-margin / beta).mean()


def dpo_log_quotient(logp_c, logp_r, ref_logp_c, ref_logp_r, beta):
    margin = beta * (logp_c / ref_logp_c) - beta * (logp_r / ref_logp_r)
    return -torch.nn.functional.logsigmoid(margin).mean()


def dpo_reference_added(logp_c, logp_r, ref_logp_c, ref_logp_r, beta):
    return -torch.nn.functional.logsigmoid(
        beta * ((logp_c + ref_logp_c) - (logp_r + ref_logp_r))
    ).mean()


def kl_rewards_right(logp, ref_logp, score, mask, beta):
    rewards = -beta * (logp - ref_logp) * mask
    last = logp.shape[1] - 1 - mask.flip(-1).argmax(-1)
    rewards[torch.arange(len(score)), last] += score
    return rewards


def kl_rewards_row_by_row(logp, ref_logp, score, mask, beta):
    rewards = torch.zeros_like(logp)
    for b in range(logp.shape[0]):
        positions = mask[b].nonzero().flatten()
        rewards[b, positions] = -beta * (logp[b, positions] - ref_logp[b, positions])
        rewards[b, positions[-1]] += score[b]
    return rewards


def kl_rewards_from_lengths(logp, ref_logp, score, mask, beta):
    # the response is one block of 1s: it ends at its start plus its length, minus one
    last = mask.argmax(-1) + mask.sum(-1).long() - 1
    end = torch.nn.functional.one_hot(last, logp.shape[1]).to(logp.dtype)
    return mask * -beta * (logp - ref_logp) + end * score[:, None]


def kl_rewards_score_everywhere(logp, ref_logp, score, mask, beta):
    return (score[:, None] - beta * (logp - ref_logp)) * mask


def kl_rewards_score_at_end(logp, ref_logp, score, mask, beta):
    rewards = -beta * (logp - ref_logp) * mask
    rewards[:, -1] += score
    return rewards


def kl_rewards_first_one(logp, ref_logp, score, mask, beta):
    rewards = -beta * (logp - ref_logp) * mask
    rewards[torch.arange(len(score)), mask.argmax(dim=1)] += score
    return rewards


def kl_rewards_plus(logp, ref_logp, score, mask, beta):
    return kl_rewards_right(ref_logp, logp, score, mask, beta)  # log-ratio upside down


def kl_rewards_entropy(logp, ref_logp, score, mask, beta):
    return kl_rewards_right(logp, torch.zeros_like(ref_logp), score, mask, beta)


def kl_rewards_total_at_end(logp, ref_logp, score, mask, beta):
    kl_total = ((logp - ref_logp) * mask).sum(dim=1)
    rewards = torch.zeros_like(logp)
    last = logp.shape[1] - 1 - mask.flip(-1).argmax(-1)
    rewards[torch.arange(len(score)), last] = score - beta * kl_total
    return rewards


def kl_rewards_batch_kl(logp, ref_logp, score, mask, beta):
    kl_per_position = ((logp - ref_logp) * mask).sum(dim=0)  # (T,)
    rewards = -beta * kl_per_position * mask
    last = logp.shape[1] - 1 - mask.flip(-1).argmax(-1)
    rewards[torch.arange(len(score)), last] += score
    return rewards


def kl_rewards_unmasked(logp, ref_logp, score, mask, beta):
    rewards = -beta * (logp - ref_logp)
    last = logp.shape[1] - 1 - mask.flip(-1).argmax(-1)
    rewards[torch.arange(len(score)), last] += score
    return rewards


def best_of_n_right(ref_probs, reward, n):
    order = torch.argsort(reward)
    cdf = torch.cumsum(ref_probs[order], 0)
    out = torch.zeros_like(ref_probs)
    out[order] = cdf**n - (cdf - ref_probs[order]) ** n
    return out


def best_of_n_in_a_loop(ref_probs, reward, n):
    p, r = ref_probs.tolist(), reward.tolist()
    out = []
    for i in range(len(p)):
        lower = sum(p[j] for j in range(len(p)) if r[j] < r[i])
        out.append((lower + p[i]) ** n - lower**n)
    return torch.tensor(out, dtype=torch.float64)


def best_of_n_with_dlbook(ref_probs, reward, n):
    return rlhf.best_of_n(ref_probs.log(), reward, n).exp()


def _best_of_n_sorted(ref_probs, reward, n, order, share):
    out = torch.zeros_like(ref_probs)
    out[order] = share(torch.cumsum(ref_probs[order], 0), ref_probs[order], n)
    return out


def best_of_n_cdf_only(ref_probs, reward, n):
    return _best_of_n_sorted(ref_probs, reward, n, torch.argsort(reward), lambda cdf, p, n: cdf**n)


def best_of_n_powers(ref_probs, reward, n):
    return ref_probs**n / torch.sum(ref_probs**n)


def best_of_n_by_probability(ref_probs, reward, n):
    return _best_of_n_sorted(
        ref_probs, reward, n, torch.argsort(ref_probs), lambda cdf, p, n: cdf**n - (cdf - p) ** n
    )


def best_of_n_worst(ref_probs, reward, n):
    return _best_of_n_sorted(
        ref_probs, reward, n, torch.argsort(-reward), lambda cdf, p, n: cdf**n - (cdf - p) ** n
    )


def best_of_n_shifted(ref_probs, reward, n):
    order = torch.argsort(reward)
    below = torch.cumsum(ref_probs[order], 0) - ref_probs[order]  # F(y^-), used as F(y)
    below_prev = torch.cat([torch.zeros(1, dtype=below.dtype), below[:-1]])
    out = torch.zeros_like(ref_probs)
    out[order] = below**n - below_prev**n
    return out


def best_of_n_one_copy(ref_probs, reward, n):
    return _best_of_n_sorted(
        ref_probs, reward, n, torch.argsort(reward), lambda cdf, p, n: n * p * (cdf - p) ** (n - 1)
    )


ASSISTANT = {
    "bradley_terry_loss": Answers(
        right=(bt_right, bt_softplus, bt_stable_by_hand, rlhf.bradley_terry_loss),
        wrong=(
            Wrong(bt_as_written, "log of the sigmoid computed directly", ("NaN or inf",)),
            Wrong(
                lambda r_chosen, r_rejected: bt_softplus(r_rejected, r_chosen),
                "the sign flipped (r_rejected - r_chosen)",
            ),
            Wrong(
                lambda r_chosen, r_rejected: (
                    -torch.nn.functional.logsigmoid(r_chosen - r_rejected).sum()
                ),
                "a sum instead of a mean",
            ),
            Wrong(
                lambda r_chosen, r_rejected: -torch.sigmoid(r_chosen - r_rejected).mean(),
                "the sigmoid without the log",
            ),
            Wrong(bt_as_classifier, "each response classified on its own"),
        ),
    ),
    "dpo_loss": Answers(
        right=(dpo_right, dpo_margins_first, rlhf.dpo_loss),
        wrong=(
            Wrong(dpo_no_reference, "the reference model forgotten"),
            Wrong(
                dpo_ratio_upside_down,
                "the margin's sign flipped (pi_ref over pi, or chosen and rejected swapped)",
            ),
            Wrong(
                dpo_swapped,
                "the margin's sign flipped (pi_ref over pi, or chosen and rejected swapped)",
            ),
            Wrong(dpo_reference_added, "the reference's margin added, not subtracted"),
            Wrong(
                lambda logp_c, logp_r, ref_logp_c, ref_logp_r, beta: dpo_right(
                    logp_c, logp_r, ref_logp_c, ref_logp_r, 1.0
                ),
                "beta missing",
            ),
            Wrong(dpo_over_beta, "divided by beta instead of multiplying"),
            Wrong(dpo_log_quotient, "a ratio of log-probabilities"),
            Wrong(
                lambda logp_c, logp_r, ref_logp_c, ref_logp_r, beta: bt_as_written(
                    beta * (logp_c - ref_logp_c), beta * (logp_r - ref_logp_r)
                ),
                "log of the sigmoid computed directly",
            ),
        ),
    ),
    "kl_shaped_rewards": Answers(
        right=(
            kl_rewards_right,
            kl_rewards_row_by_row,
            kl_rewards_from_lengths,
            rlhf.kl_shaped_rewards,
        ),
        wrong=(
            Wrong(kl_rewards_score_everywhere, "the score added at every token"),
            Wrong(kl_rewards_score_at_end, "the score at position T - 1 whatever the mask"),
            Wrong(kl_rewards_first_one, "the score at the first response token"),
            Wrong(kl_rewards_plus, "the KL penalty with the wrong sign"),
            Wrong(kl_rewards_entropy, "the reference forgotten (-beta log pi)"),
            Wrong(kl_rewards_total_at_end, "the penalty summed over time and put at one token"),
            Wrong(kl_rewards_batch_kl, "the penalty summed over the batch"),
            Wrong(kl_rewards_unmasked, "the penalty not zeroed outside the mask"),
        ),
    ),
    "best_of_n_probs": Answers(
        right=(best_of_n_right, best_of_n_in_a_loop, best_of_n_with_dlbook),
        wrong=(
            Wrong(best_of_n_cdf_only, "F(y)^n, not its increment"),
            Wrong(best_of_n_powers, "p^n renormalised"),
            Wrong(best_of_n_by_probability, "sorted by probability, not by reward"),
            Wrong(best_of_n_worst, "sorted from the best reward down (worst-of-n)"),
            Wrong(
                best_of_n_shifted, "off by one in the cumulative sum (F(y^-) where F(y) belongs)"
            ),
            Wrong(best_of_n_one_copy, "exactly one draw of y (n p F(y^-)^(n-1))"),
        ),
    ),
}


# ----------------------------------------------------------------------------- every chapter

CHAPTERS: dict[str, tuple[ModuleType, dict[str, Answers]]] = {
    "00-preface": (demo, DEMO),
    "01-backprop": (backprop, BACKPROP),
    "02-attention": (attention, ATTENTION),
    "03-gpt": (gpt_ex, GPT),
    "04-gans": (gan_ex, GANS),
    "05-rl": (rl_ex, RL),
    "06-assistant": (rlhf_ex, ASSISTANT),
}
