"""A GPT with switches: the chapter's model with each piece removable, for the ablation ladder.

:class:`LadderLM` is :class:`dlbook.gpt.GPT` built from the same classes, with flags in
:class:`LadderConfig` that take pieces out or put the popular articles' mistakes in:

- ``attention``: ``"none"`` (no attention: with no MLP either, a bigram model), ``"single"``
  (one head of width ``d``) or ``"multi"`` (``n_head`` heads);
- ``mlp``: the MLP sublayer; ``mlp_out_relu``: a ReLU on its output (an error);
- ``residual``: ``x + F(x)`` or ``F(x)`` for each sublayer;
- ``layernorm``: the LayerNorms (the two of each block and the final one), with ``ln_eps``
  (``0`` is the error of a LayerNorm without epsilon);
- ``positions``: the learned position embeddings;
- ``causal``: the causal mask; ``False`` makes the bidirectional attention of a masked language
  model (BERT);
- ``dropout``: as :class:`~dlbook.gpt.GPTConfig`'s; ``tie_weights``: output matrix = ``E``.

With every piece on, no error switched on and ``causal=True`` it is :class:`~dlbook.gpt.GPT`:
the same parameter names (a GPT's state dict loads into it, and back), the same initialisation
draws (same seed, same weights), the same logits (``tests/test_ladder.py``). Causal attention
runs :class:`~dlbook.gpt.CausalSelfAttention`'s own forward pass; bidirectional attention
PyTorch's ``F.scaled_dot_product_attention`` without the mask.

:func:`mask_tokens` makes the inputs and targets of masked language modelling.

Shapes: ``B`` batch, ``T`` sequence length, ``d`` width, ``V`` vocabulary.

Derived in: Chapter 3, *The ablation ladder* and *GPT and BERT*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dlbook.gpt.model import GPT, MLP, CausalSelfAttention, GPTConfig

__all__ = ["LadderConfig", "LadderLM", "mask_tokens"]

ATTENTION = ("none", "single", "multi")


@dataclass
class LadderConfig:
    """The sizes of a :class:`~dlbook.gpt.GPTConfig` plus one switch per piece of the model.

    The defaults are the chapter's GPT (every piece on, no error switched on).

    Derived in: Chapter 3, *The ablation ladder*.
    """

    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    bias: bool = True
    attention: str = "multi"
    mlp: bool = True
    residual: bool = True
    layernorm: bool = True
    ln_eps: float = 1e-5
    positions: bool = True
    mlp_out_relu: bool = False
    causal: bool = True
    tie_weights: bool = True

    def __post_init__(self) -> None:
        self.gpt_config()  # validates the sizes and the dropout
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {self.attention!r}")
        if not (isinstance(self.ln_eps, (int, float)) and self.ln_eps >= 0):
            raise ValueError(f"ln_eps must be a number >= 0, got {self.ln_eps!r}")
        if self.mlp_out_relu and not self.mlp:
            raise ValueError("mlp_out_relu=True needs mlp=True: there is no MLP output to ReLU")

    def gpt_config(self) -> GPTConfig:
        """The :class:`~dlbook.gpt.GPTConfig` of the same sizes (``n_head=1`` for ``"single"``)."""
        names = {f.name for f in fields(GPTConfig)}
        kwargs = {k: getattr(self, k) for k in names}
        if self.attention == "single":
            kwargs["n_head"] = 1
        return GPTConfig(**kwargs)


class LadderAttention(CausalSelfAttention):
    """:class:`~dlbook.gpt.CausalSelfAttention` with the causal mask optional.

    Input and output ``(B, T, d)``. ``causal=True`` runs the parent's forward pass unchanged;
    ``causal=False`` lets every position attend to every position (as BERT's encoder does).
    """

    def __init__(self, config: GPTConfig, causal: bool = True) -> None:
        super().__init__(config)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.causal:
            return super().forward(x)
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(B, T, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        p = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=False, dropout_p=p)
        return self.dropout(self.proj(y.transpose(1, 2).reshape(B, T, d)))


class LadderMLP(MLP):
    """:class:`~dlbook.gpt.MLP`, optionally with the error of a ReLU on its output."""

    def __init__(self, config: GPTConfig, out_relu: bool = False) -> None:
        super().__init__(config)
        self.out_relu = out_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return F.relu(y) if self.out_relu else y


def _norm(c: LadderConfig) -> nn.Module:
    if not c.layernorm:
        return nn.Identity()
    return nn.LayerNorm(c.n_embd, eps=float(c.ln_eps), bias=c.bias)


class LadderBlock(nn.Module):
    """A block with optional sublayers: ``x + Attn(LN(x))``, ``x + MLP(LN(x))`` when all is on.

    A sublayer that is off is skipped (the block passes ``x`` through it unchanged); without
    residual connections a sublayer's output replaces its input, ``x = F(LN(x))``.
    """

    def __init__(self, c: LadderConfig) -> None:
        super().__init__()
        g = c.gpt_config()
        self.residual = c.residual
        if c.attention != "none":
            self.ln_1 = _norm(c)
            self.attn = LadderAttention(g, causal=c.causal)
        if c.mlp:
            self.ln_2 = _norm(c)
            self.mlp = LadderMLP(g, out_relu=c.mlp_out_relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "attn"):
            a = self.attn(self.ln_1(x))
            x = x + a if self.residual else a
        if hasattr(self, "mlp"):
            m = self.mlp(self.ln_2(x))
            x = x + m if self.residual else m
        return x


class LadderLM(nn.Module):
    """A language model with the GPT's pieces switchable (:class:`LadderConfig`).

    ``model(idx)`` maps ``(B, T)`` token ids to ``(B, T, V)`` logits; ``model(idx, targets)``
    also returns the mean cross-entropy over the targets that are not ``-100`` (PyTorch's
    ``ignore_index``: how a masked language model scores the masked positions only). Causal,
    the logits at ``t`` predict token ``t + 1`` from tokens ``0..t``; bidirectional, what they
    predict is up to the training targets (:func:`mask_tokens`: the token at ``t`` itself).

    Derived in: Chapter 3, *The ablation ladder*.
    """

    def __init__(self, config: LadderConfig) -> None:
        super().__init__()
        c = self.config = config
        # Modules are made in the GPT's order, so that one seed gives a GPT's weights.
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        if c.positions:
            self.wpe = nn.Embedding(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(LadderBlock(c) for _ in range(c.n_layer))
        self.ln_f = _norm(c)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        if c.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(GPT._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    def num_params(self) -> int:
        """``sum(p.numel())`` over distinct parameters (a tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(B, T, V)`` and, given ``(B, T)`` targets, the mean cross-entropy (nats)."""
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype != torch.int64:
            got = (
                f"{tuple(idx.shape)} {idx.dtype}"
                if isinstance(idx, torch.Tensor)
                else type(idx).__name__
            )
            raise ValueError(f"idx must be a (B, T) int64 tensor of token ids, got {got}")
        T = idx.shape[1]
        if not 1 <= T <= self.config.block_size:
            raise ValueError(
                f"idx must hold 1 to block_size={self.config.block_size} tokens, got {T}"
            )
        x = self.wte(idx)  # (B, T, d)
        if self.config.positions:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
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


def mask_tokens(
    x: torch.Tensor,
    mask_id: int,
    *,
    p: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs and targets of masked language modelling (BERT's objective, simplified).

    Each position is chosen with probability ``p``, independently; a chosen position's token is
    replaced by ``mask_id`` in the inputs and kept as its target; every other target is ``-100``
    (ignored by the loss). BERT replaces only 80% of the chosen tokens by the mask token, 10% by a
    random token and leaves 10%; here all are masked.

    Args:
        x: ``(B, T)`` int64 token ids.

    Returns:
        ``inputs, targets``, both ``(B, T)`` int64.

    Derived in: Chapter 3, *GPT and BERT*.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.dtype != torch.int64:
        raise ValueError(f"x must be a (B, T) int64 tensor, got {getattr(x, 'shape', type(x))}")
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if isinstance(mask_id, bool) or not isinstance(mask_id, (int, np.integer)) or mask_id < 0:
        raise ValueError(f"mask_id must be a token id >= 0, got {mask_id!r}")
    chosen = torch.rand(x.shape, generator=generator) < p
    chosen = chosen.to(x.device)
    inputs = torch.where(chosen, torch.full_like(x, mask_id), x)
    targets = torch.where(chosen, x, torch.full_like(x, -100))
    return inputs, targets
