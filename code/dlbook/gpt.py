"""A GPT, read top to bottom: configuration, model, sampling, generation, training, checkpoints.

The model is the pre-LayerNorm decoder-only transformer of GPT-2 (Radford et al., 2019), in the
spirit of nanoGPT's ``model.py``:

    x_0 = E[tokens] + P[positions]                        token and position embeddings
    x   = x + Attn(LN_1(x))                               causal multi-head self-attention
    x   = x + MLP(LN_2(x)),  MLP(u) = W_2 GELU(W_1 u)     each of the L blocks
    logits = LN_f(x) E^T                                  weight tying: the output matrix is E

Attention itself comes from :mod:`dlbook.attention` (Chapter 2): its explicit path for teaching,
PyTorch's fused kernel otherwise. On a CUDA GPU the training step runs under bf16 autocast, and
:func:`maybe_compile` wraps the model in ``torch.compile``.

Shapes: ``B`` batch, ``T`` sequence length (at most the context ``block_size``), ``d`` width
(``n_embd``), ``h`` heads, ``L`` layers, ``V`` vocabulary.

Derived in: Chapter 3, *GPT*.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dlbook.attention import scaled_dot_product_attention

__all__ = [
    "GPT",
    "MLP",
    "Block",
    "CausalSelfAttention",
    "GPTConfig",
    "KVCache",
    "autocast",
    "configure_optimizer",
    "cosine_lr",
    "estimate_loss",
    "generate",
    "get_batch",
    "load_checkpoint",
    "maybe_compile",
    "next_token_probs",
    "param_count",
    "parameter_table",
    "sample_next",
    "save_checkpoint",
    "top_k_filter",
    "top_p_filter",
    "train_step",
]


# ----------------------------------------------------------------------------- configuration


@dataclass
class GPTConfig:
    """The sizes of a GPT.

    Attributes:
        vocab_size: ``V``, the number of distinct tokens (65 characters for tiny-shakespeare).
        block_size: ``T``, the context: the longest sequence the model reads (its number of
            position embeddings).
        n_layer: ``L``, the number of transformer blocks.
        n_head: ``h``, attention heads per block; must divide ``n_embd``.
        n_embd: ``d``, the width of the residual stream.
        dropout: dropout probability on the embeddings, on the attention weights and on each
            residual branch (nanoGPT's ``dropout``); active in training mode only.
        bias: biases in the linear layers and LayerNorms (GPT-2 has them).

    Derived in: Chapter 3, *What a GPT costs*.
    """

    vocab_size: int = 65
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                "each head gets n_embd / n_head dimensions"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def context(self) -> int:
        """Another name for ``block_size``, the context length ``T``."""
        return self.block_size


def param_count(V: int, T: int, L: int, d: int, *, bias: bool = True) -> int:
    """The number of parameters of a :class:`GPT`, from its sizes alone.

    With biases, each block holds ``12 d^2 + 13 d`` parameters (attention ``4 d^2 + 4 d``, MLP
    ``8 d^2 + 5 d``, two LayerNorms ``4 d``); the embeddings ``V d + T d``; the final LayerNorm
    ``2 d``; the output layer nothing (it is tied to the token embedding):

        N = V d + T d + L (12 d^2 + 13 d) + 2 d.

    Without biases each block holds ``12 d^2 + 2 d`` and the final LayerNorm ``d``. The number
    of heads does not appear: the heads split ``d``, they do not add to it.

    Derived in: Chapter 3, *What a GPT costs*.
    """
    for name, value in (("V", V), ("T", T), ("L", L), ("d", d)):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    per_block = 12 * d * d + (13 * d if bias else 2 * d)
    final_ln = 2 * d if bias else d
    return V * d + T * d + L * per_block + final_ln


# ----------------------------------------------------------------------------- the model


def _compiling() -> bool:
    """True while ``torch.compile`` traces the model (then data-dependent checks are skipped)."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and getattr(compiler, "is_compiling", lambda: False)())


class KVCache:
    """Keys and values of every layer for the tokens seen so far, so that generation computes
    each new token's keys and values once.

    Buffers ``k`` and ``v`` have shape ``(L, B, h, T_max, d/h)``; ``length`` tokens are filled.
    Memory: ``2 L B T_max d`` numbers (two tensors, ``h * d/h = d`` per token and layer).
    The buffers take the dtype of the first keys stored: under bf16 autocast the model makes
    bf16 keys and values, and the cache holds them as bf16 (half the memory of float32).

    Derived in: Chapter 3, *The KV cache*.
    """

    def __init__(
        self,
        config: GPTConfig,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        c = config
        shape = (c.n_layer, batch_size, c.n_head, c.block_size, c.n_embd // c.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0
        self.capacity = c.block_size

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``(B, h, t, d/h)`` keys and values at ``self.length``; return all so far.

        The caller advances ``length`` once all layers have been updated (see :meth:`advance`).
        """
        start, stop = self.length, self.length + k.shape[2]
        if k.dtype != self.k.dtype:
            if start:
                raise ValueError(
                    f"the KV cache holds {self.k.dtype} keys, but {k.dtype} keys were added: "
                    "run every step of one generation under the same autocast"
                )
            self.k = self.k.to(k.dtype)  # empty so far: adopt the dtype the model computes in
            self.v = self.v.to(k.dtype)
        if stop > self.capacity:
            raise ValueError(
                f"the KV cache holds at most {self.capacity} tokens (the context), "
                f"but {stop} were asked for"
            )
        self.k[layer, :, :, start:stop] = k
        self.v[layer, :, :, start:stop] = v
        return self.k[layer, :, :, :stop], self.v[layer, :, :, :stop]

    def advance(self, t: int) -> None:
        self.length += t

    def nbytes(self) -> int:
        """Bytes held by the two buffers."""
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position ``i`` attends to positions ``j <= i``.

    Input and output ``(B, T, d)``. One linear layer makes queries, keys and values for all
    heads at once (``d -> 3d``); the heads are concatenated and projected back (``d -> d``).

    Derived in: Chapter 3, *The GPT* (attention itself: Chapter 2).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)  # on the output projection
        self.attn_dropout = config.dropout  # on the attention weights, in training mode
        self.explicit = False  # True: the step-by-step path of dlbook.attention

    def forward(
        self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # 3 x (B, T, d)
        # (B, T, d) -> (B, h, T, d/h): each head attends in its own d/h dimensions
        q, k, v = (z.view(B, T, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        if kv_cache is None:
            p = self.attn_dropout if self.training else 0.0
            y = scaled_dot_product_attention(
                q, k, v, is_causal=True, explicit=self.explicit, dropout_p=p
            )
        else:
            past = kv_cache.length
            k, v = kv_cache.update(layer, k, v)  # (B, h, past + T, d/h)
            if T == 1:  # the newest token may look at everything before it
                y = scaled_dot_product_attention(q, k, v, explicit=self.explicit)
            else:  # new query i sits at position past + i: bottom-right aligned causal mask
                mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past)
                y = scaled_dot_product_attention(q, k, v, mask=mask, explicit=self.explicit)
        y = y.transpose(1, 2).reshape(B, T, d)  # concatenate the heads
        return self.dropout(self.proj(y))


class MLP(nn.Module):
    """``(B, T, d) -> (B, T, d)``: ``W_2 GELU(W_1 u + b_1) + b_2`` with a hidden width ``4d``.

    Derived in: Chapter 3, *The GPT*.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """A pre-LayerNorm transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``.

    Derived in: Chapter 3, *The GPT*.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache, layer)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """A decoder-only transformer language model.

    ``model(idx)`` maps ``(B, T)`` int64 token ids, ``T <= block_size``, to ``(B, T, V)``
    logits: the logits at position ``t`` are the model's prediction of token ``t + 1`` and
    depend only on tokens ``0..t``. ``model(idx, targets)`` also returns the mean cross-entropy.

    Derived in: Chapter 3, *GPT*.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding E, (V, d)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)  # position embedding, (T, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: one (V, d) matrix, used twice
        self.apply(self._init_weights)
        # GPT-2: the projections that write into the residual stream start smaller, 1/sqrt(2L),
        # so that the stream's variance does not grow with depth at initialisation.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """``sum(p.numel())`` over distinct parameters (the tied matrix counts once).

        ``non_embedding=True`` leaves out the token and position embeddings, as Kaplan et al.
        (2020) count ``N``.
        """
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied one once
        if non_embedding:
            n -= self.wte.weight.numel() + self.wpe.weight.numel()
        return n

    def _check_idx(self, idx: torch.Tensor, offset: int = 0) -> None:
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
            got = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ValueError(f"idx must be a (B, T) tensor of token ids, got {got}")
        if idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"idx must hold integer token ids, got dtype {idx.dtype}")
        T = idx.shape[1]
        if T < 1:
            raise ValueError("idx must hold at least one token per row")
        if offset + T > self.config.block_size:
            raise ValueError(
                f"sequence of length {offset + T} is longer than the context "
                f"block_size={self.config.block_size}; crop it to the last "
                f"{self.config.block_size} tokens"
            )
        # The value check reads the ids: free on the CPU, but on a CUDA GPU it would make every
        # step wait for the device (a synchronisation); there an id out of range fails in the
        # embedding instead (a device-side assert). Devices without values (meta) skip it too.
        if idx.device.type not in ("cpu", "mps") or _compiling():
            return
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.config.vocab_size):
            raise ValueError(
                f"token ids must be in [0, {self.config.vocab_size}), got values in "
                f"[{int(idx.min())}, {int(idx.max())}]"
            )

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        kv_cache: KVCache | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(B, T, V)`` and, given ``(B, T)`` targets, the mean cross-entropy (nats).

        With a ``kv_cache`` holding ``n`` tokens, ``idx`` continues them: its tokens sit at
        positions ``n .. n + T - 1``, and the cache grows by ``T``. ``last_only=True`` computes
        the logits of the last position alone, ``(B, 1, V)``: all that sampling needs.
        """
        if last_only and targets is not None:
            raise ValueError("last_only=True gives no loss: the targets need every position")
        offset = kv_cache.length if kv_cache is not None else 0
        self._check_idx(idx, offset)
        T = idx.shape[1]
        pos = torch.arange(offset, offset + T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, d)
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache, i)
        if kv_cache is not None:
            kv_cache.advance(T)
        if last_only:
            x = x[:, -1:, :]  # (B, 1, d)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(
                    f"targets must have the shape of idx {tuple(idx.shape)}, "
                    f"got {tuple(targets.shape)}"
                )
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


