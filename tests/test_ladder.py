"""dlbook.gpt.ladder: the GPT with switches is the GPT when all is on, and each switch does what
it says (the chapter's *The ablation ladder* and *GPT and BERT*)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from dlbook.gpt import GPT
from dlbook.gpt.ladder import LadderConfig, LadderLM, mask_tokens

SMALL = LadderConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=16)


def make(**changes) -> LadderLM:
    torch.manual_seed(0)
    return LadderLM(dataclasses.replace(SMALL, **changes)).eval()


def tokens(B: int = 3, T: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(SMALL.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


def perturb(model: torch.nn.Module) -> None:
    """Give every parameter (LayerNorm gains and biases too) a generic value."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


# ----------------------------------------------------------------------------- the reference


@pytest.mark.parametrize("n_head", [1, 2, 4])
def test_all_on_is_the_chapters_gpt_with_its_weights(n_head):
    cfg = dataclasses.replace(SMALL, n_head=n_head)
    gpt = GPT(cfg.gpt_config()).eval()
    perturb(gpt)
    ladder = LadderLM(cfg).eval()
    ladder.load_state_dict(gpt.state_dict())  # strict: the same names and shapes
    x = tokens()
    (lg, loss_g), (ll, loss_l) = gpt(x, x), ladder(x, x)
    torch.testing.assert_close(ll, lg, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(loss_l, loss_g)
    gpt.load_state_dict(ladder.state_dict())  # and back


def test_same_seed_gives_the_gpts_initial_weights():
    torch.manual_seed(3)
    gpt = GPT(SMALL.gpt_config())
    torch.manual_seed(3)
    ladder = LadderLM(SMALL)
    sd_g, sd_l = gpt.state_dict(), ladder.state_dict()
    assert list(sd_g) == list(sd_l)
    assert all(torch.equal(sd_g[k], sd_l[k]) for k in sd_g)
    assert ladder.lm_head.weight is ladder.wte.weight  # tied, as the GPT


def test_single_head_is_the_gpt_with_one_head():
    ladder = make(attention="single")
    assert all(b.attn.n_head == 1 for b in ladder.blocks)
    gpt = GPT(dataclasses.replace(SMALL, n_head=1).gpt_config()).eval()
    gpt.load_state_dict(ladder.state_dict())
    x = tokens()
    torch.testing.assert_close(ladder(x)[0], gpt(x)[0], atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- each switch


def test_bigram_rung_depends_on_the_current_token_only():
    m = make(attention="none", mlp=False, layernorm=False, positions=False, tie_weights=False)
    assert len(list(m.blocks[0].parameters())) == 0
    x = tokens()
    expected = m.wte.weight[x] @ m.lm_head.weight.T  # the logit table E W^T, row x_t
    torch.testing.assert_close(m(x)[0], expected)
    assert m.lm_head.weight is not m.wte.weight


def test_without_residuals_each_sublayer_replaces_its_input():
    m = make(residual=False)
    perturb(m)
    x = tokens()
    with torch.no_grad():
        h = m.wte(x) + m.wpe(torch.arange(x.shape[1]))
        for b in m.blocks:
            h = b.mlp(b.ln_2(b.attn(b.ln_1(h))))
        expected = m.lm_head(m.ln_f(h))
        torch.testing.assert_close(m(x)[0], expected)
        on = make()
        on.load_state_dict(m.state_dict())
        assert (on(x)[0] - expected).abs().max() > 1e-3  # the switch matters


def test_relu_on_the_mlp_output():
    m = make(mlp_out_relu=True)
    perturb(m)
    u = torch.randn(4, 16)
    plain = super(type(m.blocks[0].mlp), m.blocks[0].mlp).forward(u)
    assert (plain < 0).any()
    torch.testing.assert_close(m.blocks[0].mlp(u), F.relu(plain))


def test_layernorm_switch_and_epsilon():
    assert all(isinstance(b.ln_1, torch.nn.Identity) for b in make(layernorm=False).blocks)
    n_on, n_off = make().num_params(), make(layernorm=False).num_params()
    assert n_on - n_off == (2 * SMALL.n_layer + 1) * 2 * SMALL.n_embd  # gains and biases
    zero = torch.zeros(1, 16)
    assert torch.isnan(make(ln_eps=0.0).blocks[0].ln_1(zero)).all()
    assert torch.isfinite(make().blocks[0].ln_1(zero)).all()
    assert make(ln_eps=1e-3).blocks[0].ln_1.eps == 1e-3


def test_causal_predictions_ignore_later_tokens_exactly_and_bidirectional_ones_do_not():
    x = tokens()
    x2 = x.clone()
    x2[:, 7] = (x2[:, 7] + 1) % SMALL.vocab_size
    causal = make()
    perturb(causal)
    a, b = causal(x)[0], causal(x2)[0]
    assert torch.equal(a[:, :7], b[:, :7])  # exactly: positions 0..6 never read position 7
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-4
    bidir = make(causal=False)
    bidir.load_state_dict(causal.state_dict())
    assert (bidir(x)[0][:, :7] - bidir(x2)[0][:, :7]).abs().max() > 1e-4


def test_bidirectional_attention_matches_pytorchs_unmasked_attention():
    m = make(causal=False)
    perturb(m)
    attn = m.blocks[0].attn
    u = torch.randn(2, 5, 16)
    q, k, v = attn.qkv(u).split(16, dim=2)
    q, k, v = (z.view(2, 5, 2, 8).transpose(1, 2) for z in (q, k, v))
    w = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1)  # every position, no mask
    expected = attn.proj((w @ v).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(attn(u), expected, atol=1e-6, rtol=1e-5)


def test_without_positions_bidirectional_attention_is_permutation_equivariant():
    m = make(causal=False, positions=False)
    perturb(m)
    x = tokens(T=10)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(m(x[:, perm])[0], m(x)[0][:, perm], atol=1e-5, rtol=1e-5)
    with_pos = make(causal=False)
    perturb(with_pos)
    assert (with_pos(x[:, perm])[0] - with_pos(x)[0][:, perm]).abs().max() > 1e-3


def test_without_positions_one_causal_layer_sees_a_set_and_two_see_order():
    """Causal without positions: the last position of one layer is a function of the *set* of
    tokens before it (and its own token); from two layers on, their order matters."""
    x = tokens(T=10)
    perm = torch.cat(
        [torch.randperm(9, generator=torch.Generator().manual_seed(4)), torch.tensor([9])]
    )
    assert not torch.equal(x[:, perm], x)
    one = make(positions=False, n_layer=1)
    perturb(one)
    torch.testing.assert_close(one(x[:, perm])[0][:, -1], one(x)[0][:, -1], atol=1e-5, rtol=1e-5)
    # but the other positions are not permutation-equivariant: the mask depends on position
    assert (one(x[:, perm])[0][:, :-1] - one(x)[0][:, perm[:-1]]).abs().max() > 1e-3
    two = make(positions=False, n_layer=2)
    perturb(two)
    assert (two(x[:, perm])[0][:, -1] - two(x)[0][:, -1]).abs().max() > 1e-3


def test_dropout_acts_in_training_mode_only():
    m = make(dropout=0.3)
    x = tokens()
    torch.testing.assert_close(m(x)[0], m(x)[0])
    m.train()
    torch.manual_seed(0)
    a = m(x)[0]
    torch.manual_seed(1)
    assert (a - m(x)[0]).abs().max() > 1e-4


# ----------------------------------------------------------------------------- masking


def test_mask_tokens():
    x = torch.randint(10, (64, 64), generator=torch.Generator().manual_seed(0))
    inputs, targets = mask_tokens(x, 10, p=0.15, generator=torch.Generator().manual_seed(1))
    chosen = inputs == 10
    assert torch.equal(targets[chosen], x[chosen])
    assert torch.equal(inputs[~chosen], x[~chosen])
    assert (targets[~chosen] == -100).all()
    assert abs(chosen.float().mean().item() - 0.15) < 0.02  # 4096 draws: sd 0.0056
    m = LadderLM(dataclasses.replace(SMALL, vocab_size=11, causal=False))
    xs = torch.randint(10, (2, 12))
    i, t = mask_tokens(xs, 10, p=0.5, generator=torch.Generator().manual_seed(0))
    logits, loss = m(i, t)
    keep = t != -100
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], t[keep]))


@pytest.mark.parametrize(
    "kwargs",
    [{"p": 0.0}, {"p": 1.0}, {"mask_id": -1}, {"mask_id": True}],
)
def test_mask_tokens_rejects_bad_arguments(kwargs):
    args = {"mask_id": 10, **kwargs}
    with pytest.raises(ValueError):
        mask_tokens(torch.zeros(2, 3, dtype=torch.int64), args.pop("mask_id"), **args)


@pytest.mark.parametrize(
    "changes",
    [{"attention": "two"}, {"ln_eps": -1.0}, {"mlp": False, "mlp_out_relu": True}, {"n_head": 3}],
)
def test_config_rejects_bad_values(changes):
    with pytest.raises(ValueError):
        dataclasses.replace(SMALL, **changes)


def test_forward_rejects_bad_input():
    m = make()
    with pytest.raises(ValueError):
        m(torch.zeros(2, 13, dtype=torch.int64))  # longer than the context
    with pytest.raises(ValueError):
        m(torch.zeros(2, 3))  # not token ids
    with pytest.raises(ValueError):
        m(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 4, dtype=torch.int64))
