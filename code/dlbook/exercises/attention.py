"""Checkers for Chapter 2's exercises: masked attention, multi-head attention, the softmax
Jacobian, the backward pass of attention, the online softmax and tiled attention.

The references are PyTorch's: ``torch.nn.functional.scaled_dot_product_attention``,
``torch.nn.MultiheadAttention`` (with the student's weights copied in), ``torch.autograd`` and
``torch.softmax``, not code of ours. Inputs are float64 tensors, so that the comparisons can be
tight. Each checker names the plausible mistakes it recognises; ``EXERCISES`` maps each
exercise's name to its :class:`~dlbook.exercises.checker.Exercise`.

Each exercise also switches off the library functions that would answer it (``forbidden``):
while the student's function runs, ``torch.nn.functional.scaled_dot_product_attention`` raises
in masked attention, autograd as a whole in the Jacobian and the backward pass (no tensor may
require grad, and PyTorch's backward formulas such as ``_softmax_backward_data`` are refused),
the softmax and its relatives in the online softmax and tiled attention, and
``dlbook.attention``'s own versions in each; the operators behind them (``torch.ops.aten``) are
refused by name too. Two exercises enforce *how* as well as *what*: the online softmax reads its
row from a :class:`BlockStream` (two passes, a block is gone once the next one arrives, and the
row itself is not an attribute), and tiled attention runs in torch (no NumPy) under a guard that
refuses any tensor, of any dtype, holding all ``T_k`` keys along one axis.

About 840 lines because it holds six exercises, each one section read top to bottom (cases,
reference, mistakes, checker) in the order of the exercises notebook; the lists of what is
switched off are shared by several sections, and the registry at the end needs all six.

Derived in: Chapter 2, *Exercises*.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from dlbook.exercises.checker import (
    AUTOGRAD,
    Case,
    CheckReport,
    Exercise,
    ForbiddenCall,
    Mistake,
)

__all__ = [
    "ATTENTION_BACKWARD_MISTAKES",
    "EXERCISES",
    "MASKED_ATTENTION_MISTAKES",
    "MULTI_HEAD_MISTAKES",
    "ONLINE_SOFTMAX_MISTAKES",
    "SOFTMAX_JACOBIAN_MISTAKES",
    "TILED_ATTENTION_MISTAKES",
    "BlockStream",
    "attention_backward_cases",
    "check_attention_backward",
    "check_masked_attention",
    "check_multi_head_attention",
    "check_online_softmax",
    "check_softmax_jacobian",
    "check_tiled_attention",
    "masked_attention_cases",
    "multi_head_cases",
    "online_softmax_cases",
    "softmax_jacobian_cases",
    "tiled_attention_cases",
]

# What each exercise switches off while the student's function runs (see ``switched_off``);
# "torch.ops.aten.NAME" refuses PyTorch's operators of that name (a pattern) however called.
MULTI_HEAD = (
    "torch.nn.MultiheadAttention",
    "torch.nn.functional.multi_head_attention_forward",
    "torch.ops.aten.*multi_head_attention*",  # _native_multi_head_attention
    "dlbook.attention.MultiHeadAttention",
)
FUSED = (
    "torch.nn.functional.scaled_dot_product_attention",
    "torch.ops.aten.*scaled_dot_product*",  # and _scaled_dot_product_attention_math, ...
    "torch.ops.aten.*_attention_forward",  # _flash_attention_forward, _efficient_...
    "torch.ops.aten._masked_softmax",
    *MULTI_HEAD,
    "dlbook.attention.scaled_dot_product_attention",
    "dlbook.attention.tiled_attention",
)
SOFTMAX = (
    "torch.softmax",
    "torch.Tensor.softmax",
    "torch.nn.functional.softmax",
    "torch.special.softmax",
    "torch.nn.functional.softmin",
    "torch.log_softmax",
    "torch.Tensor.log_softmax",
    "torch.nn.functional.log_softmax",
    "torch.special.log_softmax",
    "torch.logsumexp",
    "torch.Tensor.logsumexp",
    "torch.special.logsumexp",
    "torch.logaddexp",
    "torch.Tensor.logaddexp",
    "torch.ops.aten.*softmax*",  # _softmax, _log_softmax, _safe_softmax, special_softmax, ...
    "torch.ops.aten.*softmin*",
    "torch.ops.aten.*logsumexp*",
    "torch.ops.aten.logaddexp*",
    "dlbook.attention.online_softmax",
)
# Ways out of torch: tiled attention's guard watches torch tensors, so NumPy would escape it.
TO_NUMPY = (
    "torch.Tensor.numpy",
    "torch.Tensor.__array__",
    "torch.Tensor.tolist",
    "torch.Tensor.__dlpack__",
    "torch.utils.dlpack.to_dlpack",
)


def _leaves(obj: object) -> Iterator[object]:
    """The objects inside nested lists, tuples and dicts (a function's arguments or result)."""
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _leaves(item)
    else:
        yield obj


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# ----------------------------------------------------------------------------- masked attention


def masked_attention_cases(seed: int = 0) -> list[Case]:
    """``(q, k, v, mask)``: float64 ``(..., T, d)`` tensors and a bool mask, True = may attend.

    In the last case some queries may attend no key at all (left padding under a causal mask).
    """
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
    # left padding: sequence 1 has 3 real tokens at the end; its first 3 queries see only padding
    q, k, v = _randn(2, 2, 6, 8, g=g), _randn(2, 2, 6, 8, g=g), _randn(2, 2, 6, 4, g=g)
    real = torch.arange(6)[None, :] >= 6 - torch.tensor([6, 3])[:, None]  # (2, 6) real keys
    mask = (real[:, None, :] & torch.ones(6, 6, dtype=torch.bool).tril())[:, None]  # (2, 1, 6, 6)
    cases.append(Case(args=(q, k, v, mask), name="left padding and causal: 3 queries see no key"))
    return cases


def _sdpa(q, k, v, mask):
    """PyTorch's attention; a query with no allowed key gets 0, as PyTorch >= 2.5 gives it."""
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return torch.where(mask.any(-1, keepdim=True), out, torch.zeros((), dtype=out.dtype))


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
    Mistake(
        "NaN for a query with no allowed key",
        lambda q, k, v, m: (
            torch.softmax(
                _scores(q, k, 1 / math.sqrt(q.shape[-1])).masked_fill(~m, float("-inf")), -1
            )
            @ v
        ),
        "a query whose every key is masked has the scores -inf, ..., -inf, and their softmax is "
        "0/0 = NaN. Give such a query the output 0 (torch.where(mask.any(-1, keepdim=True), "
        "out, 0.0)), as PyTorch does, so that no NaN spreads into the loss.",
    ),
    Mistake(
        "a finite fill value",
        lambda q, k, v, m: (
            torch.softmax(_scores(q, k, 1 / math.sqrt(q.shape[-1])).masked_fill(~m, -1e9), -1) @ v
        ),
        "with a large finite number such as -1e9 instead of -inf, a query whose every key is "
        "masked gets equal scores and so the plain average of all the values, padding included: "
        "a silent wrong answer. Give such a query the output 0.",
    ),
]


