"""Sampling from a GPT: the filters that shape the next token's distribution, and generation.

``softmax(logits / temperature)``, then top-k (keep the ``k`` most likely tokens) and top-p (keep
the nucleus: the fewest most likely tokens whose probability reaches ``p``), then one draw; or
greedy, the most likely token. :func:`generate` repeats that step, with a :class:`KVCache` so
that each new token costs one token's computation.

Shapes: ``B`` batch, ``T`` sequence length, ``V`` vocabulary.

Derived in: Chapter 3, *Sampling* and *The KV cache*.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from dlbook.checkpoint import unwrap
from dlbook.gpt.model import GPT, KVCache
from dlbook.gpt.train import autocast as _autocast  # generate's keyword argument hides the name
from dlbook.runtime import eval_mode

__all__ = ["generate", "next_token_probs", "sample_next", "top_k_filter", "top_p_filter"]


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature}; use greedy=True for the limit "
            "temperature -> 0 (always the most likely token)"
        )


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the ``k`` largest logits of each row, set the others to ``-inf``.

    Ties are broken by index: among equal logits the lower token id ranks first (a stable sort),
    so exactly ``k`` entries of each row are kept and the entropy after softmax is at most
    ``ln k``, ties or not.

    Args:
        logits: ``(..., V)``.
        k: ``1 <= k <= V``.

    Returns:
        ``(..., V)`` with all but ``k`` entries of each row set to ``-inf``.

    Derived in: Chapter 3, *Sampling*.
    """
    V = logits.shape[-1]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= V:
        raise ValueError(f"top_k must be an integer in [1, {V}] (the vocabulary size), got {k!r}")
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices[..., : int(k)]
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, True)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability is >= p.

    Tokens are sorted by probability; a token is kept when the probability of the tokens ranked
    above it is still below ``p``. So the most likely token is always kept, and ``p = 1`` keeps
    every token of nonzero probability.

    Args:
        logits: ``(..., V)``.
        p: ``0 < p <= 1``.

    Returns:
        ``(..., V)`` with the tokens outside the nucleus set to ``-inf``.

    Derived in: Chapter 3, *Sampling* (Holtzman et al., 2020).
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)  # ties: by id
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # probability ranked strictly above
    remove_sorted = mass_before >= p
    remove_sorted[..., 0] = False
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def next_token_probs(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The distribution sampled from: ``softmax(logits / temperature)``, then top-k, top-p.

    Args:
        logits: ``(..., V)``.

    Returns:
        ``(..., V)`` float32 probabilities, each row summing to 1.

    Derived in: Chapter 3, *Sampling*.
    """
    _check_temperature(temperature)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.softmax(logits, dim=-1)


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row from ``(B, V)`` logits; ``greedy`` takes the most likely one.

    Returns:
        ``(B, 1)`` int64 token ids.

    Derived in: Chapter 3, *Sampling*.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, V), got {tuple(logits.shape)}")
    probs = next_token_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    if greedy:
        return probs.argmax(dim=-1, keepdim=True)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@torch.no_grad()
def generate(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    autocast: bool = True,
) -> torch.Tensor:
    """Continue ``(B, T0)`` prompts by ``max_new_tokens`` sampled tokens: ``(B, T0 + n)``.

    Without a cache every step runs the model on the whole (cropped) context again: step ``t``
    costs ``O(t)`` token computations and ``O(t^2)`` attention. With ``use_cache=True`` the
    prompt is run once and then only the newest token, whose keys and values are appended to a
    :class:`KVCache`. In float32 both give the same tokens for the same ``generator`` state;
    under bf16 autocast the two paths round differently and may, rarely, differ.

    A prompt longer than the context is cropped to its last ``block_size`` tokens. Once the
    sequence outgrows the context every token's position shifts, so learned absolute positions
    make a cache useless: each step then runs the last ``block_size`` tokens afresh, without one
    (what the uncached path computes anyway). Only the last position's logits are computed. On
    a GPU the model runs under bf16 autocast, as in training (:func:`dlbook.gpt.autocast`);
    ``autocast=False`` keeps it in float32.

    Derived in: Chapter 3, *Sampling* and *The KV cache*.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    _check_temperature(temperature)
    if idx.dim() != 2 or idx.shape[1] < 1:
        raise ValueError(f"idx must be a (B, T0) tensor with T0 >= 1, got {tuple(idx.shape)}")
    model = unwrap(model)  # a torch.compile'd model: use the module
    cfg = model.config
    T = cfg.block_size
    B = idx.shape[0]
    out = idx
    cache: KVCache | None = None
    precision = _autocast(idx.device) if autocast else contextlib.nullcontext()
    # the cache holds what the model computes: bf16 keys and values under bf16 autocast
    dtype = getattr(precision, "fast_dtype", None) or model.wte.weight.dtype
    with eval_mode(model):
        for _ in range(max_new_tokens):
            context = out[:, -T:]
            with precision:
                if not use_cache or out.shape[1] > T:  # past the context: no cache can help
                    logits, _ = model(context, last_only=True)
                elif cache is not None and cache.length == out.shape[1] - 1:
                    logits, _ = model(out[:, -1:], kv_cache=cache)  # only the newest token
                else:  # the first step: run the prompt once, filling the cache
                    cache = KVCache(cfg, B, device=idx.device, dtype=dtype)
                    logits, _ = model(context, kv_cache=cache, last_only=True)
            nxt = sample_next(
                logits[:, -1, :],
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                greedy=greedy,
                generator=generator,
            )
            out = torch.cat([out, nxt], dim=1)
    return out
