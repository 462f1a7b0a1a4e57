"""Checkers for Chapter 2's exercises: masked attention, multi-head attention, the softmax
Jacobian and the online softmax.

The references are PyTorch's: ``torch.nn.functional.scaled_dot_product_attention``,
``torch.nn.MultiheadAttention`` (with the student's weights copied in), ``torch.autograd`` and
``torch.softmax``, not code of ours. Inputs are float64 tensors, so that the comparisons can be
tight. Each checker names the plausible mistakes it recognises; ``EXERCISES`` maps each
exercise's name to its :class:`~dlbook.exercises.checker.Exercise`.

Derived in: Chapter 2, *Exercises*.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from dlbook.exercises.checker import Case, CheckReport, Exercise, Mistake

__all__ = [
    "EXERCISES",
    "MASKED_ATTENTION_MISTAKES",
    "MULTI_HEAD_MISTAKES",
    "ONLINE_SOFTMAX_MISTAKES",
    "SOFTMAX_JACOBIAN_MISTAKES",
    "check_masked_attention",
    "check_multi_head_attention",
    "check_online_softmax",
    "check_softmax_jacobian",
    "masked_attention_cases",
    "multi_head_cases",
    "online_softmax_cases",
    "softmax_jacobian_cases",
]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# ----------------------------------------------------------------------------- masked attention


def masked_attention_cases(seed: int = 0) -> list[Case]:
    """``(q, k, v, mask)``: float64 ``(..., T, d)`` tensors and a bool mask, True = may attend."""
    g = _gen(seed)
    cases = []
    t = 5
    q, k, v = _randn(t, 4, g=g), _randn(t, 4, g=g), _randn(t, 3, g=g)
    mask = torch.ones(t, t, dtype=torch.bool)
    mask[0, -1] = False  # the first query may not look at the last key; nothing else is masked
    cases.append(Case(args=(q, k, v, mask), name="one key masked"))
    q, k, v = _randn(2, 6, 8, g=g), _randn(2, 6, 8, g=g), _randn(2, 6, 8, g=g)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    cases.append(Case(args=(q, k, v, causal), name="causal, batch of 2"))
    q, k, v = _randn(2, 3, 7, 16, g=g), _randn(2, 3, 7, 16, g=g), _randn(2, 3, 7, 5, g=g)
    pad = (torch.arange(7)[None, :] < torch.tensor([7, 4])[:, None])[:, None, None, :]
    cases.append(
        Case(
            args=(q, k, v, pad & torch.ones(7, 7, dtype=torch.bool).tril()),
            name="causal and padding, 2 x 3 heads",
        )
    )
    q, k, v = _randn(3, 8, g=g), _randn(9, 8, g=g), _randn(9, 2, g=g)
    mask = torch.rand(3, 9, generator=g) < 0.6
    mask[:, 0] = True  # every query keeps at least one key
    cases.append(Case(args=(q, k, v, mask), name="3 queries, 9 keys, random mask"))
    return cases


def _sdpa(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _scores(q, k, scale):
    return q @ k.transpose(-2, -1) * scale


MASKED_ATTENTION_MISTAKES = [
    Mistake(
        "no scaling",
        lambda q, k, v, m: torch.softmax(_scores(q, k, 1.0).masked_fill(~m, float("-inf")), -1) @ v,
        "divide the scores by sqrt(d_k), d_k = q.shape[-1], before the softmax.",
    ),
    Mistake(
        "divided by d_k instead of sqrt(d_k)",
        lambda q, k, v, m: (
            torch.softmax(_scores(q, k, 1 / q.shape[-1]).masked_fill(~m, float("-inf")), -1) @ v
        ),
        "the scale is 1/sqrt(d_k): it makes the variance of q.k equal to 1, and variance scales "
        "with the square of the factor.",
    ),
    Mistake(
        "masked scores set to 0",
        lambda q, k, v, m: (
            torch.softmax(_scores(q, k, 1 / math.sqrt(q.shape[-1])).masked_fill(~m, 0.0), -1) @ v
        ),
        "a score of 0 still gets weight exp(0) = 1 > 0: fill forbidden scores with -inf.",
    ),
    Mistake(
        "masked after the softmax",
        lambda q, k, v, m: (torch.softmax(_scores(q, k, 1 / math.sqrt(q.shape[-1])), -1) * m) @ v,
        "zeroing weights after the softmax leaves rows that no longer sum to 1: mask the scores "
        "with -inf before the softmax.",
    ),
    Mistake(
        "softmax over the queries",
        lambda q, k, v, m: (
            torch.softmax(
                _scores(q, k, 1 / math.sqrt(q.shape[-1])).masked_fill(~m, float("-inf")), -2
            )
            @ v
        ),
        "each query's weights must sum to 1 over the keys: softmax along the last axis (dim=-1).",
    ),
    Mistake(
        "mask inverted",
        lambda q, k, v, m: (
            torch.softmax(
                _scores(q, k, 1 / math.sqrt(q.shape[-1])).masked_fill(m, float("-inf")), -1
            )
            @ v
        ),
        "True means *may attend*: fill the scores where the mask is False (~mask).",
    ),
]


MASKED_ATTENTION = Exercise(
    "masked_attention",
    masked_attention_cases,
    _sdpa,
    MASKED_ATTENTION_MISTAKES,
    rtol=1e-7,
    atol=1e-9,
)


def check_masked_attention(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> CheckReport:
    """Check ``fn(q, k, v, mask) -> (..., T_q, d_v)`` against PyTorch's attention."""
    return MASKED_ATTENTION.check(fn)