MASKED_ATTENTION = Exercise(
    "masked_attention",
    masked_attention_cases,
    _sdpa,
    MASKED_ATTENTION_MISTAKES,
    rtol=1e-7,
    atol=1e-9,
    forbidden=FUSED,
    rule="this exercise asks for attention written out",
)


def check_masked_attention(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> CheckReport:
    """Check ``fn(q, k, v, mask) -> (..., T_q, d_v)`` against PyTorch's attention (a query
    with no allowed key gets the output 0); PyTorch's and dlbook's attention are switched off."""
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
    forbidden=MULTI_HEAD,
    rule="this exercise asks for the heads split and merged by hand",
)


def check_multi_head_attention(fn: Callable[..., torch.Tensor]) -> CheckReport:
    """Check ``fn(x, w_in, b_in, w_out, b_out, h) -> (B, T, d)`` against
    ``torch.nn.MultiheadAttention`` with the same weights, which is switched off in ``fn``
    (``scaled_dot_product_attention`` for each head is allowed)."""
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
    forbidden=(*AUTOGRAD, "dlbook.attention.softmax_jacobian"),
    rule="this exercise asks for the Jacobian derived by hand",
    autograd_off=True,
)


def check_softmax_jacobian(fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckReport:
    """Check ``fn(z) -> (n, n)``, the Jacobian dp/dz of p = softmax(z), against autograd, which
    is switched off as a whole in ``fn`` (``torch.softmax`` for p itself is allowed)."""
    return SOFTMAX_JACOBIAN.check(fn)


# ----------------------------------------------------------------------------- backward pass


def attention_backward_cases(seed: int = 0) -> list[Case]:
    """``(q, k, v, dout)`` in float64, ``dout`` shaped like the output ``(..., T_q, d_v)``."""
    g = _gen(seed)
    shapes = [  # (batch, T_q, T_k, d_k, d_v, spread of the scores)
        ((), 5, 5, 4, 3, 1.0, "T = 5, self-attention"),
        ((2, 3), 6, 6, 8, 8, 1.0, "batch of 2 x 3 heads, T = 6"),
        ((), 3, 7, 4, 5, 1.0, "3 queries, 7 keys"),
        ((2,), 6, 6, 16, 4, 3.0, "peaked weights, batch of 2"),
    ]
    cases = []
    for batch, t_q, t_k, d_k, d_v, spread, name in shapes:
        q = spread * _randn(*batch, t_q, d_k, g=g)
        k, v = _randn(*batch, t_k, d_k, g=g), _randn(*batch, t_k, d_v, g=g)
        cases.append(Case(args=(q, k, v, _randn(*batch, t_q, d_v, g=g)), name=name))
    return cases


def _autograd_backward(q, k, v, dout):
    """dL/dq, dL/dk, dL/dv for L = <dout, O>, by autograd through PyTorch's attention."""
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), dout)
    return {"dq": dq, "dk": dk, "dv": dv}


