"""Scaled dot-product attention: an explicit path for teaching, PyTorch's fused kernel for models.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

where ``M`` is 0 where a query may look at a key and -inf where it may not. The explicit path
computes exactly that, and can return the attention weights; the fused path calls
``torch.nn.functional.scaled_dot_product_attention`` (FlashAttention or memory-efficient kernels on
a GPU), which computes the same function without materialising the T_q x T_k weight matrix.

Masks are boolean with PyTorch's convention: ``True`` means *may attend*.

Derived in: Chapter 2, *Scaled dot-product attention* and *Masks*.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["causal_mask", "padding_mask", "scaled_dot_product_attention"]


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

    Returns:
        ``(..., T_q, d_v)``, and the weights if ``return_weights``.

    Derived in: Chapter 2, *Scaled dot-product attention*.
    """
    _validate(q, k, v, mask, is_causal, scale)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if not (explicit or return_weights):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale
        )
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T_q, T_k)
    if is_causal:
        mask = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # each row sums to 1 over the keys
    out = weights @ v  # (..., T_q, d_v)
    return (out, weights) if return_weights else out
