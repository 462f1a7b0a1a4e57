"""Scaled dot-product attention: an explicit path for teaching, PyTorch's fused kernel for models.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

where ``M`` is 0 where a query may look at a key and -inf where it may not. The explicit path
computes exactly that, and can return the attention weights; the fused path calls
``torch.nn.functional.scaled_dot_product_attention`` (FlashAttention or memory-efficient kernels on
a GPU), which computes the same function without materialising the T_q x T_k weight matrix.

Masks are boolean with PyTorch's convention: ``True`` means *may attend*.

The module then builds, top to bottom, what the chapter derives from that formula: the softmax
Jacobian and the backward pass of attention written out by hand, sinusoidal and rotary (RoPE)
position encodings, the :class:`MultiHeadAttention` module (interchangeable with
``torch.nn.MultiheadAttention``), and the online softmax with the tiled ("flash") attention it
makes exact. It stays one file (about 500 lines) because it follows the chapter section by
section, and each part uses the one before it.

Derived in: Chapter 2, *Scaled dot-product attention* and *Masks*.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MultiHeadAttention",
    "attention_backward",
    "causal_mask",
    "online_softmax",
    "padding_mask",
    "rope",
    "scaled_dot_product_attention",
    "sinusoidal_positions",
    "softmax_jacobian",
    "tiled_attention",
]


def causal_mask(
    t_q: int, t_k: int | None = None, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """``(t_q, t_k)`` bool: query ``i`` may attend key ``j`` iff ``j <= i``, as ``is_causal``.

    With ``t_q != t_k`` the mask is aligned at the top-left, as ``is_causal=True`` is in
    ``torch.nn.functional.scaled_dot_product_attention``.
    """
    t_k = t_q if t_k is None else t_k
    if t_q < 1 or t_k < 1:
        raise ValueError(f"mask sizes must be >= 1, got t_q={t_q}, t_k={t_k}")
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """``(B, 1, t)`` bool from ``(B,)`` lengths: key ``j`` of row ``b`` is real iff ``j < len``.

    The middle axis of size 1 broadcasts over the queries, so the mask can be passed directly as
    ``mask`` for scores of shape ``(B, t_q, t)``; add a head axis (``mask[:, None]``) for
    ``(B, h, t_q, t)``.
    """
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    if (lengths < 1).any() or (lengths > t).any():
        raise ValueError(f"every length must be in [1, {t}], got {lengths.tolist()}")
    return (torch.arange(t, device=lengths.device)[None, :] < lengths[:, None])[:, None, :]


def _validate(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool,
    scale: float | None,
) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., T, d), got {tuple(t.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dimension d_k: q has shape {tuple(q.shape)}, "
            f"k has shape {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of keys T_k: k has shape {tuple(k.shape)}, "
            f"v has shape {tuple(v.shape)}"
        )
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"the leading (batch, head) dimensions of q {tuple(q.shape)}, k {tuple(k.shape)} "
            f"and v {tuple(v.shape)} do not broadcast"
        ) from None
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if scale is not None and not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if mask is not None:
        if is_causal:
            raise ValueError("give either mask or is_causal=True, not both (combine them with &)")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor (True = may attend), got {mask.dtype}")
        scores_shape = (*batch, q.shape[-2], k.shape[-2])
        try:
            if torch.broadcast_shapes(mask.shape, scores_shape) != scores_shape:
                raise RuntimeError
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
                f"{scores_shape} (..., T_q, T_k)"
            ) from None


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    explicit: bool = False,
    return_weights: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``softmax(q k^T * scale + M) v`` with ``scale = 1/sqrt(d_k)`` by default.

    Args:
        q: ``(..., T_q, d_k)`` queries.
        k: ``(..., T_k, d_k)`` keys.
        v: ``(..., T_k, d_v)`` values. Leading dimensions (batch, heads) broadcast.
        mask: bool, broadcastable to ``(..., T_q, T_k)``; ``True`` = may attend.
        is_causal: apply :func:`causal_mask` (top-left aligned, as PyTorch does).
        scale: multiplies the scores; default ``1 / sqrt(d_k)``.
        explicit: compute the scores, the softmax and the weighted sum step by step (the teaching
            path) instead of calling PyTorch's fused kernel.
        return_weights: also return the ``(..., T_q, T_k)`` attention weights (explicit path).
        dropout_p: dropout on the attention weights (a training-time regulariser, as in GPT-2 and
            nanoGPT); the caller passes 0 in evaluation. The returned weights are before dropout.

    Returns:
        ``(..., T_q, d_v)``, and the weights if ``return_weights``.

    Derived in: Chapter 2, *Scaled dot-product attention*.
    """
    _validate(q, k, v, mask, is_causal, scale)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if not (explicit or return_weights):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale, dropout_p=dropout_p
        )
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T_q, T_k)
    if is_causal:
        mask = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # each row sums to 1 over the keys
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    out = dropped @ v  # (..., T_q, d_v)
    return (out, weights) if return_weights else out