# ----------------------------------------------------------------------------- multi-head


def multi_head_cases(seed: int = 0) -> list[Case]:
    """``(x, w_in, b_in, w_out, b_out, h)`` with ``x`` ``(B, T, d)`` and PyTorch's weight layout:
    ``w_in`` ``(3d, d)`` stacks the query, key and value projections, ``b_in`` ``(3d,)``."""
    g = _gen(seed)
    cases = []
    for b, t, d, h in [(2, 5, 8, 2), (1, 7, 12, 3), (3, 4, 16, 4), (2, 6, 8, 1)]:
        args = (
            _randn(b, t, d, g=g),
            _randn(3 * d, d, g=g) / math.sqrt(d),
            _randn(3 * d, g=g),
            _randn(d, d, g=g) / math.sqrt(d),
            _randn(d, g=g),
            h,
        )
        cases.append(Case(args=args, name=f"B={b}, T={t}, d={d}, h={h}"))
    return cases


def _torch_mha(x, w_in, b_in, w_out, b_out, h):
    d = x.shape[-1]
    mha = torch.nn.MultiheadAttention(d, h, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(w_in)
        mha.in_proj_bias.copy_(b_in)
        mha.out_proj.weight.copy_(w_out)
        mha.out_proj.bias.copy_(b_out)
    return mha(x, x, x, need_weights=False)[0].detach()


def _mha_variant(split_transpose=True, merge_transpose=True, head_scale=True, out_proj=True):
    """Multi-head attention with one step done wrong (each flag False breaks one step)."""

    def fn(x, w_in, b_in, w_out, b_out, h):
        b, t, d = x.shape
        dh = d // h
        q, k, v = (x @ w_in.T + b_in).split(d, dim=-1)

        def split(z):
            if split_transpose:
                return z.reshape(b, t, h, dh).transpose(1, 2)
            return z.reshape(b, h, t, dh)

        q, k, v = split(q), split(k), split(v)
        scale = 1 / math.sqrt(dh if head_scale else d)
        o = torch.softmax(q @ k.transpose(-2, -1) * scale, -1) @ v  # (B, h, T, dh)
        o = o.transpose(1, 2).reshape(b, t, d) if merge_transpose else o.reshape(b, t, d)
        return o @ w_out.T + b_out if out_proj else o

    return fn


MULTI_HEAD_MISTAKES = [
    Mistake(
        "heads split without a transpose",
        _mha_variant(split_transpose=False),
        "view (B, T, d) as (B, T, h, d/h) and then transpose to (B, h, T, d/h); a direct reshape "
        "to (B, h, T, d/h) mixes positions and features.",
    ),
    Mistake(
        "heads merged without a transpose",
        _mha_variant(merge_transpose=False),
        "transpose (B, h, T, d/h) back to (B, T, h, d/h) before reshaping to (B, T, d).",
    ),
    Mistake(
        "scaled by sqrt(d) instead of sqrt(d/h)",
        _mha_variant(head_scale=False),
        "each head takes dot products of vectors of width d/h: scale by 1/sqrt(d/h).",
    ),
    Mistake(
        "no output projection",
        _mha_variant(out_proj=False),
        "after concatenating the heads apply the output projection: out @ w_out.T + b_out.",
    ),
]


MULTI_HEAD_ATTENTION = Exercise(
    "multi_head_attention",
    multi_head_cases,
    _torch_mha,
    MULTI_HEAD_MISTAKES,
    rtol=1e-7,
    atol=1e-9,
)


def check_multi_head_attention(fn: Callable[..., torch.Tensor]) -> CheckReport:
    """Check ``fn(x, w_in, b_in, w_out, b_out, h) -> (B, T, d)`` against
    ``torch.nn.MultiheadAttention`` with the same weights."""
    return MULTI_HEAD_ATTENTION.check(fn)


# ----------------------------------------------------------------------------- softmax Jacobian


def softmax_jacobian_cases(seed: int = 0) -> list[Case]:
    """Score vectors ``z`` ``(n,)`` in float64, one of them nearly saturated."""
    g = _gen(seed)
    cases = [Case(args=(_randn(n, g=g),), name=f"{n} scores") for n in (3, 5, 8)]
    cases.append(Case(args=(torch.tensor([2.0, -1.0], dtype=torch.float64),), name="2 scores"))
    cases.append(Case(args=(4 * _randn(6, g=g),), name="6 spread-out scores"))
    return cases


def _autograd_jacobian(z):
    return torch.autograd.functional.jacobian(lambda x: torch.softmax(x, -1), z)


def _p(z):
    return torch.softmax(z, -1)


SOFTMAX_JACOBIAN_MISTAKES = [
    Mistake(
        "the diagonal only",
        lambda z: torch.diag(_p(z) * (1 - _p(z))),
        "p_i depends on every z_j through the denominator: off the diagonal dp_i/dz_j = -p_i p_j.",
    ),
    Mistake(
        "the sign flipped",
        lambda z: torch.outer(_p(z), _p(z)) - torch.diag(_p(z)),
        "raising z_i raises p_i: the diagonal p_i (1 - p_i) is positive. It is diag(p) - p p^T.",
    ),
    Mistake(
        "no diag(p) term",
        lambda z: -torch.outer(_p(z), _p(z)),
        "the numerator e^{z_i} depends on z_i too: add diag(p).",
    ),
    Mistake(
        "diag(p) alone",
        lambda z: torch.diag(_p(z)),
        "you differentiated the numerator only; the denominator gives the term -p p^T.",
    ),
]


SOFTMAX_JACOBIAN = Exercise(
    "softmax_jacobian",
    softmax_jacobian_cases,
    _autograd_jacobian,
    SOFTMAX_JACOBIAN_MISTAKES,
    rtol=1e-9,
    atol=1e-12,
)


def check_softmax_jacobian(fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckReport:
    """Check ``fn(z) -> (n, n)``, the Jacobian dp/dz of p = softmax(z), against autograd."""
    return SOFTMAX_JACOBIAN.check(fn)


# ----------------------------------------------------------------------------- online softmax


def online_softmax_cases(seed: int = 0) -> list[Case]:
    """``(x, block)``: a 1-D float64 tensor read in blocks of ``block`` entries."""
    g = _gen(seed)
    rising = torch.linspace(-3, 3, 12, dtype=torch.float64)  # the maximum grows block by block
    huge = torch.tensor([1000.0, -1000.0, 999.0, 0.0, 998.0, 5.0], dtype=torch.float64)
    return [
        Case(args=(3 * _randn(10, g=g), 3), name="10 scores, blocks of 3"),
        Case(args=(rising, 4), name="rising scores, blocks of 4"),
        Case(args=(3 * _randn(16, g=g), 1), name="blocks of 1"),
        Case(args=(3 * _randn(7, g=g), 7), name="one block"),
        Case(args=(huge, 2), name="scores near +-1000"),
    ]


def _softmax(x, block):
    return torch.softmax(x, -1)


def _online_variant(rescale: str = "right"):
    def fn(x, block):
        m, total = float("-inf"), 0.0
        for j in range(0, len(x), block):
            xb = x[j : j + block]
            m_new = max(m, xb.max().item())
            factor = {"right": math.exp(m - m_new), "none": 1.0}.get(rescale)
            if rescale == "inverted":
                factor = math.exp(m_new - m) if m > float("-inf") else 0.0
            total = total * factor + torch.exp(xb - m_new).sum().item()
            m = m_new
        return torch.exp(x - m) / total

    return fn


ONLINE_SOFTMAX_MISTAKES = [
    Mistake(
        "the running sum not rescaled",
        _online_variant("none"),
        "when the maximum grows from m to m', the terms summed so far were exp(x - m): multiply "
        "the running sum by exp(m - m') before adding the new block.",
    ),
    Mistake(
        "rescaled the wrong way",
        _online_variant("inverted"),
        "the factor is exp(m_old - m_new) <= 1: the old terms shrink relative to the new maximum.",
    ),
    Mistake(
        "each block normalised on its own",
        lambda x, block: torch.cat(
            [torch.softmax(x[j : j + block], -1) for j in range(0, len(x), block)]
        ),
        "the weights must sum to 1 over the whole row, not within each block: keep one running "
        "sum across the blocks and divide by it at the end.",
    ),
    Mistake(
        "no maximum subtracted",
        lambda x, block: torch.exp(x) / torch.exp(x).sum(),
        "exp(1000) overflows to inf: subtract the running maximum inside every exponential.",
    ),
]


ONLINE_SOFTMAX = Exercise(
    "online_softmax",
    online_softmax_cases,
    _softmax,
    ONLINE_SOFTMAX_MISTAKES,
    rtol=1e-9,
    atol=1e-12,
)


def check_online_softmax(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> CheckReport:
    """Check ``fn(x, block) -> softmax(x)`` (computed block by block) against ``torch.softmax``."""
    return ONLINE_SOFTMAX.check(fn)


EXERCISES = {
    e.name: e for e in (MASKED_ATTENTION, MULTI_HEAD_ATTENTION, SOFTMAX_JACOBIAN, ONLINE_SOFTMAX)
}