def _backward_variant(delta=True, scale=True, p_in_ds=True, dv_transposed=False, dk_ds_t=True):
    """The backward pass of attention with one step done wrong (each flag breaks one step)."""

    def fn(q, k, v, dout):
        s = 1 / math.sqrt(q.shape[-1])
        p = torch.softmax(_scores(q, k, s), -1)  # (..., T_q, T_k)
        out = p @ v
        dv = (p if dv_transposed else p.transpose(-2, -1)) @ dout
        dp = dout @ v.transpose(-2, -1)
        row = (dout * out).sum(-1, keepdim=True) if delta else 0.0
        ds = p * (dp - row) if p_in_ds else dp - row
        c = s if scale else 1.0
        dk = c * (ds.transpose(-2, -1) if dk_ds_t else ds) @ q
        return {"dq": c * ds @ k, "dk": dk, "dv": dv}

    return fn


ATTENTION_BACKWARD_MISTAKES = [
    Mistake(
        "no delta term",
        _backward_variant(delta=False),
        "dS = P * dP forgets that every weight of a row depends on every score of it (the "
        "softmax's denominator): subtract delta = rowsum(dO * O) = rowsum(dP * P) from each row "
        "of dP first, dS = P * (dP - delta) (section *The backward pass of attention*).",
    ),
    Mistake(
        "no scale on dq and dk",
        _backward_variant(scale=False),
        "the scores are S = s Q K^T with s = 1/sqrt(d_k): the chain rule multiplies dq = s dS K "
        "and dk = s dS^T Q by s too (dv has no s).",
    ),
    Mistake(
        "dS without P",
        _backward_variant(p_in_ds=False),
        "the softmax's vector-Jacobian product is P * (dP - delta), elementwise times P: dP - "
        "delta alone treats the softmax as if its Jacobian were the identity.",
    ),
    Mistake(
        "dV = P dO, not P^T dO",
        _backward_variant(dv_transposed=True),
        "O = P V, so dV = P^T dO (T_k x d_v): each key's value collects the upstream gradient of "
        "every query that attended to it, weighted by that query's attention weight.",
    ),
    Mistake(
        "dK with dS, not dS^T",
        _backward_variant(dk_ds_t=False),
        "S_ij = s q_i . k_j, so key j gathers column j of dS: dk = s dS^T Q (T_k x d_k).",
    ),
]


