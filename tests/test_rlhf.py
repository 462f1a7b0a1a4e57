"""dlbook.rlhf against references it does not share code with: PyTorch's cross-entropy and
logistic losses, exact enumeration of n-tuples, and sampling."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from dlbook import rlhf as R


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ref(lang: R.TinyLanguage, seed: int = 0, scale: float = 0.5) -> R.TabularPolicy:
    g = _g(seed)
    return R.TabularPolicy(
        lang, scale * torch.randn(lang.n_prefixes, lang.vocab, generator=g, dtype=torch.float64)
    )


# ----------------------------------------------------------------------------- losses


def test_sft_loss_is_cross_entropy_with_the_prompt_ignored():
    g = _g(1)
    logits = torch.randn(3, 7, 11, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(11, (3, 7), generator=g)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, 2:] = True
    mask[1, 5:] = True
    mask[2, 1:4] = True
    loss = R.sft_loss(logits, targets, mask)
    ref = F.cross_entropy(logits.reshape(-1, 11), targets.masked_fill(~mask, -100).reshape(-1))
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    loss.backward()
    assert logits.grad[~mask].abs().max() == 0  # the prompt's logits get no gradient
    assert logits.grad[mask].abs().max() > 0
    with pytest.raises(ValueError, match="no token"):
        R.sft_loss(logits, targets, torch.zeros_like(mask))


def test_sequence_logprob_sums_the_masked_token_logprobs():
    g = _g(2)
    logits = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    targets = torch.randint(4, (2, 5), generator=g)
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    got = R.sequence_logprob(logits, targets, mask)
    want = [
        sum(
            math.log(torch.softmax(logits[b, t], -1)[targets[b, t]].item())
            for t in range(5)
            if mask[b, t]
        )
        for b in range(2)
    ]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="logits"):
        R.token_logprobs(logits[0], targets)


def test_bradley_terry_and_dpo_are_logistic_losses():
    g = _g(3)
    rc, rr = (
        torch.randn(50, generator=g, dtype=torch.float64),
        torch.randn(50, generator=g, dtype=torch.float64),
    )
    ones = torch.ones(50, dtype=torch.float64)
    torch.testing.assert_close(
        R.bradley_terry_loss(rc, rr), F.binary_cross_entropy_with_logits(rc - rr, ones)
    )
    # stable far in the tails, where log(sigmoid(x)) underflows to -inf
    assert math.isfinite(R.bradley_terry_loss(torch.tensor([-800.0]), torch.tensor([0.0])).item())
    lc, lr_, ref_c, ref_r = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(4))
    lc.requires_grad_(True)
    ref_c.requires_grad_(True)
    beta = 0.3
    loss = R.dpo_loss(lc, lr_, ref_c, ref_r, beta)
    want = F.binary_cross_entropy_with_logits(beta * ((lc - ref_c) - (lr_ - ref_r)), ones)
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert ref_c.grad is None  # the reference is frozen
    assert lc.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="beta"):
        R.dpo_loss(lc, lr_, ref_c, ref_r, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        R.bradley_terry_loss(rc, rr[:3])


def test_kl_shaped_rewards_put_the_score_at_each_rows_last_response_token():
    g = _g(4)
    logp, ref = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    score = torch.tensor([1.0, -2.0, 0.5])
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 0, 0, 0]])
    beta = 0.1
    rew = R.kl_shaped_rewards(logp, ref, score, mask, beta)
    for b, last in enumerate([4, 5, 1]):
        for t in range(6):
            want = -beta * (logp[b, t] - ref[b, t]) * mask[b, t] + (score[b] if t == last else 0.0)
            assert rew[b, t].item() == pytest.approx(want.item(), abs=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        R.kl_shaped_rewards(logp, ref, score, torch.zeros(3, 6), beta)
    with pytest.raises(ValueError, match="score"):
        R.kl_shaped_rewards(logp, ref, score[:2], mask, beta)


# ----------------------------------------------------------------------------- the tiny language


def test_the_tiny_language_and_its_prefix_table():
    lang = R.TinyLanguage(3, 4)
    assert len(lang) == 81 and lang.n_prefixes == 1 + 3 + 9 + 27
    assert len({tuple(s.tolist()) for s in lang.sequences}) == 81
    rows = {}  # the same prefix always gets the same row, different prefixes different rows
    for s, r in zip(lang.sequences.tolist(), lang.prefix_rows.tolist()):
        for t in range(4):
            rows.setdefault(tuple(s[:t]), set()).add(r[t])
    assert all(len(v) == 1 for v in rows.values()) and len(rows) == lang.n_prefixes
    assert sorted(next(iter(v)) for v in rows.values()) == list(range(lang.n_prefixes))
    assert torch.equal(lang.index(lang.sequences), torch.arange(81))
    assert lang.text(5) == "aabc"
    with pytest.raises(ValueError):
        R.TinyLanguage(1, 4)


def test_a_tabular_policy_is_normalised_and_samples_what_it_says():
    lang = R.TinyLanguage(3, 4)
    pol = _ref(lang, scale=1.0)
    lp = pol.logprobs()
    assert torch.logsumexp(lp, 0).item() == pytest.approx(0.0, abs=1e-12)
    seqs = pol.sample(40_000, _g(5))
    freq = torch.bincount(lang.index(seqs), minlength=81).double() / 40_000
    assert 0.5 * (freq - lp.exp()).abs().sum().item() < 0.03  # measured 0.014


def test_the_kl_optimum_and_the_objectives_identity():
    lang = R.TinyLanguage(3, 4)
    ref = _ref(lang).logprobs().detach()
    reward = torch.randn(81, generator=_g(6), dtype=torch.float64)
    beta = 0.7
    opt = R.kl_optimum(ref, reward, beta)
    log_z = torch.logsumexp(ref + reward / beta, 0)
    for seed in range(3):  # J(q) = beta log Z - beta KL(q || pi*) for every q
        q = _ref(lang, seed=10 + seed, scale=1.5).logprobs().detach()
        j = R.regularised_objective(q, ref, reward, beta)
        assert j.item() == pytest.approx((beta * log_z - beta * R.kl(q, opt)).item(), abs=1e-12)
    # gradient ascent on the table, from the reference, reaches pi* (no formula shared)
    pol = R.TabularPolicy(lang, _ref(lang).logits.detach())
    adam = torch.optim.Adam(pol.parameters(), lr=0.05)
    for _ in range(1500):
        loss = -R.regularised_objective(pol.logprobs(), ref, reward, beta)
        adam.zero_grad()
        loss.backward()
        adam.step()
    assert R.kl(pol.logprobs().detach(), opt).item() < 1e-6
    with pytest.raises(ValueError, match="normalised"):
        R.kl_optimum(ref + 1.0, reward, beta)


def test_best_of_n_against_enumerating_every_n_tuple():
    p = torch.tensor([0.1, 0.25, 0.3, 0.15, 0.2], dtype=torch.float64)
    for reward in (
        torch.tensor([0.3, -1.0, 2.0, 0.5, 1.1]),
        torch.tensor([1.0, 0.0, 1.0, 0.5, 0.0]),
    ):
        for n in (1, 2, 3):
            want = torch.zeros(5, dtype=torch.float64)
            for tup in itertools.product(range(5), repeat=n):
                prob = math.prod(p[i].item() for i in tup)
                best = max(reward[i].item() for i in tup)
                winners = [i for i in tup if reward[i].item() == best]  # ties: uniformly at random
                for i in winners:
                    want[i] += prob / len(winners)
            got = R.best_of_n(p.log(), reward.double(), n).exp()
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert R.best_of_n_kl_bound(1) == 0.0
    assert R.best_of_n_kl_bound(4) == pytest.approx(math.log(4) - 0.75)


def test_bradley_terry_recovers_the_rewards_up_to_a_constant():
    lang = R.TinyLanguage(3, 3)
    ref = _ref(lang, scale=0.3).logprobs().detach()
    reward = torch.randn(len(lang), generator=_g(7), dtype=torch.float64)
    chosen, rejected = R.sample_preferences(ref, reward, 60_000, _g(8))
    win = (reward[chosen] > reward[rejected]).double().mean().item()
    assert 0.55 < win < 0.95  # the labels are noisy, not a sort
    fitted = R.fit_rewards(chosen, rejected, len(lang))
    assert fitted.mean().abs().item() < 1e-12
    err = (fitted - (reward - reward.mean())).abs().max().item()
    assert err < 0.15  # measured 0.08


def test_rlhf_ppo_approaches_the_kl_optimum():
    lang = R.TinyLanguage(3, 4)
    ref = _ref(lang)
    reward = (lang.sequences == 0).sum(1).double()
    pol = R.TabularPolicy(lang, ref.logits.detach())
    hist = R.rlhf_ppo(pol, ref, reward, 0.5, iterations=120, generator=_g(9))
    assert hist.kl_to_optimum[0] > 1.0
    assert hist.kl_to_optimum[-1] < 0.03
    assert hist.objective[-1] > hist.objective[0] + 0.5


# ----------------------------------------------------------------------------- on a GPT


def _tiny_gpt(seed: int = 0):
    from dlbook import gpt

    torch.manual_seed(seed)
    return gpt.GPT(gpt.GPTConfig(vocab_size=5, block_size=16, n_layer=1, n_head=2, n_embd=16))


def test_hidden_states_and_response_logprobs_match_the_gpts_own_forward():
    model = _tiny_gpt()
    seqs = torch.randint(5, (3, 10), generator=_g(10))
    logits, _ = model(seqs)
    torch.testing.assert_close(model.lm_head(R.hidden_states(model, seqs)), logits)
    lp = R.response_logprobs(model, seqs, prompt_len=4)
    assert lp.shape == (3, 6)
    want = torch.log_softmax(logits, -1)[:, 3:9].gather(-1, seqs[:, 4:, None]).squeeze(-1)
    torch.testing.assert_close(lp, want)
    with pytest.raises(ValueError, match="prompt_len"):
        R.response_logprobs(model, seqs, prompt_len=10)


def test_a_reward_model_and_dpo_learn_a_preference_on_a_gpt():
    """The preference: more copies of token 0 in the response."""
    import copy

    gen = _g(11)
    base = _tiny_gpt(1)
    prompts = torch.randint(5, (64, 3), generator=gen)
    a = R.sample_responses(base, prompts, 6, gen)
    b = R.sample_responses(base, prompts, 6, gen)
    ca, cb = (a[:, 3:] == 0).sum(1), (b[:, 3:] == 0).sum(1)
    keep = ca != cb
    chosen = torch.where((ca > cb)[:, None], a, b)[keep]
    rejected = torch.where((ca > cb)[:, None], b, a)[keep]
    rm = R.ScalarHead(copy.deepcopy(base))
    opt = torch.optim.Adam(rm.parameters(), lr=3e-3)
    first = R.reward_model_step(rm, opt, chosen, rejected)
    for _ in range(60):
        last = R.reward_model_step(rm, opt, chosen, rejected)
    assert first == pytest.approx(math.log(2), abs=1e-6)  # a zero head: every pair a coin flip
    assert last < 0.3
    assert (rm.score(chosen) > rm.score(rejected)).float().mean() > 0.9

    policy, ref = copy.deepcopy(base), copy.deepcopy(base)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    losses = [R.dpo_step(policy, ref, opt, chosen, rejected, 3, beta=0.5) for _ in range(40)]
    assert losses[0] == pytest.approx(math.log(2), abs=1e-6)  # policy = reference: margin 0
    assert losses[-1] < 0.5 * losses[0]
    before = (R.sample_responses(base, prompts, 6, _g(12))[:, 3:] == 0).float().mean()
    after = (R.sample_responses(policy, prompts, 6, _g(12))[:, 3:] == 0).float().mean()
    assert after > before + 0.1


def test_rlhf_ppo_on_a_gpt_raises_the_reward_and_reports_the_kl():
    import copy

    base = _tiny_gpt(2)
    policy, ref = copy.deepcopy(base), copy.deepcopy(base)
    critic = R.ScalarHead(copy.deepcopy(base))
    gen = _g(13)

    def reward_fn(seqs):
        return (seqs[:, 3:] == 0).double().mean(1)

    def prompt_fn(b):
        return torch.randint(5, (b, 3), generator=gen)

    cfg = R.LMPPOConfig(beta=0.05, iterations=40, batch=32, n_new=6, lr=3e-3)
    hist = R.rlhf_ppo_lm(policy, ref, critic, reward_fn, prompt_fn, cfg, gen, track=lambda s: 1.0)
    assert len(hist.score) == len(hist.kl) == len(hist.extra) == 40
    assert abs(hist.kl[0]) < 1e-6  # the first batch is sampled from the reference itself
    assert sum(hist.score[-5:]) / 5 > sum(hist.score[:5]) / 5 + 0.2
    assert hist.kl[-1] > 0.05
    with pytest.raises(ValueError, match="beta"):
        R.LMPPOConfig(beta=-1.0)


def test_response_values_are_the_states_before_each_response_token():
    """Value t must see the prompt and response tokens < t, and nothing from token t on."""
    critic = R.ScalarHead(_tiny_gpt(3))
    torch.nn.init.normal_(critic.head.weight)  # a head that is not zero
    seqs = torch.randint(5, (2, 9), generator=_g(14))
    P = 4
    v = R.response_values(critic, seqs, P)
    assert v.shape == (2, 5)
    for t in range(5):
        changed = seqs.clone()
        changed[:, P + t] = (changed[:, P + t] + 1) % 5  # change response token t
        w = R.response_values(critic, changed, P)
        torch.testing.assert_close(w[:, : t + 1], v[:, : t + 1])  # states before it: unchanged
        if t + 1 < 5:
            assert (w[:, t + 1] - v[:, t + 1]).abs().max() > 1e-6  # the next state sees it


def test_rlhf_on_a_gpt_refuses_dropout():
    from dlbook import gpt

    drop = gpt.GPT(
        gpt.GPTConfig(vocab_size=5, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.1)
    )
    seqs = torch.randint(5, (2, 8), generator=_g(15))
    opt = torch.optim.Adam(drop.parameters())
    with pytest.raises(ValueError, match="dropout"):
        R.dpo_step(drop, _tiny_gpt(), opt, seqs, seqs, 3, 0.1)


def test_best_of_n_and_kl_refuse_nan_and_handle_levels_the_reference_never_reaches():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    out = R.best_of_n(p.log(), torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), 3)
    assert not torch.isnan(out).any()
    torch.testing.assert_close(out.exp(), torch.tensor([0.125, 0.875, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        R.kl(torch.tensor([0.0, float("nan")]), torch.tensor([0.0, -1.0]))


def test_a_reward_models_score_is_the_mean_over_the_response_or_the_last_position():
    rm = R.ScalarHead(_tiny_gpt(4))
    torch.nn.init.normal_(rm.head.weight)
    seqs = torch.randint(5, (3, 9), generator=_g(16))
    per_position = rm(seqs)
    torch.testing.assert_close(rm.score(seqs), per_position[:, -1])
    torch.testing.assert_close(rm.score(seqs, start=4), per_position[:, 4:].mean(1))
    with pytest.raises(ValueError, match="start"):
        rm.score(seqs, start=9)


def test_pretrain_learns_a_repeating_text_and_returns_eval_mode():
    from dlbook import gpt

    data = torch.tensor([0, 1, 2, 3, 4] * 200)  # a text a GPT can learn to predict exactly
    config = gpt.GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=16)
    torch.manual_seed(0)
    model = R.pretrain(config, data, 150, generator=_g(17), batch_size=8)
    assert not model.training
    x, y = gpt.get_batch(data, 8, 8, generator=_g(18))
    with torch.no_grad():
        loss = model(x, y)[1].item()
    assert loss < 0.2 * math.log(5)  # a trained model, not the uniform one
