"""A GPT, read top to bottom: the model, sampling from it, training it.

The package splits what one file held, in the order the chapter builds it:

- :mod:`dlbook.gpt.model`: :class:`GPTConfig`, :func:`param_count`, :class:`KVCache`,
  :class:`CausalSelfAttention`, :class:`MLP`, :class:`Block`, :class:`GPT` and
  :func:`parameter_table` (about nanoGPT's ``model.py``);
- :mod:`dlbook.gpt.sample`: the temperature, top-k and top-p filters (:func:`next_token_probs`,
  :func:`top_k_filter`, :func:`top_p_filter`), :func:`sample_next` and :func:`generate`;
- :mod:`dlbook.gpt.train`: :func:`get_batch`, :func:`autocast`, :func:`configure_optimizer`,
  :func:`cosine_lr`, :func:`train_step`, :func:`estimate_loss` and :func:`maybe_compile`;
- :mod:`dlbook.gpt.bpe`: byte-level byte-pair encoding, :func:`train_bpe`, and its
  ``encode``/``decode`` re-exported as :func:`encode_bpe`/:func:`decode_bpe`, with
  :func:`token_bytes`;
- :mod:`dlbook.gpt.shapes`: published shapes (:data:`GPT_SHAPES`, :data:`BERT_SHAPES`), their
  parameter counts (:func:`gpt_shape_param_count`, :func:`bert_param_count`) and training FLOPs
  in PaLM's and Kaplan et al.'s conventions (:func:`training_flops`).

Checkpoints are not specific to a GPT: :func:`save_checkpoint`, :func:`load_checkpoint` and
:func:`unwrap` (the module inside a ``torch.compile``'d model) live in :mod:`dlbook.checkpoint`
and are re-exported here. Every public name is available as
``gpt.NAME`` after ``from dlbook import gpt``.

Derived in: Chapter 3, *GPT*.
"""

from __future__ import annotations

from dlbook.checkpoint import load_checkpoint, save_checkpoint, unwrap
from dlbook.gpt.bpe import decode as decode_bpe
from dlbook.gpt.bpe import encode as encode_bpe
from dlbook.gpt.bpe import token_bytes, train_bpe
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
from dlbook.gpt.shapes import (
    BERT_SHAPES,
    GPT_SHAPES,
    bert_param_count,
    gpt_shape_param_count,
    training_flops,
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
    "BERT_SHAPES",
    "GPT",
    "GPT_SHAPES",
    "MLP",
    "Block",
    "CausalSelfAttention",
    "GPTConfig",
    "KVCache",
    "autocast",
    "bert_param_count",
    "configure_optimizer",
    "cosine_lr",
    "decode_bpe",
    "encode_bpe",
    "estimate_loss",
    "generate",
    "get_batch",
    "gpt_shape_param_count",
    "load_checkpoint",
    "maybe_compile",
    "next_token_probs",
    "param_count",
    "parameter_table",
    "sample_next",
    "save_checkpoint",
    "token_bytes",
    "top_k_filter",
    "top_p_filter",
    "train_bpe",
    "train_step",
    "training_flops",
    "unwrap",
]
