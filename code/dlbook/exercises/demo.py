"""Checkers for the preface's demonstration exercise: the mean squared error and its gradient.

The references are PyTorch's own ``mse_loss`` and ``torch.autograd``, not code of ours.

Derived in: Preface, *A first exercise*.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from dlbook.exercises.checker import Case, CheckReport, Exercise, Mistake

__all__ = [
    "EXERCISES",
    "MSE_GRAD_MISTAKES",
    "MSE_MISTAKES",
    "check_mse",
    "check_mse_grad",
    "mse_cases",
]


def mse_cases(seed: int = 0) -> list[Case]:
    """Five cases: vectors and matrices of predictions ``y_pred`` and targets ``y`` (same shape)."""
    rng = np.random.default_rng(seed)
    shapes = [(4,), (8,), (5, 3), (16, 2), (1,)]
    names = ["4 numbers", "8 numbers", "5 x 3 matrix", "16 x 2 matrix", "a single number"]
    return [
        Case(args=(rng.normal(size=s), rng.normal(size=s)), name=n) for s, n in zip(shapes, names)
    ]


def _torch_mse(y_pred: np.ndarray, y: np.ndarray) -> float:
    return F.mse_loss(torch.from_numpy(y_pred), torch.from_numpy(y)).item()


def _torch_mse_grad(y_pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = torch.from_numpy(y_pred).requires_grad_(True)
    F.mse_loss(p, torch.from_numpy(y)).backward()
    return p.grad.numpy()


MSE_MISTAKES = [
    Mistake(
        "a sum instead of a mean",
        lambda p, y: float(((p - y) ** 2).sum()),
        "the loss is an average: divide the sum of squared errors by the number of entries.",
    ),
    Mistake(
        "no square",
        lambda p, y: float(np.abs(p - y).mean()),
        "that is the mean absolute error; square each error before averaging.",
    ),
    Mistake(
        "a square root",
        lambda p, y: float(np.sqrt(((p - y) ** 2).mean())),
        "that is the root mean squared error; the MSE has no square root.",
    ),
    Mistake(
        "squared mean error",
        lambda p, y: float((p - y).mean() ** 2),
        "square each error first, then average; averaging first lets errors cancel.",
    ),
]

MSE_GRAD_MISTAKES = [
    Mistake(
        "no factor 2",
        lambda p, y: (p - y) / p.size,
        "d/dx of x^2 is 2x: the gradient of each squared error carries a factor 2.",
    ),
    Mistake(
        "no division by the number of entries",
        lambda p, y: 2 * (p - y),
        "the loss is an average over all entries, so each entry's gradient is divided by "
        "their number.",
    ),
    Mistake(
        "the wrong sign",
        lambda p, y: 2 * (y - p) / p.size,
        "differentiate with respect to y_pred, not y: d/dp (p - y)^2 = +2 (p - y).",
    ),
    Mistake(
        "divided by the number of rows only",
        lambda p, y: 2 * (p - y) / p.shape[0],
        "the mean runs over every entry, rows times columns, not over the rows alone.",
    ),
]


MSE = Exercise("mse", mse_cases, _torch_mse, MSE_MISTAKES)
MSE_GRAD = Exercise("mse_grad", lambda: mse_cases(1), _torch_mse_grad, MSE_GRAD_MISTAKES)
EXERCISES = {e.name: e for e in (MSE, MSE_GRAD)}


def check_mse(fn: Callable[[np.ndarray, np.ndarray], float]) -> CheckReport:
    """Check ``fn(y_pred, y) -> float``, the mean of the squared errors over all entries."""
    return MSE.check(fn)


def check_mse_grad(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> CheckReport:
    """Check ``fn(y_pred, y) -> dL/dy_pred``, same shape as ``y_pred``, against torch.autograd."""
    return MSE_GRAD.check(fn)
