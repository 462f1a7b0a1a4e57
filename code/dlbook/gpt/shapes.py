"""Published model shapes, their parameter counts, and training compute.

The shapes are the ones the papers publish; the counts are computed from them, never copied:

- GPT-2 (Radford et al., 2019): ``V = 50257``, ``T = 1024``, ``(L, d)`` = (12, 768), (24, 1024),
  (36, 1280), (48, 1600) for small, medium, large and XL;
- GPT-3 175B (Brown et al., 2020): ``L = 96``, ``d = 12288``, ``T = 2048``, GPT-2's vocabulary;
- BERT-base and BERT-large (Devlin et al., 2019): ``L = 12, d = 768`` and ``L = 24, d = 1024``,
  ``V = 30522`` (the uncased WordPiece vocabulary), ``T = 512``, two token types.

A GPT is counted by the chapter's :func:`dlbook.gpt.param_count` (the output layer tied to the
token embedding, so the ``V x d`` matrix counts once). BERT has its own formula,
:func:`bert_param_count`: its encoder layer holds the same ``12 d^2 + 13 d`` parameters as a GPT
block (post-LayerNorm instead of pre-LayerNorm changes where the LayerNorms sit, not how many
there are); the embeddings add token types and a LayerNorm; the released pre-training checkpoint
adds the pooler, the masked-language-model head and the next-sentence head.

:func:`training_flops` gives the training compute ``C`` of ``D`` tokens in the two conventions
the chapter compares: PaLM's / nanoGPT's ``6 N + 12 L T d`` per token, with ``N`` the weights
that multiply, and Kaplan et al.'s ``6 N + 6 L T d``, with ``N`` the non-embedding parameters.

Derived in: Chapter 3, *Scale: parameters, compute and the scaling laws*.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlbook.gpt.model import param_count

__all__ = [
    "BERT_SHAPES",
    "GPT_SHAPES",
    "PAPER_COUNTS",
    "BertShape",
    "GPTShape",
    "bert_param_count",
    "gpt_shape_param_count",
    "non_embedding_params",
    "training_flops",
]


@dataclass(frozen=True)
class GPTShape:
    """The sizes of a published GPT: vocabulary ``V``, context ``T``, ``L`` blocks of width ``d``.

    Derived in: Chapter 3, *Scale: parameters, compute and the scaling laws*.
    """

    V: int
    T: int
    L: int
    d: int
    n_head: int


@dataclass(frozen=True)
class BertShape:
    """The sizes of a published BERT: vocabulary ``V``, positions ``T``, ``L`` layers of width
    ``d``, ``type_vocab`` token types (segments A and B).

    Derived in: Chapter 3, *Scale: parameters, compute and the scaling laws*.
    """

    V: int
    T: int
    L: int
    d: int
    n_head: int
    type_vocab: int = 2


GPT_SHAPES: dict[str, GPTShape] = {
    "GPT-2 small": GPTShape(V=50257, T=1024, L=12, d=768, n_head=12),
    "GPT-2 medium": GPTShape(V=50257, T=1024, L=24, d=1024, n_head=16),
    "GPT-2 large": GPTShape(V=50257, T=1024, L=36, d=1280, n_head=20),
    "GPT-2 XL": GPTShape(V=50257, T=1024, L=48, d=1600, n_head=25),
    "GPT-3 175B": GPTShape(V=50257, T=2048, L=96, d=12288, n_head=96),
}

BERT_SHAPES: dict[str, BertShape] = {
    "BERT-base": BertShape(V=30522, T=512, L=12, d=768, n_head=12),
    "BERT-large": BertShape(V=30522, T=512, L=24, d=1024, n_head=16),
}

#: The parameter counts the papers state. GPT-2's paper (Radford et al., 2019, Table 2) gave
#: 117M, 345M, 762M and 1542M; OpenAI's ``gpt-2`` repository later wrote that these "were wrong
#: due to an error" and renamed the models 124M, 355M, 774M and 1558M. Both are kept here: the
#: first element is the figure used in the name the model is known by, the second the paper's.
PAPER_COUNTS: dict[str, tuple[float, float]] = {
    "GPT-2 small": (124e6, 117e6),
    "GPT-2 medium": (355e6, 345e6),
    "GPT-2 large": (774e6, 762e6),
    "GPT-2 XL": (1558e6, 1542e6),
    "GPT-3 175B": (175.0e9, 175.0e9),
    "BERT-base": (110e6, 110e6),
    "BERT-large": (340e6, 340e6),
}


def _positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def gpt_shape_param_count(shape: GPTShape | str) -> int:
    """Parameters of a published GPT shape (or its name in :data:`GPT_SHAPES`), by the chapter's
    :func:`~dlbook.gpt.param_count`, ``V d + T d + L (12 d^2 + 13 d) + 2 d``.

    Derived in: Chapter 3, *Scale: parameters, compute and the scaling laws*.
    """
    if isinstance(shape, str):
        if shape not in GPT_SHAPES:
            raise ValueError(f"unknown GPT shape {shape!r}; expected one of {list(GPT_SHAPES)}")
        shape = GPT_SHAPES[shape]
    return param_count(shape.V, shape.T, shape.L, shape.d)


def bert_param_count(
    V: int,
    T: int,
    L: int,
    d: int,
    *,
    type_vocab: int = 2,
    pooler: bool = True,
    mlm_head: bool = True,
    nsp_head: bool = True,
) -> int:
    """The number of parameters of a BERT encoder with ``L`` layers of width ``d`` (FFN ``4d``).

    - embeddings: word ``V d``, position ``T d``, token type ``type_vocab d``, a LayerNorm ``2d``;
    - each layer: Q, K, V and output projections ``4 d^2 + 4 d``, the FFN ``8 d^2 + 5 d``, two
      LayerNorms ``4 d``: ``12 d^2 + 13 d``, as a GPT block;
    - the pooler (a ``d x d`` layer on the first token, tanh): ``d^2 + d``;
    - the masked-LM head: a ``d x d`` transform, a LayerNorm and an output bias ``d^2 + 3d + V``
      (its ``V x d`` output matrix is tied to the word embedding and counted there);
    - the next-sentence head: ``2 d + 2``.

    With the defaults this is the released pre-training checkpoint; ``pooler=mlm_head=nsp_head
    =False`` gives the bare encoder.

    Derived in: Chapter 3, *Scale: parameters, compute and the scaling laws*.
    """
    _positive(V=V, T=T, L=L, d=d, type_vocab=type_vocab)
    n = V * d + T * d + type_vocab * d + 2 * d
    n += L * (12 * d * d + 13 * d)
    if pooler:
        n += d * d + d
    if mlm_head:
        n += d * d + 3 * d + V
    if nsp_head:
        n += 2 * d + 2
    return n


def non_embedding_params(L: int, d: int, *, bias: bool = True) -> int:
    """Kaplan et al.'s ``N``: the blocks' parameters, embeddings (token and position) left out.

    ``L (12 d^2 + 13 d) + 2 d`` with biases (the final LayerNorm included, as
    :meth:`dlbook.gpt.GPT.num_params` with ``non_embedding=True``); Kaplan et al. approximate it by
    ``12 L d^2``.

    Derived in: Chapter 3, *Scale: parameters, compute and the scaling laws*.
    """
    _positive(L=L, d=d)
    return L * (12 * d * d + (13 * d if bias else 2 * d)) + (2 * d if bias else d)


def training_flops(N: int, D: int, *, L: int, T: int, d: int, convention: str = "palm") -> int:
    """Training FLOPs of ``D`` tokens of context ``T`` for a model with ``N`` parameters.

    ``convention="palm"``: ``(6 N + 12 L T d) D`` (Chowdhery et al., 2022, appendix B; nanoGPT's
    ``estimate_mfu``): the scores ``Q K^T`` and the weighted sum ``A V`` each cost ``2 T d`` FLOPs
    per token and layer forward, over the full ``T x T`` square; backward twice that.
    ``convention="kaplan"``: ``(6 N + 6 L T d) D`` (Kaplan et al., 2020): their forward pass costs
    ``2 N + 2 L T d`` per token. Pass the ``N`` the convention means: the weights that multiply
    for PaLM's, the non-embedding parameters for Kaplan's.

    Derived in: Chapter 3, *Scale: parameters, compute and the scaling laws*.
    """
    _positive(N=N, D=D, L=L, T=T, d=d)
    factor = {"palm": 12, "kaplan": 6}.get(convention)
    if factor is None:
        raise ValueError(f"convention must be 'palm' or 'kaplan', got {convention!r}")
    return (6 * N + factor * L * T * d) * D
