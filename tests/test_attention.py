"""dlbook.attention against PyTorch's own attention, autograd and finite differences.

References we did not write: ``torch.nn.functional.scaled_dot_product_attention``,
``torch.nn.MultiheadAttention``, ``torch.softmax``, ``torch.autograd`` (and its ``gradcheck``,
which uses finite differences).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dlbook import attention as A

TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 3e-2}
SHAPES = [  # (batch dims, T_q, T_k, d_k, d_v)
    ((), 5, 5, 4, 4),
    ((3,), 7, 7, 8, 8),
    ((2, 4), 6, 9, 16, 8),
    ((2, 3), 1, 11, 8, 5),
    ((1, 2), 13, 13, 32, 32),
]


def _qkv(batch, t_q, t_k, d_k, d_v, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, t_q, d_k, generator=g, dtype=torch.float64).to(dtype)
    k = torch.randn(*batch, t_k, d_k, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(*batch, t_k, d_v, generator=g, dtype=torch.float64).to(dtype)
    return q, k, v


# ----------------------------------------------------------------------------- the forward pass


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("explicit", [False, True])
def test_matches_torch_sdpa(dtype, shape, is_causal, explicit):
    q, k, v = _qkv(*shape, dtype=dtype)
    ours = A.scaled_dot_product_attention(q, k, v, is_causal=is_causal, explicit=explicit)
    ref = F.scaled_dot_product_attention(
        q.double(), k.double(), v.double(), is_causal=is_causal
    ).to(dtype)
    assert ours.dtype == dtype and ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bool_masks_and_scale_match_torch(dtype):
    q, k, v = _qkv((2, 3), 6, 6, 8, 4, dtype=dtype, seed=1)
    lengths = torch.tensor([6, 3])
    mask = A.padding_mask(lengths, 6)[:, None] & A.causal_mask(6)  # (2, 1, 6, 6)
    for scale in (None, 0.1):
        for explicit in (False, True):
            ours = A.scaled_dot_product_attention(
                q, k, v, mask=mask, scale=scale, explicit=explicit
            )
            ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
            torch.testing.assert_close(ours, ref, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("seed", range(20))
def test_random_shapes_and_masks_match_torch(seed):
    g = torch.Generator().manual_seed(100 + seed)

    def r(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    batch = tuple(r(1, 3) for _ in range(r(0, 2)))
    t_q, t_k, d_k, d_v = r(1, 12), r(1, 12), r(1, 24), r(1, 24)
    q, k, v = _qkv(batch, t_q, t_k, d_k, d_v, seed=seed)
    mask = torch.rand(*batch, t_q, t_k, generator=g) < 0.7
    mask[..., 0] = True  # every query keeps at least one key
    scale = None if seed % 2 else 0.5
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    for explicit in (False, True):
        ours = A.scaled_dot_product_attention(q, k, v, mask=mask, scale=scale, explicit=explicit)
        torch.testing.assert_close(ours, ref, atol=1e-10, rtol=1e-10)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    d_out = torch.randn(out.shape, generator=g, dtype=out.dtype)
    qq, kk, vv = (t.clone().requires_grad_(True) for t in (q, k, v))
    F.scaled_dot_product_attention(qq, kk, vv, attn_mask=mask, scale=scale).backward(d_out)
    grads = A.attention_backward(q, k, v, d_out, mask=mask, scale=scale)
    for ours, ref_grad in zip(grads, (qq.grad, kk.grad, vv.grad)):
        torch.testing.assert_close(ours, ref_grad, atol=1e-10, rtol=1e-8)


def test_weights_are_distributions_and_zero_where_masked():
    q, k, v = _qkv((2,), 5, 5, 4, 3)
    mask = A.padding_mask(torch.tensor([5, 2]), 5) & A.causal_mask(5)
    out, w = A.scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5, dtype=w.dtype))
    assert (w[~mask.expand_as(w)] == 0).all()
    torch.testing.assert_close(out, w @ v)


def test_causal_mask_is_top_left_aligned_like_torch():
    q, k, v = _qkv((), 3, 5, 4, 4)
    ours = A.scaled_dot_product_attention(q, k, v, mask=A.causal_mask(3, 5))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(k=torch.zeros(2, 5, 3)), r"q has shape \(2, 5, 4\), k has shape \(2, 5, 3\)"),
        (dict(v=torch.zeros(2, 4, 4)), r"k has shape \(2, 5, 4\), v has shape \(2, 4, 4\)"),
        (dict(q=torch.zeros(3, 5, 4)), "do not broadcast"),
        (dict(q=torch.zeros(5)), r"\(\.\.\., T, d\)"),
        (dict(mask=torch.ones(5, 5)), "bool"),
        (dict(mask=torch.ones(4, 4, dtype=torch.bool)), "does not broadcast"),
        (dict(scale=-1.0), "scale must be > 0"),
        (dict(v=torch.zeros(2, 5, 4, dtype=torch.float64)), "share a dtype"),
    ],
)
def test_bad_inputs_raise_value_error_naming_them(bad, match):
    args = dict(q=torch.zeros(2, 5, 4), k=torch.zeros(2, 5, 4), v=torch.zeros(2, 5, 4))
    kw = {n: bad.pop(n) for n in ("mask", "scale") if n in bad}
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        A.scaled_dot_product_attention(args["q"], args["k"], args["v"], **kw)


def test_mask_and_is_causal_together_raise():
    q, k, v = _qkv((), 3, 3, 2, 2)
    with pytest.raises(ValueError, match="not both"):
        A.scaled_dot_product_attention(q, k, v, mask=A.causal_mask(3), is_causal=True)


def test_mask_helpers_validate():
    with pytest.raises(ValueError, match=">= 1"):
        A.causal_mask(0)
    with pytest.raises(ValueError, match=r"\[1, 4\]"):
        A.padding_mask(torch.tensor([5]), 4)
    with pytest.raises(ValueError, match="1-D"):
        A.padding_mask(torch.tensor([[2]]), 4)


# ----------------------------------------------------------------------------- gradients


def test_softmax_jacobian_matches_autograd():
    z = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    jac = A.softmax_jacobian(z)
    for b in range(3):
        ref = torch.autograd.functional.jacobian(lambda x: torch.softmax(x, -1), z[b])
        torch.testing.assert_close(jac[b], ref)
    torch.testing.assert_close(jac.sum(-1), torch.zeros(3, 6, dtype=torch.float64))
    torch.testing.assert_close(jac, jac.transpose(-2, -1))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_backward_matches_autograd(shape, is_causal):
    q, k, v = (t.requires_grad_(True) for t in _qkv(*shape, seed=3))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(4))
    out.backward(g)
    dq, dk, dv = A.attention_backward(q.detach(), k.detach(), v.detach(), g, is_causal=is_causal)
    for ours, ref in ((dq, q.grad), (dk, k.grad), (dv, v.grad)):
        torch.testing.assert_close(ours, ref, atol=1e-10, rtol=1e-10)


def test_attention_backward_with_padding_and_broadcast_keys():
    q, _, _ = _qkv((2, 3), 4, 4, 8, 8, seed=5)
    _, k, v = _qkv((2, 1), 4, 4, 8, 8, seed=6)  # keys shared by the 3 heads: grads must sum
    mask = A.padding_mask(torch.tensor([4, 2]), 4)[:, None]
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(7))
    out.backward(g)
    grads = A.attention_backward(q.detach(), k.detach(), v.detach(), g, mask=mask, scale=0.3)
    for ours, ref in zip(grads, (q.grad, k.grad, v.grad)):
        assert ours.shape == ref.shape
        torch.testing.assert_close(ours, ref)


def test_explicit_path_passes_finite_difference_gradcheck():
    q, k, v = (t.requires_grad_(True) for t in _qkv((2,), 4, 5, 3, 2, seed=8))
    mask = A.padding_mask(torch.tensor([5, 3]), 5)
    assert torch.autograd.gradcheck(
        lambda q, k, v: A.scaled_dot_product_attention(q, k, v, mask=mask, explicit=True),
        (q, k, v),
    )


def test_attention_backward_rejects_wrong_grad_shape():
    q, k, v = _qkv((), 3, 3, 2, 2)
    with pytest.raises(ValueError, match="grad_out"):
        A.attention_backward(q, k, v, torch.zeros(3, 3, dtype=q.dtype))


# ----------------------------------------------------------------------------- multi-head


def _torch_mha(d, h, seed=0, bias=True):
    torch.manual_seed(seed)
    mha = torch.nn.MultiheadAttention(d, h, batch_first=True, bias=bias).eval()
    with torch.no_grad():  # non-zero biases, so that copying them is tested too
        if bias:
            mha.in_proj_bias.normal_()
            mha.out_proj.bias.normal_()
    return mha


@pytest.mark.parametrize("d, h, t", [(8, 1, 5), (16, 4, 7), (32, 8, 3), (12, 3, 10)])
@pytest.mark.parametrize("explicit", [False, True])
def test_multi_head_matches_nn_multiheadattention(d, h, t, explicit):
    mha = _torch_mha(d, h)
    ours = A.MultiHeadAttention(d, h, explicit=explicit).load_torch(mha)
    x = torch.randn(3, t, d, generator=torch.Generator().manual_seed(9))
    ref, ref_w = mha(x, x, x, need_weights=True, average_attn_weights=False)
    out, w = ours(x, need_weights=True)
    assert (out - ref).abs().max() <= 1e-5
    assert (w - ref_w).abs().max() <= 1e-5
    assert sum(p.numel() for p in ours.parameters()) == 4 * d * d + 4 * d


@pytest.mark.parametrize("explicit", [False, True])
def test_multi_head_scale_is_the_factor_on_the_scores(explicit):
    d, h = 16, 4
    mha = _torch_mha(d, h, seed=3)
    ours = A.MultiHeadAttention(d, h, explicit=explicit, scale=1.0).load_torch(mha)
    # PyTorch divides the scores by sqrt(d/h): queries sqrt(d/h) times larger undo it
    with torch.no_grad():
        mha.in_proj_weight[:d] *= math.sqrt(d // h)
        mha.in_proj_bias[:d] *= math.sqrt(d // h)
    x = torch.randn(2, 6, d, generator=torch.Generator().manual_seed(12))
    ref, ref_w = mha(x, x, x, need_weights=True, average_attn_weights=False)
    out, w = ours(x, need_weights=True)
    assert (out - ref).abs().max() <= 1e-4 and (w - ref_w).abs().max() <= 1e-5
    default = A.MultiHeadAttention(d, h, explicit=explicit).load_torch(_torch_mha(d, h, seed=3))
    assert (default(x) - out).abs().max() > 1e-2  # the default is not the unscaled one
    with pytest.raises(ValueError, match="scale must be a positive number"):
        A.MultiHeadAttention(d, h, scale=0)


def test_multi_head_masks_match_nn_multiheadattention():
    d, h, t = 16, 4, 6
    mha = _torch_mha(d, h, seed=1)
    ours = A.MultiHeadAttention(d, h).load_torch(mha)
    x = torch.randn(2, t, d, generator=torch.Generator().manual_seed(10))
    lengths = torch.tensor([6, 4])
    # PyTorch's masks mean the opposite: True = may NOT attend.
    ref, _ = mha(x, x, x, key_padding_mask=~A.padding_mask(lengths, t)[:, 0])
    torch.testing.assert_close(ours(x, mask=A.padding_mask(lengths, t)), ref)
    ref, _ = mha(x, x, x, attn_mask=~A.causal_mask(t))
    torch.testing.assert_close(ours(x, is_causal=True), ref)


def test_cross_attention_matches_nn_multiheadattention():
    d, h = 16, 2
    mha = _torch_mha(d, h, seed=2)
    ours = A.MultiHeadAttention(d, h).load_torch(mha)
    g = torch.Generator().manual_seed(11)
    x_q, x_kv = torch.randn(2, 3, d, generator=g), torch.randn(2, 8, d, generator=g)
    torch.testing.assert_close(ours(x_q, x_kv), mha(x_q, x_kv, x_kv)[0])


def test_split_and_merge_heads_are_inverse_and_match_the_weight_layout():
    mha = A.MultiHeadAttention(12, 3)
    x = torch.randn(2, 5, 12)
    s = mha.split_heads(x)
    assert s.shape == (2, 3, 5, 4)
    torch.testing.assert_close(s[:, 1], x[..., 4:8])  # head 1 owns features 4..7
    torch.testing.assert_close(mha.merge_heads(s), x)


def test_multi_head_validates():
    with pytest.raises(ValueError, match="must divide"):
        A.MultiHeadAttention(10, 3)
    mha = A.MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"\(B, T, d=8\), got \(2, 5, 6\)"):
        mha(torch.zeros(2, 5, 6))
    with pytest.raises(ValueError, match="batch sizes"):
        mha(torch.zeros(2, 5, 8), torch.zeros(3, 5, 8))
    with pytest.raises(ValueError, match=r"expected nn\.MultiheadAttention"):
        mha.load_torch(torch.nn.MultiheadAttention(8, 4))


def test_self_attention_is_permutation_equivariant_without_a_causal_mask():
    mha = A.MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 9, 16, dtype=torch.float32)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        torch.testing.assert_close(mha(x)[:, perm], mha(x[:, perm]), atol=1e-6, rtol=1e-5)
        assert (
            mha(x, is_causal=True)[:, perm] - mha(x[:, perm], is_causal=True)
        ).abs().max() > 1e-3


# ----------------------------------------------------------------------------- online and tiled


@pytest.mark.parametrize("block", [1, 3, 8, 100])
def test_online_softmax_equals_softmax(block):
    x = 30 * torch.randn(4, 37, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    torch.testing.assert_close(A.online_softmax(x, block), torch.softmax(x, -1))
    big = torch.tensor([1000.0, 999.0, -1000.0])  # would overflow without the running max
    torch.testing.assert_close(A.online_softmax(big, 1), torch.softmax(big, -1))


@pytest.mark.parametrize("block", [1, 4, 16, 64])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_tiled_attention_equals_attention(block, is_causal, shape):
    q, k, v = _qkv(*shape, seed=14)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    torch.testing.assert_close(A.tiled_attention(q, k, v, block=block, is_causal=is_causal), ref)


def test_online_and_tiled_validate():
    with pytest.raises(ValueError, match="block"):
        A.online_softmax(torch.zeros(3), 0)
    q, k, v = _qkv((), 3, 3, 2, 2)
    with pytest.raises(ValueError, match="block"):
        A.tiled_attention(q, k, v, block=0)
    with pytest.raises(ValueError, match="q has shape"):
        A.tiled_attention(q, k[..., :1], v)


def test_sinusoidal_positions():
    pe = A.sinusoidal_positions(50, 16)
    assert pe.shape == (50, 16)
    p, i = 7, 3
    assert math.isclose(pe[p, 2 * i].item(), math.sin(p / 10000 ** (2 * i / 16)), abs_tol=1e-6)
    assert math.isclose(pe[p, 2 * i + 1].item(), math.cos(p / 10000 ** (2 * i / 16)), abs_tol=1e-6)
    # A shift by k is a fixed rotation of each (sin, cos) pair: the same for every position.
    torch.testing.assert_close(pe.norm(dim=1), torch.full((50,), math.sqrt(8.0)))
    with pytest.raises(ValueError, match="even"):
        A.sinusoidal_positions(5, 7)


def _rope_complex(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """RoPE as the RoFormer paper's complex form: pair (2i, 2i+1) times exp(1j * m * w_i)."""
    d = x.shape[-1]
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    freq = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angle = positions.double()[..., None] * freq
    return torch.view_as_real(z * torch.polar(torch.ones_like(angle), angle)).flatten(-2)