ATTENTION_BACKWARD = Exercise(
    "attention_backward",
    attention_backward_cases,
    _autograd_backward,
    ATTENTION_BACKWARD_MISTAKES,
    rtol=1e-7,
    atol=1e-10,
    forbidden=(*AUTOGRAD, "dlbook.attention.attention_backward"),
    rule="this exercise asks for the backward pass derived by hand",
    autograd_off=True,
)


def check_attention_backward(fn: Callable[..., dict]) -> CheckReport:
    """Check ``fn(q, k, v, dout) -> {"dq", "dk", "dv"}`` against autograd through PyTorch's
    attention; autograd is switched off as a whole while ``fn`` runs."""
    return ATTENTION_BACKWARD.check(fn)


# ----------------------------------------------------------------------------- online softmax


class _Block(torch.Tensor):
    """A block of a :class:`BlockStream`: a tensor that refuses to be used once it is gone."""

    gone = ""  # why it can no longer be used; empty while it can

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for t in _leaves((args, kwargs)):
            if isinstance(t, _Block) and t.gone:
                raise ForbiddenCall(t.gone)
        with torch._C.DisableTorchFunctionSubclass():  # results are plain tensors
            return func(*args, **kwargs)


def _stream(row: torch.Tensor, block: int, passes: int) -> Callable[[], Iterator[torch.Tensor]]:
    """The ``blocks()`` of a :class:`BlockStream`: a closure, so that the row is nobody's
    attribute, which counts the passes and expires each block when the next one arrives."""
    started, live = 0, []

    def expire(why: str) -> None:
        for b in live:
            b.gone = why
        live.clear()

    def one_pass(number: int) -> Iterator[torch.Tensor]:
        for i, j in enumerate(range(0, row.numel(), block)):
            expire(
                f"this exercise reads the row as a stream: block {i} of pass {number} arrived, "
                "so the block before it is gone (keep the running statistics, not the blocks)"
            )
            b = row[j : j + block].clone().as_subclass(_Block)
            live.append(b)
            yield b
        expire(
            f"this exercise reads the row as a stream: pass {number} is over, so its blocks "
            "are gone (keep the running statistics, not the blocks)"
        )

    def blocks() -> Iterator[torch.Tensor]:
        nonlocal started
        started += 1
        if started > passes:
            raise ForbiddenCall(
                f"this exercise reads the row as a stream: blocks() may be called {passes} "
                "times, once for the running maximum and sum and once to write the output"
            )
        expire("this block is from an earlier pass over the row: it is gone")
        return one_pass(started)

    return blocks


