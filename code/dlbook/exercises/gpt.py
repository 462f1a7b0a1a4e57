"""Checkers for Chapter 3's exercises: nucleus sampling, causal attention, the parameter count.

The references are not the book's own code: the nucleus is found by enumerating every subset of a
small vocabulary, causal attention is PyTorch's ``scaled_dot_product_attention(is_causal=True)``,
and the parameter count is ``sum(p.numel())`` over a model built from ``torch.nn`` layers.
``EXERCISES`` maps each exercise's name to its :class:`~dlbook.exercises.checker.Exercise`.

Derived in: Chapter 3, *Sampling*, *The GPT* and *What a GPT costs*.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from dlbook.exercises.checker import Case, CheckReport, Exercise, Mistake

__all__ = [
    "CAUSAL_MISTAKES",
    "EXERCISES",
    "NUCLEUS_MISTAKES",
    "PARAM_MISTAKES",
    "check_causal_attention",
    "check_nucleus",
    "check_param_count",
    "nucleus_cases",
]


# ----------------------------------------------------------------------------- nucleus sampling


def nucleus_cases(seed: int = 0) -> list[Case]:
    """Distributions over 5 to 8 tokens (in no particular order) and nucleus sizes ``p``."""
    rng = np.random.default_rng(seed)
    cases = []
    for n, p, name in [
        (6, 0.5, "6 tokens, p = 0.5"),
        (8, 0.9, "8 tokens, p = 0.9"),
        (5, 0.75, "5 tokens, p = 0.75"),
        (7, 0.05, "p smaller than the largest probability"),
        (6, 1.0, "p = 1 keeps every token"),
    ]:
        probs = rng.dirichlet(np.full(n, 0.7))
        cases.append(Case(args=(probs, p), name=name))
    peaked = np.array([0.02, 0.6, 0.03, 0.3, 0.05])
    cases.append(Case(args=(peaked, 0.85), name="the nucleus is 2 tokens, not in sorted order"))
    return cases


def _nucleus_by_enumeration(probs: np.ndarray, p: float) -> np.ndarray:
    """The smallest set of tokens whose total probability reaches p (the most probable such
    set), found by trying every subset, renormalised."""
    n = len(probs)
    for size in range(1, n + 1):
        best = max(itertools.combinations(range(n), size), key=lambda s: probs[list(s)].sum())
        if probs[list(best)].sum() >= p - 1e-12:
            out = np.zeros_like(probs)
            out[list(best)] = probs[list(best)]
            return out / out.sum()
    return probs / probs.sum()


def _keep(probs: np.ndarray, keep_sorted: np.ndarray, order: np.ndarray) -> np.ndarray:
    out = np.zeros_like(probs)
    out[order[keep_sorted]] = probs[order[keep_sorted]]
    return out


def _strict(probs: np.ndarray, p: float) -> np.ndarray:
    order = np.argsort(-probs)
    keep = np.cumsum(probs[order]) < p  # drops the token that crosses p
    keep[0] = True
    out = _keep(probs, keep, order)
    return out / out.sum()


def _unnormalised(probs: np.ndarray, p: float) -> np.ndarray:
    order = np.argsort(-probs)
    keep = np.cumsum(probs[order]) - probs[order] < p
    return _keep(probs, keep, order)


def _ascending(probs: np.ndarray, p: float) -> np.ndarray:
    order = np.argsort(probs)  # least likely first
    keep = np.cumsum(probs[order]) - probs[order] < p
    out = _keep(probs, keep, order)
    return out / out.sum()


def _unsorted(probs: np.ndarray, p: float) -> np.ndarray:
    keep = np.cumsum(probs) - probs < p  # cumulative sum in the tokens' own order
    out = np.where(keep, probs, 0.0)
    return out / out.sum()


def _sorted_output(probs: np.ndarray, p: float) -> np.ndarray:
    order = np.argsort(-probs)
    sorted_probs = probs[order]
    keep = np.cumsum(sorted_probs) - sorted_probs < p
    out = np.where(keep, sorted_probs, 0.0)
    return out / out.sum()  # still in sorted order: not put back at the tokens' positions


NUCLEUS_MISTAKES = [
    Mistake(
        "the crossing token dropped",
        _strict,
        "keep tokens while the probability ranked *above* them is below p; the token whose "
        "probability carries the total past p belongs to the nucleus (otherwise the kept mass "
        "is below p).",
    ),
    Mistake(
        "not renormalised",
        _unnormalised,
        "after zeroing the tokens outside the nucleus, divide by the kept mass so that the "
        "probabilities sum to 1 again.",
    ),
    Mistake(
        "sorted ascending",
        _ascending,
        "sort from the most likely token down (np.argsort(-probs)); ascending order keeps the "
        "unlikely tail, the opposite of the nucleus.",
    ),
    Mistake(
        "returned in sorted order",
        _sorted_output,
        "your probabilities are right but in sorted order: put each one back at its token's "
        "index (out[order] = ...).",
    ),
    Mistake(
        "not sorted",
        _unsorted,
        "the cumulative sum must run over the tokens sorted from the most likely down, not in "
        "their order in the vocabulary.",
    ),
]


NUCLEUS = Exercise(
    "nucleus", nucleus_cases, _nucleus_by_enumeration, NUCLEUS_MISTAKES, rtol=1e-6, atol=1e-9
)


def check_nucleus(fn: Callable[[np.ndarray, float], np.ndarray]) -> CheckReport:
    """Check ``fn(probs, p) -> probs'``: the renormalised nucleus (top-p) distribution.

    ``probs`` is a 1-D NumPy array summing to 1; the answer has its shape, zeros outside the
    nucleus, and sums to 1. The reference enumerates all subsets of the vocabulary.
    """
    return NUCLEUS.check(fn)


# ----------------------------------------------------------------------------- causal attention


def causal_attention_cases(seed: int = 0) -> list[Case]:
    """Queries, keys and values ``(T, d)`` or ``(B, T, d)`` in float64."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    for shape, name in [
        ((4, 3), "T = 4, d = 3"),
        ((7, 8), "T = 7, d = 8"),
        ((2, 5, 4), "a batch of 2, T = 5, d = 4"),
        ((1, 2), "T = 1"),
    ]:
        q, k, v = (torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(3))
        cases.append(Case(args=(q, k, v), name=name))
    return cases


