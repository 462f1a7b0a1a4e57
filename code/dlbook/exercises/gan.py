"""Checkers for Chapter 4's exercises: generator losses, the optimal discriminator, mode metrics.

The references are code we did not write: PyTorch's ``binary_cross_entropy_with_logits`` for the
losses, SciPy's bounded scalar optimiser (maximising the pointwise objective numerically) for the
optimal discriminator, and SciPy's k-d tree for nearest modes. ``EXERCISES`` maps each
exercise's name to its :class:`~dlbook.exercises.checker.Exercise`.

Derived in: Chapter 4, *GANs*.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from scipy.spatial import cKDTree

from dlbook.exercises.checker import Case, CheckReport, Exercise, Mistake

__all__ = [
    "D_STAR_MISTAKES",
    "EXERCISES",
    "MODE_MISTAKES",
    "NONSATURATING_MISTAKES",
    "SATURATING_MISTAKES",
    "check_d_star",
    "check_mode_metrics",
    "check_nonsaturating_loss",
    "check_saturating_loss",
    "d_star_cases",
    "logit_cases",
    "mode_cases",
]

# ----------------------------------------------------------------------------- generator losses


def logit_cases(seed: int = 0) -> list[Case]:
    """Discriminator logits on generated samples, ``(B,)`` float64 arrays, incl. extreme ones."""
    rng = np.random.default_rng(seed)
    return [
        Case(args=(rng.normal(size=8),), name="8 moderate logits"),
        Case(args=(rng.normal(scale=5.0, size=16),), name="16 spread-out logits"),
        Case(args=(np.array([-3.0, -8.0, -12.0]),), name="a confident discriminator"),
        Case(args=(np.array([-800.0, 0.0, 800.0]),), name="logits of +-800 (no overflow!)"),
        Case(args=(np.array([0.7]),), name="a single logit"),
    ]


def _bce(logits: np.ndarray, target: float) -> float:
    lt = torch.from_numpy(np.asarray(logits, dtype=np.float64))
    return F.binary_cross_entropy_with_logits(lt, torch.full_like(lt, target)).item()


def _saturating_ref(logits: np.ndarray) -> float:
    # mean log(1 - D) = -BCE(l, label 0)
    return -_bce(logits, 0.0)


def _nonsaturating_ref(logits: np.ndarray) -> float:
    # -mean log D = BCE(l, label 1)
    return _bce(logits, 1.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _naive(f: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], float]:
    def wrong(logits: np.ndarray) -> float:
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            return float(np.mean(f(logits)))

    return wrong


SATURATING_MISTAKES = [
    Mistake(
        "the non-saturating loss instead",
        lambda logits: _nonsaturating_ref(logits),
        "that is -mean log D(G(z)), the non-saturating loss; the saturating one is the "
        "generator's part of V(D, G): mean log(1 - D(G(z))).",
    ),
    Mistake(
        "the wrong sign",
        lambda logits: -_saturating_ref(logits),
        "the generator *minimises* V, so its loss is + mean log(1 - D(G(z))), a negative number.",
    ),
    Mistake(
        "logits used as probabilities",
        _naive(lambda logits: np.log(1 - logits)),
        "the inputs are logits l, not probabilities: D(G(z)) = sigmoid(l).",
    ),
    Mistake(
        "log of the sigmoid computed directly",
        _naive(lambda logits: np.log(1 - _sigmoid(logits))),
        "log(1 - sigmoid(l)) rounds to log(0) = -inf for large l; write it as -softplus(l) = "
        "-(max(l, 0) + log1p(exp(-|l|))).",
    ),
    Mistake(
        "a sum instead of a mean",
        lambda logits: _saturating_ref(logits) * len(logits),
        "the loss is an expectation over z: average over the batch, do not sum.",
    ),
]

NONSATURATING_MISTAKES = [
    Mistake(
        "the saturating loss instead",
        lambda logits: _saturating_ref(logits),
        "that is mean log(1 - D(G(z))), the saturating loss; the non-saturating one is "
        "-mean log D(G(z)).",
    ),
    Mistake(
        "the wrong sign",
        lambda logits: -_nonsaturating_ref(logits),
        "the generator wants D(G(z)) large, so it minimises -log D(G(z)), a positive number.",
    ),
    Mistake(
        "logits used as probabilities",
        _naive(lambda logits: -np.log(logits)),
        "the inputs are logits l, not probabilities: D(G(z)) = sigmoid(l).",
    ),
    Mistake(
        "log of the sigmoid computed directly",
        _naive(lambda logits: -np.log(_sigmoid(logits))),
        "-log(sigmoid(l)) overflows for very negative l; write it as softplus(-l) = "
        "max(-l, 0) + log1p(exp(-|l|)).",
    ),
    Mistake(
        "a sum instead of a mean",
        lambda logits: _nonsaturating_ref(logits) * len(logits),
        "the loss is an expectation over z: average over the batch, do not sum.",
    ),
]


SATURATING_LOSS = Exercise(
    "saturating_loss",
    lambda: logit_cases(0),
    _saturating_ref,
    SATURATING_MISTAKES,
    title="saturating generator loss",
)
NONSATURATING_LOSS = Exercise(
    "nonsaturating_loss",
    lambda: logit_cases(1),
    _nonsaturating_ref,
    NONSATURATING_MISTAKES,
    title="non-saturating generator loss",
)


def check_saturating_loss(fn: Callable[[np.ndarray], float]) -> CheckReport:
    """Check ``fn(logits) -> float``: ``mean log(1 - sigmoid(logits))``, stable for any logits."""
    return SATURATING_LOSS.check(fn)


def check_nonsaturating_loss(fn: Callable[[np.ndarray], float]) -> CheckReport:
    """Check ``fn(logits) -> float``: ``-mean log sigmoid(logits)``, stable for any logits."""
    return NONSATURATING_LOSS.check(fn)


# ----------------------------------------------------------------------------- optimal D


def d_star_cases(seed: int = 0) -> list[Case]:
    """Pairs of density values ``(p_data, p_g)``, positive arrays of the same shape."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-3, 3, 7)
    gauss = lambda m, s: np.exp(-((x - m) ** 2) / (2 * s**2)) / (s * np.sqrt(2 * np.pi))
    return [
        Case(args=(gauss(0, 1), gauss(1, 1)), name="two Gaussians on a grid"),
        Case(args=(rng.uniform(0.01, 2, 10), rng.uniform(0.01, 2, 10)), name="10 random pairs"),
        Case(args=(np.array([0.3, 1.0, 2.0]), np.array([0.3, 3.0, 0.5])), name="3 pairs"),
        Case(args=(rng.uniform(0.01, 1, (3, 4)), rng.uniform(0.01, 1, (3, 4))), name="3 x 4"),
    ]


