"""The GPT model, read top to bottom: configuration, parameter count, KV cache, attention, MLP,
block, model.

The model is the pre-LayerNorm decoder-only transformer of GPT-2 (Radford et al., 2019), in the
spirit of nanoGPT's ``model.py``:

    x_0 = E[tokens] + P[positions]                        token and position embeddings
    x   = x + Attn(LN_1(x))                               causal multi-head self-attention
    x   = x + MLP(LN_2(x)),  MLP(u) = W_2 GELU(W_1 u)     each of the L blocks
    logits = LN_f(x) E^T                                  weight tying: the output matrix is E

Attention itself comes from :mod:`dlbook.attention` (Chapter 2): its explicit path for teaching,
PyTorch's fused kernel otherwise. Sampling and generation are in :mod:`dlbook.gpt.sample`, the
training helpers in :mod:`dlbook.gpt.train`.

Shapes: ``B`` batch, ``T`` sequence length (at most the context ``block_size``), ``d`` width
(``n_embd``), ``h`` heads, ``L`` layers, ``V`` vocabulary.

Derived in: Chapter 3, *GPT*.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dlbook.attention import scaled_dot_product_attention
from dlbook.runtime import resolve_device

__all__ = [
    "GPT",
    "MLP",
    "Block",
    "CausalSelfAttention",
    "GPTConfig",
    "KVCache",
    "param_count",
    "parameter_table",
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
    ``device=None`` means :func:`dlbook.device`; :func:`~dlbook.gpt.generate` passes the
    prompt's.

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
        device = resolve_device(device)
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


def parameter_table(model: nn.Module) -> Iterator[tuple[str, tuple[int, ...], int]]:
    """``(name, shape, numel)`` of each distinct parameter; a tied matrix appears once."""
    for name, p in model.named_parameters():
        yield name, tuple(p.shape), p.numel()
