"""Parameter counts of published shapes (dlbook.gpt.shapes) against built models and the papers."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from dlbook import gpt
from dlbook.gpt import shapes


def _meta_gpt(shape: shapes.GPTShape) -> gpt.GPT:
    config = gpt.GPTConfig(
        vocab_size=shape.V, block_size=shape.T, n_layer=shape.L, n_head=shape.n_head, n_embd=shape.d
    )
    with torch.device("meta"):  # shapes only, no memory: even GPT-3 is built in a second
        return gpt.GPT(config)


class MetaBert(nn.Module):
    """BERT's pre-training model from PyTorch's own layers (not dlbook's formula): embeddings,
    ``L`` post-LN ``nn.TransformerEncoderLayer`` s, the pooler, the masked-LM head with its output
    matrix tied to the word embedding, and the next-sentence head."""

    def __init__(self, s: shapes.BertShape) -> None:
        super().__init__()
        self.word = nn.Embedding(s.V, s.d)
        self.position = nn.Embedding(s.T, s.d)
        self.token_type = nn.Embedding(s.type_vocab, s.d)
        self.emb_ln = nn.LayerNorm(s.d)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(s.d, s.n_head, 4 * s.d, activation="gelu", batch_first=True)
            for _ in range(s.L)
        )
        self.pooler = nn.Linear(s.d, s.d)
        self.mlm_transform = nn.Linear(s.d, s.d)
        self.mlm_ln = nn.LayerNorm(s.d)
        self.mlm_decoder = nn.Linear(s.d, s.V)  # weight tied below, bias its own
        self.mlm_decoder.weight = self.word.weight
        self.nsp = nn.Linear(s.d, 2)


def test_gpt_formula_matches_built_models():
    for name, shape in shapes.GPT_SHAPES.items():
        model = _meta_gpt(shape)
        assert shapes.gpt_shape_param_count(name) == model.num_params(), name
        assert shapes.gpt_shape_param_count(shape) == sum(p.numel() for p in model.parameters())


def test_gpt2_small_exact():
    assert shapes.gpt_shape_param_count("GPT-2 small") == 124_439_808


def test_non_embedding_matches_model():
    for shape in (shapes.GPT_SHAPES["GPT-2 small"], shapes.GPT_SHAPES["GPT-2 XL"]):
        model = _meta_gpt(shape)
        assert shapes.non_embedding_params(shape.L, shape.d) == model.num_params(non_embedding=True)


@pytest.mark.parametrize("name", list(shapes.BERT_SHAPES))
def test_bert_formula_matches_built_model(name):
    s = shapes.BERT_SHAPES[name]
    with torch.device("meta"):
        model = MetaBert(s)
    built = sum(p.numel() for p in model.parameters())  # the tied matrix once
    assert shapes.bert_param_count(s.V, s.T, s.L, s.d) == built


def test_bert_base_encoder_with_pooler():
    # The released bert-base-uncased encoder with its pooler holds 109,482,240 parameters.
    s = shapes.BERT_SHAPES["BERT-base"]
    assert shapes.bert_param_count(s.V, s.T, s.L, s.d, mlm_head=False, nsp_head=False) == (
        109_482_240
    )


@pytest.mark.parametrize(
    "name, rel",
    [
        ("GPT-2 small", 0.005),  # 124.4M vs "124M"
        ("GPT-2 medium", 0.005),
        ("GPT-2 large", 0.005),
        ("GPT-2 XL", 0.005),  # 1557.6M vs 1558M, "1.5B"
        ("GPT-3 175B", 0.005),  # 174.6B vs 175.0B
        ("BERT-base", 0.01),  # 110.1M vs 110M
        ("BERT-large", 0.02),  # 336.2M vs 340M (the paper rounds)
    ],
)
def test_counts_against_papers(name, rel):
    n = (
        shapes.gpt_shape_param_count(name)
        if name in shapes.GPT_SHAPES
        else shapes.bert_param_count(*(getattr(shapes.BERT_SHAPES[name], k) for k in "VTLd"))
    )
    assert n == pytest.approx(shapes.PAPER_COUNTS[name][0], rel=rel)


def test_gpt2_paper_117m_is_not_the_model():
    # The GPT-2 paper's 117M is off by 6%: the count OpenAI later called an error.
    n = shapes.gpt_shape_param_count("GPT-2 small")
    assert n / shapes.PAPER_COUNTS["GPT-2 small"][1] - 1 > 0.05


def test_training_flops_conventions():
    s = shapes.GPT_SHAPES["GPT-2 small"]
    n = 10**8
    palm = shapes.training_flops(n, 1000, L=s.L, T=s.T, d=s.d)
    kaplan = shapes.training_flops(n, 1000, L=s.L, T=s.T, d=s.d, convention="kaplan")
    assert palm - kaplan == 6 * s.L * s.T * s.d * 1000
    assert kaplan == (6 * n + 6 * s.L * s.T * s.d) * 1000


def test_validation():
    with pytest.raises(ValueError, match="unknown GPT shape"):
        shapes.gpt_shape_param_count("GPT-5")
    with pytest.raises(ValueError, match="L must be a positive integer"):
        shapes.bert_param_count(100, 10, 0, 8)
    with pytest.raises(ValueError, match="convention"):
        shapes.training_flops(1, 1, L=1, T=1, d=1, convention="chinchilla")