# ----------------------------------------------------------------------------- sampling


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature}; use greedy=True for the limit "
            "temperature -> 0 (always the most likely token)"
        )


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row, set the others to ``-inf``.

    Args:
        logits: ``(..., V)``.
        k: ``1 <= k <= V``.

    Returns:
        ``(..., V)``; ties with the ``k``-th largest value are kept.

    Derived in: Chapter 3, *Sampling*.
    """
    V = logits.shape[-1]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= V:
        raise ValueError(f"top_k must be an integer in [1, {V}] (the vocabulary size), got {k!r}")
    kth = torch.topk(logits, int(k), dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


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
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
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
    a GPU the model runs under bf16 autocast, as in training (:func:`autocast`);
    ``autocast=False`` keeps it in float32.

    Derived in: Chapter 3, *Sampling* and *The KV cache*.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    _check_temperature(temperature)
    if idx.dim() != 2 or idx.shape[1] < 1:
        raise ValueError(f"idx must be a (B, T0) tensor with T0 >= 1, got {tuple(idx.shape)}")
    model = getattr(model, "_orig_mod", model)  # a torch.compile'd model: use the module
    was_training = model.training
    model.eval()
    cfg = model.config
    T = cfg.block_size
    B = idx.shape[0]
    out = idx
    cache: KVCache | None = None
    try:
        precision = _autocast(idx.device) if autocast else contextlib.nullcontext()
        # the cache holds what the model computes: bf16 keys and values under bf16 autocast
        dtype = getattr(precision, "fast_dtype", None) or model.wte.weight.dtype
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
    finally:
        model.train(was_training)
    return out


# ----------------------------------------------------------------------------- training


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of a 1-D token tensor: inputs and next-token targets.

    Returns:
        ``x, y``, both ``(B, T)`` int64 with ``y[:, t] = x[:, t + 1]`` in the text, i.e. ``y``
        is ``x`` shifted left by one.

    Derived in: Chapter 3, *Maximum likelihood is cross-entropy*.
    """
    if not isinstance(data, torch.Tensor) or data.dim() != 1:
        got = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise ValueError(f"data must be a 1-D tensor of token ids, got {got}")
    if batch_size < 1 or block_size < 1:
        raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size}, {block_size}")
    if len(data) <= block_size:
        raise ValueError(
            f"data holds {len(data)} tokens; windows of block_size={block_size} need at least "
            f"{block_size + 1}"
        )
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size + 1)
    windows = data[starts[:, None] + offsets]  # (B, T + 1)
    x, y = windows[:, :-1], windows[:, 1:]
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


