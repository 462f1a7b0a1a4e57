"""Chapter 2's checkers accept right answers and name each plausible wrong one.

Two kinds of wrong answers are submitted: each checker's own list of mistakes, and wrong answers
written here the way a student would write them (so that recognising a mistake does not depend on
it being computed exactly as the checker computes it).
"""

from __future__ import annotations

import math

import pytest
import torch

from dlbook import attention as A
from dlbook.exercises import attention as ex

# ----------------------------------------------------------------------------- right answers


def masked_attention_right(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=scores.dtype))
    return torch.softmax(scores, dim=-1) @ v


def multi_head_right(x, w_in, b_in, w_out, b_out, h):
    mha = A.MultiHeadAttention(x.shape[-1], h).double()
    d = x.shape[-1]
    with torch.no_grad():
        for i, lin in enumerate((mha.q_proj, mha.k_proj, mha.v_proj)):
            lin.weight.copy_(w_in[i * d : (i + 1) * d])
            lin.bias.copy_(b_in[i * d : (i + 1) * d])
        mha.out_proj.weight.copy_(w_out)
        mha.out_proj.bias.copy_(b_out)
        return mha(x)


def softmax_jacobian_right(z):
    p = torch.exp(z - z.max()) / torch.exp(z - z.max()).sum()
    return torch.diag(p) - p[:, None] * p[None, :]


def online_softmax_right(x, block):
    m = torch.tensor(float("-inf"), dtype=x.dtype)
    s = torch.tensor(0.0, dtype=x.dtype)
    for start in range(0, x.numel(), block):
        chunk = x[start : start + block]
        new_m = torch.maximum(m, chunk.max())
        s = s * torch.exp(m - new_m) + torch.exp(chunk - new_m).sum()
        m = new_m
    return torch.exp(x - m) / s


CHECKERS = {
    "masked_attention": (
        ex.check_masked_attention,
        masked_attention_right,
        ex.MASKED_ATTENTION_MISTAKES,
    ),
    "multi_head": (ex.check_multi_head_attention, multi_head_right, ex.MULTI_HEAD_MISTAKES),
    "softmax_jacobian": (
        ex.check_softmax_jacobian,
        softmax_jacobian_right,
        ex.SOFTMAX_JACOBIAN_MISTAKES,
    ),
    "online_softmax": (ex.check_online_softmax, online_softmax_right, ex.ONLINE_SOFTMAX_MISTAKES),
}


@pytest.mark.parametrize("name", CHECKERS)
def test_checker_accepts_a_right_answer(name, capsys):
    checker, right, _ = CHECKERS[name]
    report = checker(right)
    assert report.passed and report.n_failed == 0
    assert "All" in capsys.readouterr().out


@pytest.mark.parametrize("name", CHECKERS)
def test_checker_lists_at_least_three_mistakes(name):
    assert len(CHECKERS[name][2]) >= 3


@pytest.mark.parametrize(
    "name, mistake",
    [(n, m.name) for n, (_, _, ms) in CHECKERS.items() for m in ms],
)
def test_checker_rejects_each_listed_mistake_by_name(name, mistake):
    checker, _, mistakes = CHECKERS[name]
    wrong = next(m for m in mistakes if m.name == mistake)
    with pytest.raises(AssertionError) as err:
        checker(wrong.wrong)
    assert f"known mistake, {mistake}:" in str(err.value)


def test_dlbook_functions_pass_their_own_exercises():
    ex.check_masked_attention(lambda q, k, v, m: A.scaled_dot_product_attention(q, k, v, mask=m))
    ex.check_softmax_jacobian(A.softmax_jacobian)
    ex.check_online_softmax(A.online_softmax)


# ----------------------------------------------------------------------------- student-style errors


def _fails_with(checker, fn, name):
    with pytest.raises(AssertionError) as err:
        checker(fn)
    assert f"known mistake, {name}:" in str(err.value), str(err.value)


def test_student_style_masked_attention_mistakes():
    def with_zero(q, k, v, mask):
        s = torch.matmul(q, k.transpose(-1, -2)) / q.shape[-1] ** 0.5
        return torch.softmax(s * mask, dim=-1) @ v  # multiplying by the mask: 0, not -inf

    def unscaled(q, k, v, mask):
        s = torch.einsum("...id,...jd->...ij", q, k)
        return torch.softmax(s.masked_fill(mask == 0, -1e30), dim=-1) @ v

    def wrong_axis(q, k, v, mask):
        s = (q @ k.mT) / math.sqrt(k.shape[-1])
        return s.masked_fill(~mask, -math.inf).softmax(dim=-2) @ v

    _fails_with(ex.check_masked_attention, with_zero, "masked scores set to 0")
    _fails_with(ex.check_masked_attention, unscaled, "no scaling")
    _fails_with(ex.check_masked_attention, wrong_axis, "softmax over the queries")


def _sdpa(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def test_student_style_multi_head_mistakes():
    def no_transpose(x, w_in, b_in, w_out, b_out, h):
        B, T, d = x.shape
        q, k, v = torch.chunk(x @ w_in.t() + b_in, 3, dim=-1)
        q, k, v = (z.view(B, h, T, d // h) for z in (q, k, v))
        o = _sdpa(q, k, v).transpose(1, 2).reshape(B, T, d)
        return o @ w_out.t() + b_out

    def forgot_projection(x, w_in, b_in, w_out, b_out, h):
        B, T, d = x.shape
        q, k, v = torch.chunk(x @ w_in.t() + b_in, 3, dim=-1)
        q, k, v = (z.view(B, T, h, d // h).transpose(1, 2) for z in (q, k, v))
        return _sdpa(q, k, v).transpose(1, 2).reshape(B, T, d)

    _fails_with(ex.check_multi_head_attention, no_transpose, "heads split without a transpose")
    _fails_with(ex.check_multi_head_attention, forgot_projection, "no output projection")


def test_student_style_jacobian_and_online_mistakes():
    def only_diagonal(z):
        p = torch.softmax(z, 0)
        return torch.diag_embed(p - p**2)

    def no_rescale(x, block):
        m, s = -math.inf, 0.0
        for j in range(0, len(x), block):
            m = max(m, float(x[j : j + block].max()))
            s += float(torch.exp(x[j : j + block] - m).sum())
        return torch.exp(x - m) / s

    _fails_with(ex.check_softmax_jacobian, only_diagonal, "the diagonal only")
    _fails_with(ex.check_online_softmax, no_rescale, "the running sum not rescaled")


def test_not_implemented_passes_through():
    def stub(*args):
        raise NotImplementedError()

    for checker, _, _ in CHECKERS.values():
        with pytest.raises(NotImplementedError):
            checker(stub)
