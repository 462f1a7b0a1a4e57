"""Chapter 2's checkers beyond the contract (``test_exercises_contract.py``): the library
shortcuts each exercise switches off are refused with a message that names them (and are back
afterwards), the online softmax's stream enforces its two rules, and tiled attention's guard
refuses the full score matrix and a full row of it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dlbook import attention as A
from dlbook.attention import softmax_jacobian as jacobian_imported_early
from dlbook.exercises import attention as ex
from dlbook.exercises.checker import ForbiddenCall

from exercise_answers import online_softmax_right, tiled_attention_right

SWITCHED_OFF = "is switched off while your function runs"


def _explicit_softmax(x, dim=-1):
    e = torch.exp(x - x.amax(dim, keepdim=True))
    return e / e.sum(dim, keepdim=True)


# ----------------------------------------------------------------------------- the shortcuts


def _mha_module(x, w_in, b_in, w_out, b_out, h):
    mha = torch.nn.MultiheadAttention(x.shape[-1], h, batch_first=True, dtype=x.dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(w_in)
        mha.in_proj_bias.copy_(b_in)
        mha.out_proj.weight.copy_(w_out)
        mha.out_proj.bias.copy_(b_out)
    return mha(x, x, x, need_weights=False)[0]


def _mha_functional(x, w_in, b_in, w_out, b_out, h):
    t = x.transpose(0, 1)  # (T, B, d)
    out = F.multi_head_attention_forward(
        t,
        t,
        t,
        x.shape[-1],
        h,
        w_in,
        b_in,
        None,
        None,
        False,
        0.0,
        w_out,
        b_out,
        need_weights=False,
    )[0]
    return out.transpose(0, 1)


def _mha_dlbook(x, w_in, b_in, w_out, b_out, h):
    mha = A.MultiHeadAttention(x.shape[-1], h).double()
    return mha(x)


def _backward_through(q, k, v, dout):
    q, k, v = (t.clone().requires_grad_(True) for t in (q, k, v))
    F.scaled_dot_product_attention(q, k, v).backward(dout)
    return {"dq": q.grad, "dk": k.grad, "dv": v.grad}


def _grad_through(q, k, v, dout):
    q, k, v = (t.clone().requires_grad_(True) for t in (q, k, v))
    out = torch.softmax(q @ k.mT / math.sqrt(q.shape[-1]), -1) @ v
    return dict(zip(("dq", "dk", "dv"), torch.autograd.grad(out, (q, k, v), dout)))


def _vjp_through(q, k, v, dout):
    _, vjp = torch.func.vjp(lambda *t: F.scaled_dot_product_attention(*t), q, k, v)
    return dict(zip(("dq", "dk", "dv"), vjp(dout)))


def _kept_copies(blocks):
    return torch.cat([b.clone() for b in blocks()])  # the whole row, copied block by block


SHORTCUTS = [
    # (exercise, answer, the name the refusal must give)
    (
        "masked_attention",
        lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
        "torch.nn.functional.scaled_dot_product_attention",
    ),
    (
        "masked_attention",
        lambda q, k, v, m: A.scaled_dot_product_attention(q, k, v, mask=m, explicit=True),
        "dlbook.attention.scaled_dot_product_attention",
    ),
    ("multi_head_attention", _mha_module, "torch.nn.MultiheadAttention"),
    ("multi_head_attention", _mha_functional, "torch.nn.functional.multi_head_attention_forward"),
    ("multi_head_attention", _mha_dlbook, "dlbook.attention.MultiHeadAttention"),
    (
        "softmax_jacobian",
        lambda z: torch.autograd.functional.jacobian(lambda x: torch.softmax(x, -1), z),
        "torch.autograd.functional.jacobian",
    ),
    (
        "softmax_jacobian",
        lambda z: torch.func.jacrev(lambda x: torch.softmax(x, -1))(z),
        "torch.func.jacrev",
    ),
    (
        "softmax_jacobian",
        lambda z: torch.func.jacfwd(lambda x: torch.softmax(x, -1))(z),
        "torch.func.jacfwd",
    ),
    ("softmax_jacobian", jacobian_imported_early, "dlbook.attention.softmax_jacobian"),
    ("attention_backward", _backward_through, "torch.Tensor.backward"),
    ("attention_backward", _grad_through, "torch.autograd.grad"),
    ("attention_backward", _vjp_through, "torch.func.vjp"),
    (
        "attention_backward",
        lambda q, k, v, d: dict(zip(("dq", "dk", "dv"), A.attention_backward(q, k, v, d))),
        "dlbook.attention.attention_backward",
    ),
    (
        "online_softmax",
        lambda blocks: torch.softmax(_kept_copies(blocks), 0),
        "torch.softmax",
    ),
    (
        "online_softmax",
        lambda blocks: _kept_copies(blocks).softmax(-1),
        "torch.Tensor.softmax",
    ),
    (
        "online_softmax",
        lambda blocks: F.softmax(_kept_copies(blocks), dim=0),
        "torch.nn.functional.softmax",
    ),
    (
        "online_softmax",
        lambda blocks: torch.exp(_kept_copies(blocks) - _kept_copies(blocks).logsumexp(0)),
        "torch.Tensor.logsumexp",
    ),
    (
        "online_softmax",
        lambda blocks: A.online_softmax(_kept_copies(blocks), 4),
        "dlbook.attention.online_softmax",
    ),
    (
        "tiled_attention",
        lambda q, k, v, block: F.scaled_dot_product_attention(q, k, v),
        "torch.nn.functional.scaled_dot_product_attention",
    ),
    (
        "tiled_attention",
        lambda q, k, v, block: A.tiled_attention(q, k, v, block=block),
        "dlbook.attention.tiled_attention",
    ),
    (
        "tiled_attention",
        lambda q, k, v, block: torch.cat(
            [
                torch.softmax(q[..., i : i + 1, :] @ k.mT / math.sqrt(q.shape[-1]), -1) @ v
                for i in range(q.shape[-2])
            ],
            dim=-2,
        ),
        "torch.softmax",
    ),
]


@pytest.mark.parametrize(
    ("name", "answer", "refused"), SHORTCUTS, ids=[f"{n}/{r}" for n, _, r in SHORTCUTS]
)
def test_each_library_shortcut_is_refused_by_name(name, answer, refused):
    exercise = ex.EXERCISES[name]
    n = len(exercise.cases())
    with pytest.raises(AssertionError) as err:
        getattr(ex, f"check_{name}")(answer)
    feedback = str(err.value)
    assert f"{n} of {n} cases failed" in feedback, feedback
    assert f"raised ForbiddenCall: {exercise.rule}: {refused} {SWITCHED_OFF}" in feedback


def test_the_shortcuts_work_again_after_the_checks():
    """Every function switched off inside a check is the original again afterwards."""
    for name in ("masked_attention", "softmax_jacobian", "online_softmax"):
        with pytest.raises(AssertionError):
            getattr(ex, f"check_{name}")(lambda *args: F.scaled_dot_product_attention(*args))
    q = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    out = F.scaled_dot_product_attention(q, q, q)
    out.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    z = torch.randn(5, dtype=torch.float64)
    auto = torch.autograd.functional.jacobian(lambda x: torch.softmax(x, -1), z)
    assert torch.allclose(jacobian_imported_early(z), auto, atol=1e-12)
    assert torch.allclose(A.online_softmax(z, 2), torch.softmax(z, 0), atol=1e-12)
    assert torch.allclose(torch.logsumexp(z, 0), torch.log(torch.exp(z).sum()))
    assert "softmax" not in vars(torch.Tensor) and "logsumexp" not in vars(torch.Tensor)


def test_the_softmax_is_allowed_where_only_autograd_is_switched_off():
    """The Jacobian and the backward pass may call torch.softmax for the forward pass."""

    def jacobian(z):
        p = torch.softmax(z, dim=-1)
        return torch.diag(p) - torch.outer(p, p)

    assert ex.check_softmax_jacobian(jacobian).passed


# ----------------------------------------------------------------------------- the stream


def _stream(n=10, block=3):
    return ex.BlockStream(torch.arange(float(n), dtype=torch.float64), block)


def test_the_stream_gives_blocks_for_two_passes_and_refuses_a_third():
    blocks = _stream()
    assert len(blocks) == 10 and "blocks of 3" in repr(blocks)
    first = [b.tolist() for b in blocks()]
    assert first == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0], [9.0]]
    assert [b.numel() for b in blocks()] == [3, 3, 3, 1]
    with pytest.raises(ForbiddenCall, match="blocks\\(\\) may be called 2 times"):
        blocks()


def test_a_block_is_gone_once_the_next_arrives_or_its_pass_ends():
    blocks = _stream()
    it = blocks()
    b0 = next(it)
    assert float(b0.sum()) == 3.0  # usable while it is the current block
    kept = b0 * 1.0  # what is computed from it is an ordinary tensor, and stays
    b1 = next(it)
    with pytest.raises(ForbiddenCall, match="block 1 of pass 1 arrived"):
        b0.sum()
    with pytest.raises(ForbiddenCall, match="the block before it is gone"):
        torch.cat([b0, b1])
    *_, last = it  # the loop runs to its end
    with pytest.raises(ForbiddenCall, match="pass 1 is over"):
        last + 1
    assert type(kept) is torch.Tensor and kept.tolist() == [0.0, 1.0, 2.0]


def test_the_stream_validates_its_row():
    with pytest.raises(ValueError, match="1-D row"):
        ex.BlockStream(torch.zeros(2, 3), 2)
    with pytest.raises(ValueError, match="block >= 1"):
        ex.BlockStream(torch.zeros(3), 0)


def test_a_right_online_softmax_passes_and_the_stream_is_not_spent_by_the_reference():
    assert ex.check_online_softmax(online_softmax_right).passed
    case = ex.online_softmax_cases()[0]
    (blocks,) = case.args
    ex.EXERCISES["online_softmax"].reference(blocks)  # reads the row, not the stream
    assert online_softmax_right(blocks).shape == (len(blocks),)


# ----------------------------------------------------------------------------- the tiles


def _full_matrix(q, k, v, block):
    return _explicit_softmax(q @ k.mT / math.sqrt(q.shape[-1])) @ v


def _one_query_at_a_time(q, k, v, block):
    rows = [_full_matrix(q[..., i : i + 1, :], k, v, block) for i in range(q.shape[-2])]
    return torch.cat(rows, dim=-2)  # each row of scores holds every key


@pytest.mark.parametrize("answer", [_full_matrix, _one_query_at_a_time])
def test_the_guard_refuses_a_full_row_of_scores_unless_one_tile_holds_every_key(answer):
    # unguarded, these answers are right
    for case in ex.tiled_attention_cases():
        ref = F.scaled_dot_product_attention(*case.args[:3])
        assert torch.allclose(answer(*case.args), ref, atol=1e-9)
    with pytest.raises(AssertionError) as err:
        ex.check_tiled_attention(answer)
    feedback = str(err.value)
    assert "4 of 5 cases failed" in feedback
    assert "holds all T_k = 11 keys along one axis" in feedback
    assert "\u2713 case 5 (one block holds every key)" in feedback


def test_keys_and_values_in_any_layout_are_not_refused():
    def transposed_once(q, k, v, block):
        return tiled_attention_right(q, k.mT.contiguous().mT, v.clone(), block)

    assert ex.check_tiled_attention(transposed_once).passed