class BlockStream:
    """A row of scores that arrives block by block, as a tile arrives in on-chip memory.

    ``blocks()`` starts a pass over the row and returns an iterator of its blocks: 1-D float64
    tensors of ``block`` entries (the last may be shorter). Two rules make "one pass for the
    statistics" checkable rather than a promise: ``blocks()`` may be called twice (one pass for
    the running maximum and sum, one to write the output), and a block is usable only until the
    next one arrives (its buffer is reused): after that any operation on it raises
    :class:`~dlbook.exercises.checker.ForbiddenCall`. The row itself is no attribute of the
    stream (it lives in a closure). A function may still copy every block it sees
    (``b.clone()``), but then it holds the whole row, which is what the exercise forbids.
    ``len(stream)`` is the length of the row; a deep copy (the checker's, for each call) starts
    with no pass made.
    """

    passes = 2

    def __init__(self, row: torch.Tensor, block: int) -> None:
        if row.dim() != 1 or block < 1:
            raise ValueError(f"need a 1-D row and block >= 1, got {tuple(row.shape)}, {block}")
        row, passes = row.detach().clone(), self.passes
        self.block, self._n = block, row.numel()
        self._fresh = lambda: _stream(row, block, passes)
        self._blocks = self._fresh()

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"BlockStream({len(self)} scores in blocks of {self.block})"

    def __deepcopy__(self, memo: dict) -> BlockStream:
        twin = copy.copy(self)
        twin._blocks = self._fresh()
        return twin

    def __call__(self) -> Iterator[torch.Tensor]:
        return self._blocks()


def _stream_case(row: torch.Tensor, block: int, name: str) -> Case:
    """A case whose expected output is computed here, from the row the stream then hides."""
    return Case(args=(BlockStream(row, block),), name=name, expected=torch.softmax(row, -1))


def online_softmax_cases(seed: int = 0) -> list[Case]:
    """A :class:`BlockStream` over a 1-D float64 row of scores, and the row's softmax as the
    expected output (the reference, ``torch.softmax``, cannot read the row from the stream)."""
    g = _gen(seed)
    rising = torch.linspace(-3, 3, 12, dtype=torch.float64)  # the maximum grows block by block
    huge = torch.tensor([1000.0, -1000.0, 999.0, 0.0, 998.0, 5.0], dtype=torch.float64)
    return [
        _stream_case(3 * _randn(10, g=g), 3, "10 scores, blocks of 3"),
        _stream_case(rising, 4, "rising scores, blocks of 4"),
        _stream_case(3 * _randn(16, g=g), 1, "blocks of 1"),
        _stream_case(3 * _randn(7, g=g), 7, "one block"),
        _stream_case(huge, 2, "scores near +-1000"),
    ]


def _online_variant(rescale: str = "right", subtract_max: bool = True, start_inf: bool = True):
    """The online softmax with one step done wrong: ``rescale`` is ``"right"``, ``"none"`` or
    ``"inverted"``; without ``subtract_max`` it sums plain exponentials; ``start_inf`` starts the
    running maximum at -inf (else at the first block's maximum)."""

    def fn(blocks):
        m, total = float("-inf"), 0.0
        for i, xb in enumerate(blocks()):
            m_block = xb.max().item()
            if i == 0 and not start_inf:
                m = m_block
            m_new = max(m, m_block) if subtract_max else 0.0
            factor = {"right": math.exp(m - m_new), "none": 1.0}.get(rescale)
            if rescale == "inverted":
                factor = math.exp(m_new - m)  # inf for the first block when m = -inf
            total = total * factor + torch.exp(xb - m_new).sum().item()
            m = m_new
        return torch.cat([torch.exp(xb - m) / total for xb in blocks()])

    return fn


def _per_block(blocks):
    out = []
    for xb in blocks():
        e = torch.exp(xb - xb.max())
        out.append(e / e.sum())
    return torch.cat(out)


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
        "the factor is exp(m_old - m_new) <= 1: the old terms shrink relative to the new maximum. "
        "The other way round, the first block gives exp(m_new - (-inf)) = inf, and inf * 0 = NaN.",
    ),
    Mistake(
        "rescaled the wrong way, from the first block's maximum",
        _online_variant("inverted", start_inf=False),
        "the factor is exp(m_old - m_new) <= 1: the old terms shrink relative to the new maximum.",
    ),
    Mistake(
        "each block normalised on its own",
        _per_block,
        "the weights must sum to 1 over the whole row, not within each block: keep one running "
        "sum across the blocks and divide by it in the second pass.",
    ),
    Mistake(
        "no maximum subtracted",
        _online_variant(subtract_max=False),
        "exp(1000) overflows to inf: subtract the running maximum inside every exponential.",
    ),
]