@pytest.mark.parametrize("shape", [(5, 2), (7, 8), (2, 3, 9, 16), (1, 4, 6, 64)])
def test_rope_is_the_complex_rotation_of_the_paper(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    pos = torch.arange(shape[-2]) * 3 + 1
    torch.testing.assert_close(A.rope(x, pos), _rope_complex(x, pos), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(A.rope(x, pos, base=100.0), _rope_complex(x, pos, base=100.0))
    # a rotation keeps lengths, position 0 changes nothing, dtype is kept
    torch.testing.assert_close(A.rope(x, pos).norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(A.rope(x, torch.zeros(shape[-2])), x)
    assert A.rope(x.float(), pos).dtype == torch.float32


def test_rope_scores_depend_only_on_the_offset():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 12, 32, generator=g, dtype=torch.float64)
    m = torch.arange(12)
    scores = A.rope(q, m) @ A.rope(k, m).T  # (12, 12): query at m, key at n
    for shift in (1, 5, 1000):
        shifted = A.rope(q, m + shift) @ A.rope(k, m + shift).T
        torch.testing.assert_close(shifted, scores, atol=1e-9, rtol=1e-9)
    # and the offset does matter: the same q, k at offsets 0 and 3 score differently
    s0 = A.rope(q[:1], torch.tensor([4])) @ A.rope(k[:1], torch.tensor([4])).T
    s3 = A.rope(q[:1], torch.tensor([4])) @ A.rope(k[:1], torch.tensor([7])).T
    assert not torch.allclose(s0, s3)
    # rotations compose: rotating by m, then by n, is rotating by m + n
    torch.testing.assert_close(A.rope(A.rope(q, m), 2 * m), A.rope(q, 3 * m))


def test_rope_has_gradients_and_validates():
    x = torch.randn(3, 4, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: A.rope(t, torch.arange(4)), (x,))
    with pytest.raises(ValueError, match="even"):
        A.rope(torch.randn(4, 7), torch.arange(4))
    with pytest.raises(ValueError, match="broadcast"):
        A.rope(torch.randn(4, 8), torch.arange(5))
    with pytest.raises(ValueError, match="floating"):
        A.rope(torch.arange(8).reshape(2, 4), torch.arange(2))
    with pytest.raises(ValueError, match="base"):
        A.rope(torch.randn(4, 8), torch.arange(4), base=0.0)
    with pytest.raises(ValueError, match="integers or floats"):
        A.rope(torch.randn(4, 8), torch.ones(4, dtype=torch.bool))


# ----------------------------------------------------------------------------- GPU fast path


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_fused_path_on_gpu_matches_explicit(dtype):
    q, k, v = (t.cuda() for t in _qkv((2, 4), 128, 128, 64, 64, dtype=dtype))
    fused = A.scaled_dot_product_attention(q, k, v, is_causal=True)
    explicit = A.scaled_dot_product_attention(
        q.double(), k.double(), v.double(), is_causal=True, explicit=True
    )
    tol = {torch.float16: 5e-3, torch.bfloat16: 3e-2, torch.float32: 1e-4}[dtype]
    torch.testing.assert_close(fused.double(), explicit, atol=tol, rtol=tol)
    tiled = A.tiled_attention(q.float(), k.float(), v.float(), block=32, is_causal=True)
    torch.testing.assert_close(tiled.double(), explicit, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("explicit", [True, False])
def test_attention_dropout_is_unbiased_and_validated(explicit):
    """Dropout on the weights zeroes some and scales the rest by 1/(1-p): on average over many
    draws the output is the output without dropout (both paths: explicit and PyTorch's kernel)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    exact = A.scaled_dot_product_attention(q, k, v, is_causal=True, explicit=explicit)
    torch.manual_seed(0)
    draws = torch.stack(
        [
            A.scaled_dot_product_attention(
                q, k, v, is_causal=True, explicit=explicit, dropout_p=0.3
            )
            for _ in range(2000)
        ]
    )
    assert not torch.allclose(draws[0], exact)  # one draw differs ...
    torch.testing.assert_close(draws.mean(0), exact, rtol=0, atol=0.05)  # ... the mean does not
    with pytest.raises(ValueError, match="dropout_p"):
        A.scaled_dot_product_attention(q, k, v, dropout_p=1.0)