# ----------------------------------------------------------------------------- gradients


def softmax_jacobian(z: torch.Tensor) -> torch.Tensor:
    """``(..., n, n)`` Jacobian of ``p = softmax(z)`` over the last axis: ``diag(p) - p p^T``.

    Entry ``(i, j)`` is ``dp_i / dz_j = p_i ([i = j] - p_j)``. It is symmetric, and each row sums
    to 0 (adding a constant to every score changes nothing).

    Args:
        z: ``(..., n)`` scores.

    Derived in: Chapter 2, *The softmax Jacobian*.
    """
    if not isinstance(z, torch.Tensor) or z.dim() < 1:
        raise ValueError(f"z must be a tensor of shape (..., n), got {getattr(z, 'shape', z)}")
    p = torch.softmax(z, dim=-1)
    return torch.diag_embed(p) - p[..., :, None] * p[..., None, :]


def attention_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grad_out: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients ``(dL/dq, dL/dk, dL/dv)`` of attention, by the chapter's formulas.

    With ``S = s q k^T + M``, ``P = softmax(S)`` and ``O = P v``, given ``dO = dL/dO``:

        dv = P^T dO,    dP = dO v^T,    dS = P * (dP - rowsum(dO * O)),
        dq = s dS k,    dk = s dS^T q.

    Args:
        q, k, v, mask, is_causal, scale: as in :func:`scaled_dot_product_attention`.
        grad_out: ``(..., T_q, d_v)``, the gradient of the loss with respect to the output.

    Returns:
        Three tensors with the shapes of ``q``, ``k`` and ``v`` (before broadcasting).

    Derived in: Chapter 2, *The backward pass of attention*.
    """
    out, p = scaled_dot_product_attention(
        q, k, v, mask=mask, is_causal=is_causal, scale=scale, return_weights=True
    )
    if grad_out.shape != out.shape:
        raise ValueError(
            f"grad_out must have the output's shape {tuple(out.shape)}, got {tuple(grad_out.shape)}"
        )
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    dv = p.transpose(-2, -1) @ grad_out  # (..., T_k, d_v)
    dp = grad_out @ v.transpose(-2, -1)  # (..., T_q, T_k)
    row = (grad_out * out).sum(-1, keepdim=True)  # = rowsum(dP * P), (..., T_q, 1)
    ds = p * (dp - row)  # softmax's vector-Jacobian product; 0 where masked (p = 0)
    dq = s * ds @ k  # (..., T_q, d_k)
    dk = s * ds.transpose(-2, -1) @ q  # (..., T_k, d_k)

    def unbroadcast(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        while g.dim() > like.dim():
            g = g.sum(0)
        dims = [i for i, n in enumerate(like.shape) if n == 1 and g.shape[i] != 1]
        return g.sum(dims, keepdim=True) if dims else g

    return unbroadcast(dq, q), unbroadcast(dk, k), unbroadcast(dv, v)


# ----------------------------------------------------------------------------- positions


def sinusoidal_positions(t: int, d: int, *, base: float = 10000.0) -> torch.Tensor:
    """``(t, d)`` sinusoidal position encodings of Vaswani et al. (2017).

    ``PE[p, 2i] = sin(p / base^(2i/d))`` and ``PE[p, 2i+1] = cos(p / base^(2i/d))``.

    Derived in: Chapter 2, *Positions*.
    """
    if t < 1 or d < 2 or d % 2:
        raise ValueError(f"need t >= 1 and an even d >= 2, got t={t}, d={d}")
    pos = torch.arange(t, dtype=torch.float64)[:, None]  # (t, 1)
    freq = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
    pe = torch.empty(t, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe.float()


def rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (RoPE, Su et al. 2021): rotate each pair of features of ``x``.

    The features ``(2i, 2i+1)`` of the vector at position ``m`` are rotated by the angle
    ``m * w_i`` with ``w_i = base^(-2i/d)``, the frequencies of :func:`sinusoidal_positions`:

        out[..., 2i]   = x[..., 2i] cos(m w_i) - x[..., 2i+1] sin(m w_i)
        out[..., 2i+1] = x[..., 2i] sin(m w_i) + x[..., 2i+1] cos(m w_i)

    Applied to queries at positions ``m`` and keys at positions ``n``, the dot product of a
    rotated query and a rotated key depends on the positions only through ``n - m``. Rotations
    keep lengths, and position 0 is left unchanged.

    Args:
        x: ``(..., T, d)`` queries or keys, ``d`` even; a floating dtype.
        positions: the position of each vector, broadcastable to ``(..., T)`` (e.g. ``(T,)``);
            integers or floats.
        base: the base of the frequencies (10000 in the paper and in most models).

    Returns:
        ``(..., T, d)``, the rotated ``x``, same dtype (the angles are computed in float64).

    Derived in: Chapter 2, *Rotary position embeddings*.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not x.is_floating_point():
        got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else x
        raise ValueError(f"x must be a floating tensor of shape (..., T, d), got {got}")
    d = x.shape[-1]
    if d < 2 or d % 2:
        raise ValueError(f"the last dimension d of x must be even (pairs are rotated), got d={d}")
    if not base > 0:
        raise ValueError(f"base must be > 0, got {base}")
    positions = torch.as_tensor(positions, device=x.device)
    if positions.is_complex() or positions.dtype == torch.bool:
        raise ValueError(f"positions must be integers or floats, got {positions.dtype}")
    try:
        torch.broadcast_shapes(positions.shape, x.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"positions of shape {tuple(positions.shape)} do not broadcast to x's (..., T) = "
            f"{tuple(x.shape[:-1])}"
        ) from None
    freq = base ** (-torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d)  # (d/2,)
    angle = positions.to(torch.float64)[..., None] * freq  # (..., T, d/2)
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., T, d/2): the two coordinates of each pair
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (..., T, d/2, 2)
    return rotated.flatten(-2)  # pairs back in place: (..., T, d)


# ----------------------------------------------------------------------------- multi-head


class MultiHeadAttention(nn.Module):
    """Multi-head attention: ``h`` heads of width ``d/h`` in parallel, concatenated, projected.

    ``head_i = Attention(X_q W_q^(i)T, X_kv W_k^(i)T, X_kv W_v^(i)T)`` and
    ``MHA = concat(head_1, ..., head_h) W_o^T + b_o``. The four projections are ``nn.Linear(d, d)``
    whose output rows ``i d/h .. (i+1) d/h`` belong to head ``i``, the layout of
    ``torch.nn.MultiheadAttention``; :meth:`load_torch` copies the weights of one.
    Parameters: ``4 d^2 + 4 d`` (with biases). ``scale`` multiplies the scores (default
    ``1/sqrt(d/h)``; ``1.0`` is attention without the scale, for the chapter's comparison).

    Derived in: Chapter 2, *Multi-head attention*.
    """

    def __init__(
        self,
        d: int,
        h: int,
        *,
        bias: bool = True,
        explicit: bool = False,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if d < 1 or h < 1 or d % h:
            raise ValueError(f"the number of heads h must divide the width d, got d={d}, h={h}")
        if scale is not None and not (isinstance(scale, (int, float)) and scale > 0):
            raise ValueError(f"scale must be a positive number or None, got {scale!r}")
        self.d, self.h, self.explicit, self.scale = d, h, explicit, scale
        self.q_proj = nn.Linear(d, d, bias=bias)
        self.k_proj = nn.Linear(d, d, bias=bias)
        self.v_proj = nn.Linear(d, d, bias=bias)
        self.out_proj = nn.Linear(d, d, bias=bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, d) -> (B, h, T, d/h)``: head ``i`` gets features ``i d/h .. (i+1) d/h``."""
        b, t, _ = x.shape
        return x.view(b, t, self.h, self.d // self.h).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, h, T, d/h) -> (B, T, d)``: concatenate the heads, the inverse of split_heads."""
        b, _, t, _ = x.shape
        return x.transpose(1, 2).reshape(b, t, self.d)

    def forward(
        self,
        x_q: torch.Tensor,
        x_kv: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend from ``x_q`` ``(B, T_q, d)`` to ``x_kv`` ``(B, T_k, d)`` (default: ``x_q``).

        Args:
            mask: bool, broadcastable to ``(B, h, T_q, T_k)``, ``True`` = may attend (the
                opposite of ``nn.MultiheadAttention``'s ``attn_mask``). A ``(B, 1, T_k)``
                :func:`padding_mask` is accepted and given its head axis.
            is_causal: query ``i`` attends keys ``j <= i``.
            need_weights: also return the ``(B, h, T_q, T_k)`` weights of every head.

        Returns:
            ``(B, T_q, d)``, and the weights if ``need_weights``.
        """
        x_kv = x_q if x_kv is None else x_kv
        for name, x in (("x_q", x_q), ("x_kv", x_kv)):
            if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.d:
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"{name} must have shape (B, T, d={self.d}), got {got}")
        if x_q.shape[0] != x_kv.shape[0]:
            raise ValueError(
                f"x_q {tuple(x_q.shape)} and x_kv {tuple(x_kv.shape)} have different batch sizes"
            )
        if mask is not None and mask.dim() == 3:
            mask = mask[:, None]  # (B, T_q or 1, T_k) -> (B, 1, T_q or 1, T_k): same for all heads
        q = self.split_heads(self.q_proj(x_q))  # (B, h, T_q, d/h)
        k = self.split_heads(self.k_proj(x_kv))  # (B, h, T_k, d/h)
        v = self.split_heads(self.v_proj(x_kv))  # (B, h, T_k, d/h)
        res = scaled_dot_product_attention(
            q,
            k,
            v,
            mask=mask,
            is_causal=is_causal,
            explicit=self.explicit,
            scale=self.scale,
            return_weights=need_weights,
        )
        out, weights = res if need_weights else (res, None)
        out = self.out_proj(self.merge_heads(out))  # (B, T_q, d)
        return (out, weights) if need_weights else out

    @torch.no_grad()
    def load_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``torch.nn.MultiheadAttention(d, h)`` into this module.

        PyTorch stacks the three input projections in ``in_proj_weight`` ``(3d, d)`` (rows
        ``0..d`` for queries, then keys, then values) and ``in_proj_bias`` ``(3d,)``.
        """
        if mha.embed_dim != self.d or mha.num_heads != self.h:
            raise ValueError(
                f"expected nn.MultiheadAttention(d={self.d}, h={self.h}), "
                f"got d={mha.embed_dim}, h={mha.num_heads}"
            )
        if mha.in_proj_weight is None:
            raise ValueError("nn.MultiheadAttention with kdim/vdim != d is not supported")
        for i, lin in enumerate((self.q_proj, self.k_proj, self.v_proj)):
            lin.weight.copy_(mha.in_proj_weight[i * self.d : (i + 1) * self.d])
            if lin.bias is not None:
                lin.bias.copy_(mha.in_proj_bias[i * self.d : (i + 1) * self.d])
        self.out_proj.weight.copy_(mha.out_proj.weight)
        if self.out_proj.bias is not None:
            self.out_proj.bias.copy_(mha.out_proj.bias)
        return self


# ----------------------------------------------------------------------------- online softmax


def online_softmax(x: torch.Tensor, block: int = 32) -> torch.Tensor:
    """Softmax over the last axis, reading ``x`` one block of ``block`` entries at a time.

    Keeps a running maximum ``m`` and a running sum ``l = sum exp(x_j - m)``; when a block raises
    the maximum to ``m'``, the old sum is rescaled by ``exp(m - m')``. After the last block
    ``l`` is exactly the softmax's denominator, and a second pass writes ``exp(x - m) / l``.

    Derived in: Chapter 2, *The online softmax*.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"x must be a tensor of shape (..., n) with n >= 1, got {x!r}")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    m = torch.full(x.shape[:-1], float("-inf"), dtype=x.dtype, device=x.device)
    s = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    for j in range(0, x.shape[-1], block):
        xb = x[..., j : j + block]
        m_new = torch.maximum(m, xb.amax(-1))
        s = s * torch.exp(m - m_new) + torch.exp(xb - m_new[..., None]).sum(-1)
        m = m_new
    return torch.exp(x - m[..., None]) / s[..., None]


def tiled_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    block: int = 64,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention computed over blocks of ``block`` keys, never holding the ``T_q x T_k`` weights.

    The idea of FlashAttention's forward pass, written for clarity, not speed: for each key block
    the scores ``S_j`` are formed, the running max ``m`` and sum ``l`` are updated as in
    :func:`online_softmax`, and the unnormalised output ``acc`` is rescaled by the same factor
    ``exp(m - m')`` before ``exp(S_j - m') V_j`` is added. ``acc / l`` is then exact.

    Args:
        q, k, v, is_causal, scale: as in :func:`scaled_dot_product_attention` (no general mask).
        block: keys per block.

    Returns:
        ``(..., T_q, d_v)``, equal to :func:`scaled_dot_product_attention` up to rounding.

    Derived in: Chapter 2, *Tiling: the idea behind fused attention*.
    """
    _validate(q, k, v, None, is_causal, scale)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    t_q, t_k = q.shape[-2], k.shape[-2]
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    m = torch.full((*batch, t_q, 1), float("-inf"), dtype=q.dtype, device=q.device)
    l = torch.zeros((*batch, t_q, 1), dtype=q.dtype, device=q.device)  # noqa: E741
    acc = torch.zeros((*batch, t_q, v.shape[-1]), dtype=q.dtype, device=q.device)
    rows = torch.arange(t_q, device=q.device)[:, None]
    for j in range(0, t_k, block):
        if is_causal and j > t_q - 1:
            break  # every later key is in the future of every query
        kb, vb = k[..., j : j + block, :], v[..., j : j + block, :]
        scores = (q @ kb.transpose(-2, -1)) * s  # (..., T_q, block): one tile
        if is_causal:
            cols = torch.arange(j, j + kb.shape[-2], device=q.device)[None, :]
            scores = scores.masked_fill(cols > rows, float("-inf"))
        m_new = torch.maximum(m, scores.amax(-1, keepdim=True))
        alpha = torch.exp(m - m_new)  # rescales what was summed under the old maximum
        p = torch.exp(scores - m_new)
        l = l * alpha + p.sum(-1, keepdim=True)  # noqa: E741
        acc = acc * alpha + p @ vb
        m = m_new
    return acc / l
