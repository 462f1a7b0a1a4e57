"""Tests of dlbook.gpt and dlbook.checkpoint: shapes, causality, the KV cache, the parameter
formula, sampling, checkpoints, input validation, and the package's public names.

References we did not write: ``sum(p.numel())`` over torch modules, PyTorch's own
``nn.LayerNorm``/``F.gelu``/``F.scaled_dot_product_attention`` (through a hand-wired block),
brute-force enumeration for the nucleus, and the uninterrupted training run for exact resume.
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dlbook
from dlbook import checkpoint, gpt


def tiny(**kw) -> gpt.GPTConfig:
    base = dict(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16)
    base.update(kw)
    return gpt.GPTConfig(**base)


def model(seed: int = 0, **kw) -> gpt.GPT:
    torch.manual_seed(seed)
    return gpt.GPT(tiny(**kw))


# ----------------------------------------------------------------------------- shapes


def test_forward_shapes_and_loss():
    m = model()
    idx = torch.randint(11, (3, 7))
    logits, loss = m(idx)
    assert logits.shape == (3, 7, 11) and loss is None
    logits, loss = m(idx, idx)
    assert loss.shape == () and torch.isfinite(loss)
    ref = F.cross_entropy(logits.reshape(-1, 11), idx.reshape(-1))
    torch.testing.assert_close(loss, ref)


def test_loss_at_initialisation_is_near_uniform():
    m = model(vocab_size=65, n_embd=32)
    idx, targets = torch.randint(65, (2, 8, 16))
    _, loss = m(idx, targets)
    assert abs(loss.item() - math.log(65)) < 0.1  # small init: nearly uniform predictions


def test_weight_tying_shares_one_tensor():
    m = model()
    assert m.lm_head.weight is m.wte.weight
    assert m.lm_head.weight.data_ptr() == m.wte.weight.data_ptr()


def test_block_equals_a_hand_wired_block_from_torch_functions():
    m = model(n_layer=1)
    blk = m.blocks[0]
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        got = blk(x)
        h = F.layer_norm(x, (16,), blk.ln_1.weight, blk.ln_1.bias, eps=1e-5)
        q, k, v = (h @ blk.attn.qkv.weight.T + blk.attn.qkv.bias).split(16, dim=2)
        q, k, v = (z.view(2, 5, 2, 8).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = a.transpose(1, 2).reshape(2, 5, 16) @ blk.attn.proj.weight.T + blk.attn.proj.bias
        x1 = x + a
        h = F.layer_norm(x1, (16,), blk.ln_2.weight, blk.ln_2.bias, eps=1e-5)
        u = F.gelu(h @ blk.mlp.fc.weight.T + blk.mlp.fc.bias)
        ref = x1 + u @ blk.mlp.proj.weight.T + blk.mlp.proj.bias
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_explicit_attention_path_equals_fused():
    m = model()
    idx = torch.randint(11, (2, 9))
    fused, _ = m(idx)
    for blk in m.blocks:
        blk.attn.explicit = True
    explicit, _ = m(idx)
    torch.testing.assert_close(explicit, fused, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- causality


@pytest.mark.parametrize("t", [0, 3, 7, 14])
def test_output_at_t_does_not_depend_on_later_tokens(t):
    m = model()
    idx = torch.randint(11, (2, 16))
    changed = idx.clone()
    changed[:, t + 1 :] = torch.randint(11, changed[:, t + 1 :].shape)
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % 11  # surely different from idx
    a, _ = m(idx)
    b, _ = m(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
    if t + 1 < 16:
        assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :], atol=1e-4)


def test_gradient_of_logit_t_vanishes_for_later_tokens():
    m = model()
    idx = torch.randint(11, (1, 10))
    emb = m.wte(idx).detach().requires_grad_(True)
    x = emb + m.wpe(torch.arange(10))
    for blk in m.blocks:
        x = blk(x)
    logits = m.lm_head(m.ln_f(x))
    logits[0, 4].sum().backward()
    grad = emb.grad[0].abs().sum(dim=1)
    assert torch.all(grad[5:] == 0) and torch.all(grad[:5] > 0)


# ----------------------------------------------------------------------------- the KV cache


def test_cache_prefill_then_one_token_equals_full_forward():
    m = model().eval()
    idx = torch.randint(11, (2, 12))
    full, _ = m(idx)
    cache = gpt.KVCache(m.config, 2, device="cpu")
    a, _ = m(idx[:, :5], kv_cache=cache)
    b, _ = m(idx[:, 5:9], kv_cache=cache)  # several new tokens: bottom-right causal mask
    parts = [a, b]
    for t in range(9, 12):
        c, _ = m(idx[:, t : t + 1], kv_cache=cache)
        parts.append(c)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.length == 12
    assert cache.nbytes() == 2 * 2 * 2 * 16 * 16 * 4  # 2 tensors, L B T d float32


def test_a_cache_goes_to_the_books_device_by_default(monkeypatch):
    """``device=None`` means ``dlbook.device()``: here a stand-in that answers ``meta``."""
    monkeypatch.setattr(dlbook.runtime, "device", lambda: torch.device("meta"))
    cache = gpt.KVCache(tiny(), 1)
    assert cache.k.device.type == cache.v.device.type == "meta"
    assert gpt.KVCache(tiny(), 1, device="cpu").k.device.type == "cpu"


@pytest.mark.parametrize(
    "kw",
    [
        dict(greedy=True),
        dict(temperature=0.8),
        dict(temperature=1.3, top_k=5),
        dict(top_p=0.9),
    ],
)
def test_cached_and_uncached_generation_give_identical_tokens(kw):
    m = model()
    prompt = torch.randint(11, (3, 4))
    # 30 new tokens: the sequence outgrows the 16-token context, so the sliding window is covered
    a = gpt.generate(
        m, prompt, 30, use_cache=True, generator=torch.Generator().manual_seed(1), **kw
    )
    b = gpt.generate(
        m, prompt, 30, use_cache=False, generator=torch.Generator().manual_seed(1), **kw
    )
    assert a.shape == (3, 34)
    assert torch.equal(a[:, :4], prompt)
    assert torch.equal(a, b)


def test_generate_restores_training_mode_and_is_reproducible():
    m = model()
    m.train()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    a = gpt.generate(m, prompt, 10, generator=torch.Generator().manual_seed(3))
    b = gpt.generate(m, prompt, 10, generator=torch.Generator().manual_seed(3))
    assert m.training and torch.equal(a, b)


def test_estimate_loss_restores_training_mode_and_leaves_the_global_generator_alone():
    m = model(dropout=0.1)
    data = torch.arange(300) % 11
    before = torch.get_rng_state()
    a = gpt.estimate_loss(m, {"train": data}, batch_size=4, iters=3)
    b = gpt.estimate_loss(m, {"train": data}, batch_size=4, iters=3)
    assert m.training and a == b and set(a) == {"train"}
    assert torch.equal(torch.get_rng_state(), before)
    c = gpt.estimate_loss(m, {"train": data}, batch_size=4, iters=3, seed=7)
    assert c != a  # other windows


# ----------------------------------------------------------------------------- parameter count


@pytest.mark.parametrize(
    "V,T,L,d,h,bias",
    [
        (65, 256, 6, 384, 6, True),
        (65, 64, 4, 128, 4, True),
        (11, 16, 2, 16, 2, False),
        (50257, 1024, 12, 768, 12, True),
    ],
)
def test_parameter_formula_equals_the_model(V, T, L, d, h, bias):
    cfg = gpt.GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=h, n_embd=d, bias=bias)
    with torch.device("meta"):  # no memory: only the shapes are needed
        m = gpt.GPT(cfg)
    assert gpt.param_count(V, T, L, d, bias=bias) == sum(p.numel() for p in m.parameters())
    assert m.num_params() == gpt.param_count(V, T, L, d, bias=bias)
    assert m.num_params(non_embedding=True) == m.num_params() - V * d - T * d


def test_gpt2_small_has_124m_parameters():
    # GPT-2 small (Radford et al., 2019): 124,439,808 parameters with tied embeddings
    assert gpt.param_count(50257, 1024, 12, 768) == 124_439_808


def test_parameter_table_lists_the_tied_matrix_once():
    m = model()
    names = [n for n, _, _ in gpt.parameter_table(m)]
    assert "wte.weight" in names and "lm_head.weight" not in names
    assert sum(n for _, _, n in gpt.parameter_table(m)) == m.num_params()


# ----------------------------------------------------------------------------- sampling


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])

    def entropy(p):
        return float(-(p * p.log()).sum())

    h = [entropy(gpt.next_token_probs(logits, temperature=t)) for t in (0.5, 1.0, 2.0)]
    assert h[0] < h[1] < h[2] < math.log(4)
    torch.testing.assert_close(gpt.next_token_probs(logits), torch.softmax(logits, -1))


def test_top_k_keeps_k_tokens():
    logits = torch.randn(5, 20)
    p = gpt.next_token_probs(logits, top_k=3)
    assert torch.all((p > 0).sum(dim=1) == 3)
    top = torch.topk(logits, 3).indices
    assert torch.all(p.gather(1, top) > 0)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(5))


@pytest.mark.parametrize("seed", range(10))
def test_top_k_keeps_exactly_k_with_ties_broken_by_index(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(0, 3, (4, 12), generator=g).double()  # many ties
    for k in range(1, 13):
        filtered = gpt.top_k_filter(logits, k)
        p = torch.softmax(filtered, -1)
        for row, kept in zip(logits.tolist(), torch.isfinite(filtered)):
            # reference: rank by value, then by index, and take the first k
            ranked = sorted(range(12), key=lambda i: (-row[i], i))
            assert set(torch.nonzero(kept).flatten().tolist()) == set(ranked[:k])
        entropy = -(p * p.clamp_min(1e-300).log()).sum(-1)
        assert torch.all(entropy <= math.log(k) + 1e-12)
    tied = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]])
    assert torch.isfinite(gpt.top_k_filter(tied, 2)).tolist() == [[False, True, True, False, False]]


def _nucleus_by_enumeration(probs: list[float], p: float) -> set[int]:
    """The smallest set of tokens whose probability is >= p (largest mass among the smallest)."""
    n = len(probs)
    for size in range(1, n + 1):
        best = max(itertools.combinations(range(n), size), key=lambda s: sum(probs[i] for i in s))
        if sum(probs[i] for i in best) >= p - 1e-12:
            return set(best)
    return set(range(n))


@pytest.mark.parametrize("seed", range(20))
def test_top_p_keeps_the_nucleus_found_by_enumeration(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(7, generator=g, dtype=torch.float64) * 2
    p = float(torch.rand(1, generator=g)) * 0.98 + 0.01
    probs = torch.softmax(logits, -1).tolist()
    kept = set(torch.nonzero(torch.isfinite(gpt.top_p_filter(logits, p))).flatten().tolist())
    assert kept == _nucleus_by_enumeration(probs, p)


def test_top_p_one_keeps_everything_and_greedy_takes_the_argmax():
    logits = torch.randn(4, 9)
    torch.testing.assert_close(gpt.top_p_filter(logits, 1.0), logits)
    assert torch.equal(gpt.sample_next(logits, greedy=True), logits.argmax(-1, keepdim=True))


def test_sampling_frequencies_match_the_probabilities():
    logits = torch.tensor([[1.0, 0.5, 0.0, -2.0]]).expand(20000, 4)
    g = torch.Generator().manual_seed(0)
    draws = gpt.sample_next(logits, temperature=0.7, generator=g).flatten()
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(freq, torch.softmax(logits[0] / 0.7, -1), atol=0.015, rtol=0)


# ----------------------------------------------------------------------------- training


def test_get_batch_targets_are_inputs_shifted_by_one():
    data = torch.arange(100)
    x, y = gpt.get_batch(data, 4, 8, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(y, x + 1)


def test_training_lowers_the_loss_on_a_repeating_pattern():
    torch.manual_seed(0)
    m = gpt.GPT(tiny(vocab_size=5))
    opt = gpt.configure_optimizer(m, lr=3e-3)
    data = torch.arange(500) % 5
    losses = []
    for _ in range(60):
        x, y = gpt.get_batch(data, 8, 16)
        losses.append(float(gpt.train_step(m, opt, x, y)))
    assert losses[0] > 1.4 and losses[-1] < 0.2


def test_cosine_schedule():
    lr = [gpt.cosine_lr(s, max_lr=1.0, min_lr=0.1, warmup=10, total=110) for s in range(120)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert lr[60] == pytest.approx(0.55) and lr[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(lr[9:]))


def test_optimizer_decays_matrices_only():
    m = model()
    opt = gpt.configure_optimizer(m, weight_decay=0.1)
    decay, no_decay = opt.param_groups
    assert all(p.dim() == 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == m.num_params()


# ----------------------------------------------------------------------------- checkpoints


def _run(steps, *, start=0, m=None, opt=None, dropout=0.1):
    data = torch.arange(2000) * 7 % 11
    if m is None:
        torch.manual_seed(0)
        m = gpt.GPT(tiny(dropout=dropout))
        opt = gpt.configure_optimizer(m, lr=1e-3)
    losses = []
    for s in range(start, steps):
        x, y = gpt.get_batch(data, 4, 16)  # the global RNG: must be restored on resume
        lr = gpt.cosine_lr(s, max_lr=1e-3, min_lr=1e-4, warmup=3, total=12)
        losses.append(float(gpt.train_step(m, opt, x, y, lr=lr)))
    return m, opt, losses


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run_exactly(tmp_path):
    _, _, full = _run(12)
    m, opt, first = _run(6)
    path = gpt.save_checkpoint(tmp_path / "ckpt.pt", m, opt, step=6, extra={"losses": first})
    torch.manual_seed(999)  # disturb every random state the run depends on
    torch.randn(100)
    m2 = gpt.GPT(tiny(dropout=0.1))
    opt2 = gpt.configure_optimizer(m2, lr=1e-3)
    info = gpt.load_checkpoint(path, m2, opt2)
    assert info["step"] == 6 and info["extra"]["losses"] == first
    _, _, rest = _run(12, start=info["step"], m=m2, opt=opt2)
    assert first + rest == full  # exact, not approximate: same floats on the same CPU


def test_checkpoint_loads_with_weights_only(tmp_path):
    m = model()
    path = gpt.save_checkpoint(tmp_path / "c.pt", m, step=3)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["step"] == 3 and ckpt["config"]["n_embd"] == 16


def test_checkpoint_of_another_config_is_refused(tmp_path):
    path = gpt.save_checkpoint(tmp_path / "c.pt", model())
    with pytest.raises(ValueError, match="config"):
        gpt.load_checkpoint(path, model(n_embd=32))


def _draws() -> tuple[torch.Tensor, float, np.ndarray]:
    return torch.rand(3), random.random(), np.random.randn(3)


def test_checkpoint_round_trip_of_any_module(tmp_path):
    """dlbook.checkpoint knows nothing of GPTs: a module without a ``config`` comes back with its
    weights, its optimiser's state, the step, the extras and every global random state (NumPy's
    with a cached Gaussian half of a pair)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn(1)  # NumPy now holds the second Gaussian of a pair
    path = checkpoint.save_checkpoint(
        tmp_path / "new" / "any.pt", net, opt, step=7, extra={"note": "x", "t": torch.ones(2)}
    )
    assert path.is_file() and list(path.parent.iterdir()) == [path]  # no .tmp left behind
    expected = _draws()

    torch.manual_seed(9)
    net2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    opt2 = torch.optim.Adam(net2.parameters(), lr=0.1)
    random.seed(9)
    np.random.seed(9)
    info = checkpoint.load_checkpoint(path, net2, opt2)
    got = _draws()
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1]
    assert np.array_equal(got[2], expected[2])
    assert info["step"] == 7 and info["config"] is None and info["extra"]["note"] == "x"
    assert torch.equal(info["extra"]["t"], torch.ones(2))
    for a, b in zip(net.state_dict().values(), net2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    saved_state, loaded_state = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert loaded_state[0]["exp_avg"].abs().sum() > 0  # one Adam step was taken
    assert torch.equal(loaded_state[0]["exp_avg"], saved_state[0]["exp_avg"])

    torch.manual_seed(5)
    before = torch.get_rng_state()
    checkpoint.load_checkpoint(path, net2, restore_rng=False)
    assert torch.equal(torch.get_rng_state(), before)
    bare = checkpoint.save_checkpoint(tmp_path / "bare.pt", net)
    with pytest.raises(ValueError, match="no optimiser state"):
        checkpoint.load_checkpoint(bare, net2, opt2)


# ----------------------------------------------------------------------------- validation


def test_sequence_longer_than_the_context_is_refused():
    m = model()
    with pytest.raises(ValueError, match="longer than the context"):
        m(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_temperature_must_be_positive(bad):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        gpt.next_token_probs(torch.randn(1, 11), temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        gpt.generate(model(), torch.zeros(1, 1, dtype=torch.long), 3, temperature=bad)


@pytest.mark.parametrize("bad", [0, 12, -1, 2.5])
def test_top_k_must_be_within_the_vocabulary(bad):
    with pytest.raises(ValueError, match=r"top_k must be an integer in \[1, 11\]"):
        gpt.next_token_probs(torch.randn(1, 11), top_k=bad)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.01, float("nan")])
def test_top_p_must_be_in_the_unit_interval(bad):
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        gpt.next_token_probs(torch.randn(1, 11), top_p=bad)


def test_other_invalid_inputs_raise_value_errors():
    m = model()
    with pytest.raises(ValueError, match="token ids must be in"):
        m(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        m(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer token ids"):
        m(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="targets"):
        m(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        gpt.GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="positive integer"):
        gpt.GPTConfig(n_layer=0)
    cache = gpt.KVCache(m.config, 1, device="cpu")
    m(torch.zeros(1, 10, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="longer than the context"):
        m(torch.zeros(1, 10, dtype=torch.long), kv_cache=cache)  # positions 10..19 > 16
    with pytest.raises(ValueError, match="KV cache holds at most 16"):
        cache.update(0, torch.zeros(1, 2, 10, 8), torch.zeros(1, 2, 10, 8))
    with pytest.raises(ValueError, match="block_size"):
        gpt.get_batch(torch.arange(5), 2, 5)


# ----------------------------------------------------------------------------- GPU paths


@pytest.mark.gpu
def test_gpu_bf16_training_step_and_cached_generation(monkeypatch):
    dev = torch.device("cuda")
    torch.manual_seed(0)
    m = gpt.GPT(tiny()).to(dev)
    opt = gpt.configure_optimizer(m)
    data = (torch.arange(1000) % 11).to(dev)
    x, y = gpt.get_batch(data, 4, 16, device=dev)
    torch.cuda.set_sync_debug_mode("error")  # any synchronisation in the step raises
    try:
        loss = gpt.train_step(m, opt, x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert math.isfinite(float(loss))
    prompt = torch.zeros(2, 1, dtype=torch.long, device=dev)
    bf16 = gpt.generate(m, prompt, 40, greedy=True)  # under bf16 autocast, the cache in bf16
    assert bf16.shape == (2, 41) and int(bf16.max()) < 11
    monkeypatch.setenv("DLBOOK_AUTOCAST", "off")  # float32: cached and plain agree exactly
    a = gpt.generate(m, prompt, 20, greedy=True)
    b = gpt.generate(m, prompt, 20, greedy=True, use_cache=False)
    assert torch.equal(a, b)


@pytest.mark.gpu
def test_gpu_compiled_model_matches_eager_and_checkpoints_unwrap(tmp_path):
    dev = torch.device("cuda")
    torch.manual_seed(0)
    m = gpt.GPT(tiny()).to(dev)
    compiled = gpt.maybe_compile(m)
    assert compiled is not m  # compiled by default on CUDA
    idx = torch.randint(11, (2, 16), device=dev)
    with torch.no_grad():
        torch.testing.assert_close(compiled(idx)[0], m(idx)[0], rtol=1e-4, atol=1e-4)
    path = gpt.save_checkpoint(tmp_path / "c.pt", compiled)
    assert "wte.weight" in torch.load(path, weights_only=True)["model"]


# ----------------------------------------------------------------------------- the GPU path, on CPU


def test_a_training_step_reads_nothing_back_from_the_device():
    """On a GPU a read of a tensor's value (``.item()``, ``bool(t.min() < 0)``) makes the host
    wait for the device at every step. The ``meta`` device has no values at all: any such read
    raises there, so a step that completes on it reads none (the old ``loss.item()`` and the
    id range check both did)."""
    m = model(dropout=0.1).to("meta")
    idx = torch.zeros(2, 16, dtype=torch.long, device="meta")
    loss = gpt.train_step(m, gpt.configure_optimizer(m), idx, idx)
    assert loss.device.type == "meta" and loss.dim() == 0


def test_attention_weights_get_dropout_in_training_mode_only():
    m = model(dropout=0.5)
    m.drop.p = 0.0
    for blk in m.blocks:  # every dropout but the attention weights' off
        blk.attn.dropout.p = blk.mlp.dropout.p = 0.0
    idx = torch.randint(11, (2, 16))
    a, b = m(idx)[0], m(idx)[0]
    assert not torch.allclose(a, b), "training mode: the attention weights must be dropped"
    m.eval()
    torch.testing.assert_close(m(idx)[0], m(idx)[0], rtol=0, atol=0)
    for blk in m.blocks:
        blk.attn.explicit = True  # the explicit path drops weights too
    m.train()
    assert not torch.allclose(m(idx)[0], m(idx)[0])


def test_last_only_gives_the_last_positions_logits():
    m = model().eval()
    idx = torch.randint(11, (3, 9))
    full, _ = m(idx)
    last, _ = m(idx, last_only=True)
    assert last.shape == (3, 1, 11)
    torch.testing.assert_close(last, full[:, -1:], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="last_only"):
        m(idx, idx, last_only=True)


@pytest.mark.parametrize("how", ["DLBOOK_AUTOCAST=bf16", "torch.autocast around generate"])
def test_generation_under_bf16_autocast_with_and_without_the_cache(how, monkeypatch):
    """The cache held float32 keys while the queries were bf16 under autocast, and
    ``generate(..., use_cache=True)`` raised "q, k, v must share a dtype"."""
    m = model()
    prompt = torch.randint(11, (2, 3))
    if how.startswith("DLBOOK"):
        monkeypatch.setenv("DLBOOK_AUTOCAST", "bf16")
        ctx = torch.autocast("cpu", enabled=False)  # generate autocasts by itself
    else:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16)
    with ctx:
        cached = gpt.generate(m, prompt, 30, greedy=True)  # 33 tokens: past the context of 16
        plain = gpt.generate(m, prompt, 30, greedy=True, use_cache=False)
    assert cached.shape == plain.shape == (2, 33)
    assert torch.equal(cached[:, :3], prompt) and int(cached.max()) < 11
    with ctx:  # the cache itself holds bf16, as the model computes under autocast
        cache = gpt.KVCache(m.config, 2, device="cpu")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            m.eval()(prompt, kv_cache=cache)
    assert cache.k.dtype == cache.v.dtype == torch.bfloat16


def test_autocast_setting_is_validated(monkeypatch):
    monkeypatch.setenv("DLBOOK_AUTOCAST", "fp8")
    with pytest.raises(ValueError, match="DLBOOK_AUTOCAST"):
        gpt.autocast("cpu")


def test_a_cache_refuses_keys_of_another_dtype_once_filled():
    m = model().eval()
    cache = gpt.KVCache(m.config, 1, device="cpu")
    m(torch.zeros(1, 4, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="same autocast"):
        cache.update(0, torch.zeros(1, 2, 1, 8, dtype=torch.bfloat16), torch.zeros(1, 2, 1, 8))


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_equals_the_definition_past_the_context(use_cache):
    """The plain definition: run the model on the last block_size tokens, take the argmax of the
    last position's logits, append, repeat. 30 new tokens outgrow the 16-token context."""
    m = model(seed=3).eval()
    out = torch.randint(11, (2, 5))
    expected = out
    with torch.no_grad():
        for _ in range(30):
            logits, _ = m(expected[:, -16:])
            expected = torch.cat([expected, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    got = gpt.generate(m, out, 30, greedy=True, use_cache=use_cache)
    assert torch.equal(got, expected)


# ----------------------------------------------------------------------------- the package


# Every public name of dlbook.gpt when it was one file: notebooks, tests and benchmarks use them.
PUBLIC_NAMES = [
    "AUTOCAST_ENV",
    "BERT_SHAPES",
    "GPT_SHAPES",
    "bert_param_count",
    "decode_bpe",
    "encode_bpe",
    "gpt_shape_param_count",
    "token_bytes",
    "train_bpe",
    "training_flops",
    "Block",
    "CausalSelfAttention",
    "GPT",
    "GPTConfig",
    "KVCache",
    "MLP",
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


def test_every_public_name_of_the_package_still_resolves():
    # Added since: checkpoint.unwrap, the module inside a compiled model.
    assert sorted(gpt.__all__) == sorted([*PUBLIC_NAMES, "unwrap"])
    homes = {
        "dlbook.gpt.model",
        "dlbook.gpt.sample",
        "dlbook.gpt.train",
        "dlbook.gpt.bpe",
        "dlbook.gpt.shapes",
        "dlbook.checkpoint",
    }
    for name in PUBLIC_NAMES:
        obj = getattr(gpt, name)
        if callable(obj):  # defined in one of the package's files, not a copy
            assert obj.__module__ in homes, (name, obj.__module__)
    assert gpt.save_checkpoint is checkpoint.save_checkpoint
    assert gpt.load_checkpoint is checkpoint.load_checkpoint
    assert gpt.unwrap is checkpoint.unwrap
    assert gpt.GPT is gpt.model.GPT and gpt.generate is gpt.sample.generate