AUTOCAST_ENV = "DLBOOK_AUTOCAST"


def autocast(device: torch.device | str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (matrix products in bfloat16, reductions in float32); nothing on
    other devices, where the model runs in float32.

    The environment variable ``DLBOOK_AUTOCAST`` overrides the choice: ``bf16`` autocasts on any
    device (on a CPU too: how the book's tests rehearse the GPU's mixed precision), ``off``
    never does.
    """
    device = torch.device(device)
    wanted = os.environ.get(AUTOCAST_ENV, "").strip().lower()
    if wanted not in ("", "bf16", "off"):
        raise ValueError(f"{AUTOCAST_ENV} must be 'bf16' or 'off', got {wanted!r}")
    on = wanted == "bf16" or (wanted == "" and device.type == "cuda")
    if on and device.type in ("cuda", "cpu"):  # the devices whose bf16 autocast the book uses
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


_autocast = autocast  # generate's keyword argument hides the function inside it


def configure_optimizer(
    model: nn.Module,
    *,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.99),
) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices (linear weights and embeddings, as in nanoGPT)
    and none on the vectors (biases, LayerNorm gains and biases).

    Derived in: Chapter 3, *Training*.
    """
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def cosine_lr(step: int, *, max_lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Linear warm-up to ``max_lr`` over ``warmup`` steps, then a cosine decay to ``min_lr`` at
    ``total`` steps (and ``min_lr`` after)."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float | None = None,
    grad_clip: float | None = 1.0,
) -> torch.Tensor:
    """One optimisation step on a batch: forward, cross-entropy, backward, clip, update.

    Args:
        x, y: ``(B, T)`` inputs and targets (from :func:`get_batch`).
        lr: set the learning rate of every parameter group first (e.g. from :func:`cosine_lr`).
        grad_clip: clip the gradients' global norm to this (None: no clipping).

    Returns:
        The batch's mean cross-entropy in nats, before the update, as a 0-dim tensor on the
        model's device. The step reads nothing back to the host (on a GPU that would make it wait
        for the device every step); ``float(loss)`` does, so read it only when logging, as
        :func:`dlbook.train.train_loop` does every ``log_every`` steps.

    Derived in: Chapter 3, *Training*.
    """
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    if not model.training:
        model.train()
    # Free the last step's gradients before the forward pass, not after it: measured 2-3% faster
    # on a CPU (benchmarks/gpt.py), as the forward pass then runs without them in memory.
    optimizer.zero_grad(set_to_none=True)
    with autocast(x.device):
        _, loss = model(x, y)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def estimate_loss(
    model: nn.Module,
    splits: dict[str, torch.Tensor],
    *,
    batch_size: int,
    block_size: int | None = None,
    iters: int = 20,
    seed: int = 1234,
) -> dict[str, float]:
    """Mean cross-entropy (nats per token) on ``iters`` random batches of each split.

    The batches are drawn from a generator of their own, seeded with ``seed``: every call sees
    the same windows (estimates at different steps are comparable), and the global random state
    used by training is left untouched.

    Args:
        splits: e.g. ``{"train": corpus.train, "val": corpus.val}``, 1-D token tensors.
        block_size: window length (default: the model's context).

    Returns:
        ``{name: loss}``.

    Derived in: Chapter 3, *Maximum likelihood is cross-entropy*.
    """
    inner = getattr(model, "_orig_mod", model)
    block_size = block_size or inner.config.block_size
    device = next(inner.parameters()).device
    was_training = model.training
    model.eval()
    out = {}
    try:
        for name, data in splits.items():
            gen = torch.Generator().manual_seed(seed)
            total = torch.zeros((), device=device)
            for _ in range(iters):
                x, y = get_batch(data, batch_size, block_size, device=device, generator=gen)
                with autocast(device):
                    _, loss = model(x, y)
                total += loss.float()  # summed on the device: one read at the end
            out[name] = float(total) / iters
    finally:
        model.train(was_training)
    return out


def maybe_compile(model: nn.Module, enabled: bool | None = None) -> nn.Module:
    """``torch.compile(model)`` when ``enabled`` (default: on CUDA only); else the model.

    Compilation takes a minute and pays off only on long GPU runs. Checkpoints and
    :func:`generate` unwrap the compiled module (``model._orig_mod``) themselves.
    """
    if enabled is None:
        enabled = next(model.parameters()).is_cuda
    return torch.compile(model) if enabled else model


# ----------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": _numpy_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    step: int = 0,
    extra: dict | None = None,
) -> Path:
    """Save what an exact resume needs: weights, optimiser state, random states, step, config.

    ``extra`` holds anything else made of tensors, numbers, strings, lists and dicts (e.g. the
    losses so far); it is stored as is. The file loads with ``torch.load(weights_only=True)``.

    Derived in: Chapter 3, *Training* (checkpoints).
    """
    inner = getattr(model, "_orig_mod", model)
    ckpt = {
        "model": inner.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": _rng_state(),
        "step": int(step),
        "config": asdict(inner.config) if hasattr(inner, "config") else None,
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)  # atomic: a crash never leaves half a checkpoint
    return path


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    restore_rng: bool = True,
    map_location: torch.device | str | None = None,
) -> dict:
    """Load a :func:`save_checkpoint` file into ``model`` (and ``optimizer``), restore the
    random states, and return ``{"step": ..., "config": ..., "extra": ...}``.

    Raises:
        ValueError: the checkpoint was saved from a model of another configuration.

    Derived in: Chapter 3, *Training* (checkpoints).
    """
    inner = getattr(model, "_orig_mod", model)
    if map_location is None:
        map_location = next(inner.parameters()).device
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    saved = ckpt.get("config")
    if saved is not None and hasattr(inner, "config") and saved != asdict(inner.config):
        raise ValueError(
            f"checkpoint {path} holds a model with config {saved}, but the model given has "
            f"config {asdict(inner.config)}"
        )
    inner.load_state_dict(ckpt["model"])
    if optimizer is not None:
        if ckpt["optimizer"] is None:
            raise ValueError(f"checkpoint {path} holds no optimiser state")
        optimizer.load_state_dict(ckpt["optimizer"])
    if restore_rng:
        rng = ckpt["rng"]
        rng["torch"] = rng["torch"].cpu()
        if "cuda" in rng:
            rng["cuda"] = [s.cpu() for s in rng["cuda"]]
        _set_rng_state(rng)
    return {"step": ckpt["step"], "config": saved, "extra": ckpt["extra"]}


def parameter_table(model: nn.Module) -> Iterator[tuple[str, tuple[int, ...], int]]:
    """``(name, shape, numel)`` of each distinct parameter; a tied matrix appears once."""
    for name, p in model.named_parameters():
        yield name, tuple(p.shape), p.numel()
