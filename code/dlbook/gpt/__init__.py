"""A GPT, read top to bottom: the model, sampling from it, training it.

The package splits what one file held, in the order the chapter builds it:

- :mod:`dlbook.gpt.model`: :class:`GPTConfig`, :func:`param_count`, :class:`KVCache`,
  :class:`CausalSelfAttention`, :class:`MLP`, :class:`Block`, :class:`GPT` and
  :func:`parameter_table` (about nanoGPT's ``model.py``);
- :mod:`dlbook.gpt.sample`: the temperature, top-k and top-p filters (:func:`next_token_probs`,
  :func:`top_k_filter`, :func:`top_p_filter`), :func:`sample_next` and :func:`generate`;
- :mod:`dlbook.gpt.train`: :func:`get_batch`, :func:`autocast`, :func:`configure_optimizer`,
  :func:`cosine_lr`, :func:`train_step`, :func:`estimate_loss` and :func:`maybe_compile`.

Checkpoints are not specific to a GPT: :func:`save_checkpoint`, :func:`load_checkpoint` and
:func:`unwrap` (the module inside a ``torch.compile``'d model) live in :mod:`dlbook.checkpoint`
and are re-exported here. Every public name is available as
``gpt.NAME`` after ``from dlbook import gpt``.

Derived in: Chapter 3, *GPT*.
"""

from __future__ import annotations

from dlbook.checkpoint import load_checkpoint, save_checkpoint, unwrap
from dlbook.gpt.model import (
    GPT,
    MLP,
    Block,
    CausalSelfAttention,
    GPTConfig,
    KVCache,
    param_count,
    parameter_table,
)
from dlbook.gpt.sample import (
    generate,
    next_token_probs,
    sample_next,
    top_k_filter,
    top_p_filter,
)
from dlbook.gpt.train import (
    AUTOCAST_ENV,
    autocast,
    configure_optimizer,
    cosine_lr,
    estimate_loss,
    get_batch,
    maybe_compile,
    train_step,
)

__all__ = [
    "AUTOCAST_ENV",
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
    "unwrap",
]