def _d_star_ref(p_data: np.ndarray, p_g: np.ndarray) -> np.ndarray:
    """Maximise a log y + b log(1 - y) over y in (0, 1) numerically, point by point."""
    out = np.empty_like(p_data, dtype=np.float64)
    for idx, (a, b) in enumerate(zip(p_data.ravel(), p_g.ravel())):
        res = minimize_scalar(
            lambda y, a=a, b=b: -(a * np.log(y) + b * np.log1p(-y)),
            bounds=(1e-12, 1 - 1e-12),
            method="bounded",
            options={"xatol": 1e-12},
        )
        out.ravel()[idx] = res.x
    return out


D_STAR_MISTAKES = [
    Mistake(
        "p_g on top",
        lambda p, q: q / (p + q),
        "D(x) is the probability that x is *real*: the data density goes in the numerator.",
    ),
    Mistake(
        "the density ratio",
        lambda p, q: p / q,
        "p_data / p_g is the odds D / (1 - D), not D itself: it can exceed 1.",
    ),
    Mistake(
        "sigmoid of the difference",
        lambda p, q: 1 / (1 + np.exp(-(p - q))),
        "the logit of D* is the log-ratio log p_data - log p_g, not the difference p_data - p_g.",
    ),
    Mistake(
        "divided by the sum of squares",
        lambda p, q: p**2 / (p**2 + q**2),
        "maximise a log y + b log(1 - y): the derivative a / y - b / (1 - y) vanishes at "
        "y = a / (a + b), with no squares.",
    ),
]