ONLINE_SOFTMAX = Exercise(
    "online_softmax",
    online_softmax_cases,
    None,  # each case carries its expected output
    ONLINE_SOFTMAX_MISTAKES,
    rtol=1e-9,
    atol=1e-12,
    forbidden=SOFTMAX,
    rule="this exercise asks for the softmax written out",
)


def check_online_softmax(fn: Callable[[BlockStream], torch.Tensor]) -> CheckReport:
    """Check ``fn(blocks) -> softmax(x)`` (``blocks`` a :class:`BlockStream` over ``x``) against
    ``torch.softmax``; the softmax and its relatives are switched off while ``fn`` runs."""
    return ONLINE_SOFTMAX.check(fn)


# ----------------------------------------------------------------------------- tiled attention


def tiled_attention_cases(seed: int = 0) -> list[Case]:
    """``(q, k, v, block)`` in float64; ``T_k`` differs from every other size of its case and is
    mostly not a multiple of ``block``."""
    g = _gen(seed)
    shapes = [  # (batch, T_q, T_k, d_k, d_v, block, spread of the scores)
        ((), 6, 11, 4, 3, 4, 1.0, "6 queries, 11 keys, blocks of 4"),
        ((2, 3), 5, 13, 8, 6, 4, 1.0, "2 x 3 heads, 13 keys, blocks of 4"),
        ((), 4, 9, 6, 2, 1, 1.0, "blocks of 1"),
        ((), 5, 10, 4, 3, 3, 30.0, "scores in the thousands, blocks of 3"),
        ((), 3, 7, 4, 5, 8, 1.0, "one block holds every key"),
    ]
    cases = []
    for batch, t_q, t_k, d_k, d_v, block, spread, name in shapes:
        q = spread * _randn(*batch, t_q, d_k, g=g)
        k = _randn(*batch, t_k, d_k, g=g) * (spread if spread > 1 else 1.0)
        cases.append(Case(args=(q, k, _randn(*batch, t_k, d_v, g=g), block), name=name))
    return cases


def _attention(q, k, v, block):
    return F.scaled_dot_product_attention(q, k, v)


class _OneTileAtATime(TorchFunctionMode):
    """Refuses any tensor, whatever its dtype (float, complex, integer), with ``t_k`` entries
    along one axis, apart from the keys and values themselves (in any layout)."""

    def __init__(self, t_k: int, block: int, allowed: list[list[int]]) -> None:
        super().__init__()
        self.t_k, self.block, self.allowed = t_k, block, allowed

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in _leaves(out):
            if (
                isinstance(t, torch.Tensor)
                and self.t_k in t.shape
                and sorted(n for n in t.shape if n != 1) not in self.allowed
            ):
                raise ForbiddenCall(
                    "this exercise asks for attention one tile of keys at a time: a tensor of "
                    f"shape {tuple(t.shape)} holds all T_k = {self.t_k} keys along one axis (a "
                    "full row of scores, or the whole T_q x T_k matrix). Loop over blocks of "
                    f"{self.block} keys and keep only m, l and the accumulator."
                )
        return out


def _one_tile_at_a_time(case: Case) -> AbstractContextManager:
    _, k, v, block = case.args
    if block >= k.shape[-2]:  # one tile holds every key: nothing to refuse
        return nullcontext()
    allowed = [sorted(n for n in t.shape if n != 1) for t in (k, v)]
    return _OneTileAtATime(k.shape[-2], block, allowed)