def _sdpa_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def _tril(t: int) -> torch.Tensor:
    return torch.ones(t, t, dtype=torch.bool).tril()


def _no_mask(q, k, v):
    return torch.softmax(_scores(q, k), dim=-1) @ v


def _upper(q, k, v):
    t = q.shape[-2]
    s = _scores(q, k).masked_fill(~torch.ones(t, t, dtype=torch.bool).triu(), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def _after_softmax(q, k, v):
    w = torch.softmax(_scores(q, k), dim=-1) * _tril(q.shape[-2])
    return w @ v


def _zero_scores(q, k, v):
    s = _scores(q, k) * _tril(q.shape[-2])  # future scores set to 0, not to -inf
    return torch.softmax(s, dim=-1) @ v


def _unscaled(q, k, v):
    s = (q @ k.transpose(-2, -1)).masked_fill(~_tril(q.shape[-2]), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


CAUSAL_MISTAKES = [
    Mistake(
        "no mask",
        _no_mask,
        "every query attends to every key: position t reads the future. Set the scores of keys "
        "j > i to -inf before the softmax.",
    ),
    Mistake(
        "the wrong triangle",
        _upper,
        "you let query i attend to keys j >= i (the future) instead of j <= i: use tril, not "
        "triu, for the positions that may attend.",
    ),
    Mistake(
        "masked after the softmax",
        _after_softmax,
        "zeroing weights after the softmax leaves rows that no longer sum to 1; mask the scores "
        "with -inf *before* the softmax.",
    ),
    Mistake(
        "masked with 0 instead of -inf",
        _zero_scores,
        "a score of 0 still gets weight exp(0) in the softmax; masked scores must be -inf.",
    ),
    Mistake(
        "no 1/sqrt(d) scaling",
        _unscaled,
        "divide the scores q k^T by sqrt(d_k), the last dimension of q (Chapter 2).",
    ),
]


CAUSAL_ATTENTION = Exercise(
    "causal_attention",
    causal_attention_cases,
    _sdpa_causal,
    CAUSAL_MISTAKES,
    rtol=1e-7,
    atol=1e-9,
)


def check_causal_attention(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> CheckReport:
    """Check ``fn(q, k, v)``: causal scaled dot-product attention on ``(..., T, d)`` tensors,
    against ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``."""
    return CAUSAL_ATTENTION.check(fn)


# ----------------------------------------------------------------------------- parameter count


def _count_by_building(V: int, T: int, L: int, d: int) -> int:
    """Build the model from torch.nn layers on the meta device (no memory) and count."""
    with torch.device("meta"):
        layers = [torch.nn.Embedding(V, d), torch.nn.Embedding(T, d), torch.nn.LayerNorm(d)]
        for _ in range(L):
            layers += [
                torch.nn.LayerNorm(d),
                torch.nn.Linear(d, 3 * d),  # queries, keys, values of all heads
                torch.nn.Linear(d, d),  # output projection
                torch.nn.LayerNorm(d),
                torch.nn.Linear(d, 4 * d),
                torch.nn.Linear(4 * d, d),
            ]
        # the output layer is tied to the token embedding: no parameters of its own
        return sum(p.numel() for layer in layers for p in layer.parameters())


def param_count_cases() -> list[Case]:
    sizes = [
        (65, 64, 4, 128, "the CPU model"),
        (65, 256, 6, 384, "nanoGPT's Shakespeare model"),
        (50257, 1024, 12, 768, "GPT-2 small"),
        (10, 3, 1, 2, "tiny sizes"),
        (7, 11, 3, 5, "odd sizes"),
    ]
    return [Case(args=(V, T, L, d), name=name) for V, T, L, d, name in sizes]


PARAM_MISTAKES = [
    Mistake(
        "an untied output layer",
        lambda V, T, L, d: V * d + T * d + L * (12 * d * d + 13 * d) + 2 * d + V * d,
        "the output layer shares its (V, d) matrix with the token embedding (weight tying): "
        "count it once.",
    ),
    Mistake(
        "no position embeddings",
        lambda V, T, L, d: V * d + L * (12 * d * d + 13 * d) + 2 * d,
        "each of the T positions has a learned d-vector: add T d.",
    ),
    Mistake(
        "no biases or LayerNorms",
        lambda V, T, L, d: V * d + T * d + L * 12 * d * d,
        "12 L d^2 counts the matrices only: add each linear layer's bias and each LayerNorm's "
        "gain and bias (13 d per block, 2 d for the final LayerNorm).",
    ),
    Mistake(
        "an MLP of width d",
        lambda V, T, L, d: V * d + T * d + L * (6 * d * d + 10 * d) + 2 * d,
        "the MLP's hidden layer is 4 d wide: d -> 4d -> d holds 8 d^2 + 5 d parameters.",
    ),
    Mistake(
        "no final LayerNorm",
        lambda V, T, L, d: V * d + T * d + L * (12 * d * d + 13 * d),
        "a LayerNorm sits between the last block and the output layer: add its 2 d.",
    ),
]


PARAM_COUNT = Exercise(
    "param_count", param_count_cases, _count_by_building, PARAM_MISTAKES, rtol=0, atol=0
)


def check_param_count(fn: Callable[[int, int, int, int], int]) -> CheckReport:
    """Check ``fn(V, T, L, d) -> int``, the number of parameters of a GPT with biases and tied
    embeddings, against ``sum(p.numel())`` of the same layers built with ``torch.nn``."""
    return PARAM_COUNT.check(fn)


EXERCISES = {e.name: e for e in (NUCLEUS, CAUSAL_ATTENTION, PARAM_COUNT)}