D_STAR = Exercise(
    "d_star",
    d_star_cases,
    _d_star_ref,
    D_STAR_MISTAKES,
    rtol=1e-5,
    atol=1e-6,
    title="optimal discriminator",
)


def check_d_star(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> CheckReport:
    """Check ``fn(p_data, p_g) -> D*`` (same shape) against a numerical maximisation."""
    return D_STAR.check(fn)


# ----------------------------------------------------------------------------- mode metrics


def mode_cases(seed: int = 0) -> list[Case]:
    """``(samples (n, 2), modes (K, 2), std)``: hand-made, ring-like and collapsed samples."""
    rng = np.random.default_rng(seed)
    square = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    hand = np.array([[0.0, 0.02], [0.99, 0.0], [0.5, 0.5], [1.0, 1.05], [0.0, 1.04]])
    angles = 2 * np.pi * np.arange(8) / 8
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    spread = ring[rng.integers(0, 8, 300)] + rng.normal(scale=0.02, size=(300, 2))
    collapsed = ring[rng.integers(0, 3, 200)] + rng.normal(scale=0.005, size=(200, 2))
    return [
        Case(args=(hand, square, 0.01), name="5 hand-made points, 4 modes"),
        Case(args=(spread, ring, 0.01), name="a ring with samples twice too wide"),
        Case(args=(collapsed, ring, 0.01), name="a ring collapsed onto 3 modes"),
        Case(args=(rng.uniform(-5, 5, (400, 2)), square * 4, 0.5), name="uniform noise"),
    ]


def _modes_ref(samples: np.ndarray, modes: np.ndarray, std: float) -> tuple[int, float]:
    dist, nearest = cKDTree(modes).query(samples)
    good = dist <= 3 * std
    return len(np.unique(nearest[good])), float(good.mean())


def _modes_wrong(threshold: float, hq_only: bool = True, frac: bool = True, sq: bool = False):
    def wrong(samples: np.ndarray, modes: np.ndarray, std: float) -> tuple[int, float]:
        d = np.linalg.norm(samples[:, None, :] - modes[None, :, :], axis=2)
        dist, nearest = d.min(axis=1), d.argmin(axis=1)
        good = (dist**2 if sq else dist) <= threshold * std
        captured = len(np.unique(nearest[good] if hq_only else nearest))
        return int(captured), float(good.mean() if frac else good.sum())

    return wrong


MODE_MISTAKES = [
    Mistake(
        "one standard deviation",
        _modes_wrong(1.0),
        "a sample is high quality within *3* standard deviations of its nearest mode.",
    ),
    Mistake(
        "every nearest mode counted",
        _modes_wrong(3.0, hq_only=False),
        "a mode is captured only when a *high-quality* sample is nearest to it; a sample far "
        "from every mode captures nothing.",
    ),
    Mistake(
        "a count instead of a rate",
        _modes_wrong(3.0, frac=False),
        "the high-quality rate is the *fraction* of samples that are high quality.",
    ),
    Mistake(
        "squared distance",
        _modes_wrong(3.0, sq=True),
        "compare the distance itself (not its square) with 3 std.",
    ),
]


MODE_METRICS = Exercise(
    "mode_metrics",
    mode_cases,
    _modes_ref,
    MODE_MISTAKES,
    title="modes captured and high-quality rate",
)


def check_mode_metrics(
    fn: Callable[[np.ndarray, np.ndarray, float], tuple[int, float]],
) -> CheckReport:
    """Check ``fn(samples, modes, std) -> (modes_captured, high_quality_rate)``."""
    return MODE_METRICS.check(fn)


EXERCISES = {e.name: e for e in (SATURATING_LOSS, NONSATURATING_LOSS, D_STAR, MODE_METRICS)}