def _tiled_variant(
    rescale_acc=True, rescale_sum=True, divide_in_loop=False, last_block=True, scale=True
):
    """Tiled attention with one step done wrong (each flag breaks one step)."""

    def fn(q, k, v, block):
        t_k = k.shape[-2]
        s = 1 / math.sqrt(q.shape[-1]) if scale else 1.0
        stop = t_k if last_block else t_k - t_k % block
        m = torch.full((*q.shape[:-1], 1), float("-inf"), dtype=q.dtype)
        total = torch.zeros((*q.shape[:-1], 1), dtype=q.dtype)
        acc = torch.zeros((*q.shape[:-1], v.shape[-1]), dtype=q.dtype)
        for j in range(0, stop, block):
            kb, vb = k[..., j : j + block, :], v[..., j : j + block, :]
            scores = _scores(q, kb, s)  # (..., T_q, block): one tile
            m_new = torch.maximum(m, scores.amax(-1, keepdim=True))
            alpha = torch.exp(m - m_new)
            p = torch.exp(scores - m_new)
            total = total * (alpha if rescale_sum else 1.0) + p.sum(-1, keepdim=True)
            acc = acc * (alpha if rescale_acc else 1.0) + p @ vb
            if divide_in_loop:
                acc = acc / total
            m = m_new
        return acc if divide_in_loop else acc / total

    return fn


TILED_ATTENTION_MISTAKES = [
    Mistake(
        "accumulator not rescaled",
        _tiled_variant(rescale_acc=False),
        "when the running maximum grows from m to m', the rows added to the accumulator so far "
        "were weighted by exp(S - m): multiply the accumulator by exp(m - m'), as the running "
        "sum, before adding the new tile's exp(S - m') V.",
    ),
    Mistake(
        "running sum not rescaled",
        _tiled_variant(rescale_sum=False),
        "the running sum l needs the same factor exp(m - m') as the accumulator whenever the "
        "maximum grows.",
    ),
    Mistake(
        "divided by l inside the loop",
        _tiled_variant(divide_in_loop=True),
        "divide by l once, after the last tile (o = acc / l). Dividing inside the loop without "
        "multiplying back by the old l (o = (o * l_old * alpha + P V) / l_new) divides the "
        "earlier tiles again and again.",
    ),
    Mistake(
        "last partial block dropped",
        _tiled_variant(last_block=False),
        "when T_k is not a multiple of block the last tile is shorter: range(0, T_k, block) with "
        "the slice k[..., j:j + block, :] covers it; T_k // block tiles miss it.",
    ),
    Mistake(
        "no scale",
        _tiled_variant(scale=False),
        "multiply every tile's scores by 1/sqrt(d_k), d_k = q.shape[-1], before the exponential.",
    ),
]


TILED_ATTENTION = Exercise(
    "tiled_attention",
    tiled_attention_cases,
    _attention,
    TILED_ATTENTION_MISTAKES,
    rtol=1e-7,
    atol=1e-9,
    forbidden=(*FUSED, *SOFTMAX, *TO_NUMPY),
    rule="this exercise asks for attention tile by tile, in torch, its softmax written out",
    guard=_one_tile_at_a_time,
)


def check_tiled_attention(fn: Callable[..., torch.Tensor]) -> CheckReport:
    """Check ``fn(q, k, v, block) -> (..., T_q, d_v)`` against PyTorch's attention. While ``fn``
    runs, PyTorch's attention and softmax are switched off, so is the way out to NumPy
    (``.numpy()``, ``np.asarray``, ``.tolist()``), and no tensor of any dtype may hold all
    ``T_k`` keys along one axis (unless one block holds them all)."""
    return TILED_ATTENTION.check(fn)


EXERCISES = {
    e.name: e
    for e in (
        MASKED_ATTENTION,
        MULTI_HEAD_ATTENTION,
        SOFTMAX_JACOBIAN,
        ATTENTION_BACKWARD,
        ONLINE_SOFTMAX,
        TILED_ATTENTION,
    )
}
