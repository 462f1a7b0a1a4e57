"""Chapter 2's checkers beyond the contract (``test_exercises_contract.py``): the library
shortcuts each exercise switches off are refused with a message that names them (and are back
afterwards), including the operators behind them (``torch.ops.aten``) and autograd reached
without its functions (a ``grad_fn`` called by hand, autograd's engine); the online softmax's
stream enforces its two rules and hides its row; and tiled attention's guard refuses the full
score matrix and a full row of it, in any dtype, and NumPy."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.autograd.variable import Variable

from dlbook import attention as A
from dlbook.attention import softmax_jacobian as jacobian_imported_early
from dlbook.exercises import attention as ex
from dlbook.exercises.checker import AutogradForbidden, ForbiddenCall, check

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


def _off(name):
    return f"{name} {SWITCHED_OFF}"


GRAPH = "autograd is switched off while your function runs, and {} made or was given a tensor"


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
    # (exercise, answer, what the refusal must say after the exercise's rule)
    (
        "masked_attention",
        lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
        _off("torch.nn.functional.scaled_dot_product_attention"),
    ),
    (
        "masked_attention",
        lambda q, k, v, m: A.scaled_dot_product_attention(q, k, v, mask=m, explicit=True),
        _off("dlbook.attention.scaled_dot_product_attention"),
    ),
    ("multi_head_attention", _mha_module, _off("torch.nn.MultiheadAttention")),
    (
        "multi_head_attention",
        _mha_functional,
        _off("torch.nn.functional.multi_head_attention_forward"),
    ),
    ("multi_head_attention", _mha_dlbook, _off("dlbook.attention.MultiHeadAttention")),
    (
        "softmax_jacobian",
        lambda z: torch.autograd.functional.jacobian(lambda x: torch.softmax(x, -1), z),
        _off("torch.autograd.functional.jacobian"),
    ),
    (
        "softmax_jacobian",
        lambda z: torch.func.jacrev(lambda x: torch.softmax(x, -1))(z),
        _off("torch.func.jacrev"),
    ),
    (
        "softmax_jacobian",
        lambda z: torch.func.jacfwd(lambda x: torch.softmax(x, -1))(z),
        _off("torch.func.jacfwd"),
    ),
    ("softmax_jacobian", jacobian_imported_early, _off("dlbook.attention.softmax_jacobian")),
    # the graph is refused where it starts, before .backward() or autograd.grad is reached
    ("attention_backward", _backward_through, GRAPH.format("torch.Tensor.requires_grad_")),
    ("attention_backward", _grad_through, GRAPH.format("torch.Tensor.requires_grad_")),
    ("attention_backward", _vjp_through, _off("torch.func.vjp")),
    (
        "attention_backward",
        lambda q, k, v, d: dict(zip(("dq", "dk", "dv"), A.attention_backward(q, k, v, d))),
        _off("dlbook.attention.attention_backward"),
    ),
    (
        "online_softmax",
        lambda blocks: torch.softmax(_kept_copies(blocks), 0),
        _off("torch.softmax"),
    ),
    (
        "online_softmax",
        lambda blocks: _kept_copies(blocks).softmax(-1),
        _off("torch.Tensor.softmax"),
    ),
    (
        "online_softmax",
        lambda blocks: F.softmax(_kept_copies(blocks), dim=0),
        _off("torch.nn.functional.softmax"),
    ),
    (
        "online_softmax",
        lambda blocks: torch.exp(_kept_copies(blocks) - _kept_copies(blocks).logsumexp(0)),
        _off("torch.Tensor.logsumexp"),
    ),
    (
        "online_softmax",
        lambda blocks: A.online_softmax(_kept_copies(blocks), 4),
        _off("dlbook.attention.online_softmax"),
    ),
    (
        "tiled_attention",
        lambda q, k, v, block: F.scaled_dot_product_attention(q, k, v),
        _off("torch.nn.functional.scaled_dot_product_attention"),
    ),
    (
        "tiled_attention",
        lambda q, k, v, block: A.tiled_attention(q, k, v, block=block),
        _off("dlbook.attention.tiled_attention"),
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
        _off("torch.softmax"),
    ),
]


# ----------------------------------------------------------------------------- a reviewer's ways


def _walk(out, grad, leaves):
    """Backpropagate by calling each ``grad_fn`` node by hand, in topological order: autograd's
    formulas without its engine."""
    order, seen = [], set()

    def visit(node):
        if node is not None and node not in seen:
            seen.add(node)
            for nxt, _ in node.next_functions:
                visit(nxt)
            order.append(node)

    visit(out.grad_fn)
    grads, found = {out.grad_fn: grad}, {}
    for node in reversed(order):
        g = grads.get(node)
        if g is None:
            continue
        if hasattr(node, "variable"):  # a leaf: its gradient is complete
            found[id(node.variable)] = g
            continue
        outs = node(g)
        for (nxt, _), o in zip(node.next_functions, outs if isinstance(outs, tuple) else (outs,)):
            if nxt is not None and o is not None:
                grads[nxt] = grads[nxt] + o if nxt in grads else o
    return [found[id(leaf)] for leaf in leaves]


def _online_aten(blocks):
    return torch.ops.aten._softmax(_kept_copies(blocks), 0, False)


def _masked_aten(q, k, v, mask):
    out = torch.ops.aten.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return torch.where(mask.any(-1, keepdim=True), out, 0.0)


def _masked_aten_math(q, k, v, mask):
    additive = torch.zeros(mask.shape, dtype=q.dtype).masked_fill(~mask, -math.inf)
    out = torch.ops.aten._scaled_dot_product_attention_math.default(q, k, v, additive)[0]
    return torch.where(mask.any(-1, keepdim=True), out, 0.0)


def _masked_c_nn(q, k, v, mask):
    out = torch._C._nn.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return torch.where(mask.any(-1, keepdim=True), out, 0.0)


def _mha_native(x, w_in, b_in, w_out, b_out, h):
    d = x.shape[-1]
    return torch.ops.aten._native_multi_head_attention(
        x, x, x, d, h, w_in, b_in, w_out, b_out, need_weights=False
    )[0]


def _jacobian_aten(z):
    p = torch.softmax(z, -1)
    n = z.shape[0]
    eye = torch.eye(n, dtype=z.dtype)
    return torch.ops.aten._softmax_backward_data(eye, p.expand(n, n), -1, z.dtype)


def _jacobian_grad_fn(z):
    z = z.clone().requires_grad_()
    p = torch.softmax(z, -1)
    return torch.stack([p.grad_fn(e) for e in torch.eye(len(z), dtype=z.dtype)])


def _jacobian_set_requires_grad(z):
    z = z.clone()
    z.requires_grad = True
    p = torch.softmax(z, -1)
    return torch.stack([p.grad_fn(e) for e in torch.eye(len(z), dtype=z.dtype)])


def _jacobian_engine(z):
    z = z.clone().requires_grad_()
    p = torch.softmax(z, -1)
    engine = Variable._execution_engine
    return torch.stack(
        [
            engine.run_backward((p,), (e,), True, False, (z,), False, False)[0]
            for e in torch.eye(len(z), dtype=z.dtype)
        ]
    )


def _jacobian_linearize(z):
    _, jvp = torch.func.linearize(lambda x: torch.softmax(x, -1), z)
    return torch.vmap(jvp)(torch.eye(len(z), dtype=z.dtype)).T


def _backward_walk(q, k, v, dout):
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out = torch.softmax(q @ k.mT / math.sqrt(q.shape[-1]), -1) @ v
    return dict(zip(("dq", "dk", "dv"), _walk(out, dout, (q, k, v))))


def _backward_engine(q, k, v, dout):
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    engine = Variable._execution_engine
    grads = engine.run_backward((out,), (dout,), False, False, (q, k, v), False, False)
    return dict(zip(("dq", "dk", "dv"), grads))


def _backward_aten(q, k, v, dout):
    s = 1 / math.sqrt(q.shape[-1])
    p = torch.softmax(q @ k.mT * s, -1)
    ds = torch.ops.aten._softmax_backward_data(dout @ v.mT, p, -1, q.dtype)
    return {"dq": s * ds @ k, "dk": s * ds.mT @ q, "dv": p.mT @ dout}


def _tiled_numpy(q, k, v, block):
    qn, kn, vn = q.numpy(), k.numpy(), v.numpy()
    s = qn @ np.swapaxes(kn, -1, -2) / math.sqrt(qn.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    return torch.from_numpy(p / p.sum(-1, keepdims=True) @ vn)


def _tiled_asarray(q, k, v, block):
    return _tiled_numpy(*(torch.from_numpy(np.asarray(t)) for t in (q, k, v)), block)


def _tiled_tolist(q, k, v, block):
    return _tiled_numpy(*(torch.tensor(t.tolist(), dtype=t.dtype) for t in (q, k, v)), block)


REVIEWED = [
    ("online_softmax", _online_aten, _off("torch.ops.aten._softmax")),
    ("masked_attention", _masked_aten, _off("torch.ops.aten.scaled_dot_product_attention")),
    (
        "masked_attention",
        _masked_aten_math,
        _off("torch.ops.aten._scaled_dot_product_attention_math"),
    ),
    ("masked_attention", _masked_c_nn, _off("torch.nn.functional.scaled_dot_product_attention")),
    ("multi_head_attention", _mha_native, _off("torch.ops.aten._native_multi_head_attention")),
    ("softmax_jacobian", _jacobian_aten, _off("torch.ops.aten._softmax_backward_data")),
    ("softmax_jacobian", _jacobian_grad_fn, GRAPH.format("torch.Tensor.requires_grad_")),
    (
        "softmax_jacobian",
        _jacobian_set_requires_grad,
        GRAPH.format("setting torch.Tensor.requires_grad"),
    ),
    ("softmax_jacobian", _jacobian_engine, GRAPH.format("torch.Tensor.requires_grad_")),
    ("softmax_jacobian", _jacobian_linearize, _off("torch.func.linearize")),
    ("attention_backward", _backward_walk, GRAPH.format("torch.Tensor.requires_grad_")),
    ("attention_backward", _backward_engine, GRAPH.format("torch.Tensor.requires_grad_")),
    ("attention_backward", _backward_aten, _off("torch.ops.aten._softmax_backward_data")),
    ("tiled_attention", _tiled_numpy, _off("torch.Tensor.numpy")),
    ("tiled_attention", _tiled_asarray, _off("torch.Tensor.__array__")),
    ("tiled_attention", _tiled_tolist, _off("torch.Tensor.tolist")),
    (
        "tiled_attention",
        lambda q, k, v, block: torch.ops.aten.scaled_dot_product_attention(q, k, v),
        _off("torch.ops.aten.scaled_dot_product_attention"),
    ),
]


def _short(refused: str) -> str:
    """A test id: the name a refusal gives."""
    return re.sub(r"^autograd is .* and (.*) made .*", r"graph from \1", refused.split(" is ")[0])


@pytest.mark.parametrize(
    ("name", "answer", "refused"),
    SHORTCUTS + REVIEWED,
    ids=[f"{n}/{_short(r)}" for n, _, r in SHORTCUTS + REVIEWED],
)
def test_each_library_shortcut_is_refused_by_name(name, answer, refused):
    exercise = ex.EXERCISES[name]
    n = len(exercise.cases())
    with pytest.raises(AssertionError) as err:
        getattr(ex, f"check_{name}")(answer)
    feedback = str(err.value)
    assert f"{n} of {n} cases failed" in feedback, feedback
    autograd = exercise.autograd_off and "dlbook" not in refused  # autograd's own ways in
    error = "AutogradForbidden" if autograd else "ForbiddenCall"
    assert f"raised {error}: {exercise.rule}: {refused}" in feedback, feedback


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")  # inside func.linearize
@pytest.mark.filterwarnings("ignore:Attempted to insert a get_attr Node")  # and this one
@pytest.mark.parametrize(
    ("name", "answer"),
    [(n, a) for n, a, _ in REVIEWED],
    ids=[f"{n}/{a.__name__.lstrip('_')}" for n, a, _ in REVIEWED],
)
def test_the_reviewed_shortcuts_are_right_answers_when_nothing_is_switched_off(name, answer):
    """So that their refusal, not a wrong number, is what fails them."""
    exercise = ex.EXERCISES[name]
    report = check(
        answer,
        exercise.cases(),
        reference=exercise.reference,
        rtol=exercise.rtol,
        atol=exercise.atol,
        quiet=True,
    )
    assert report.passed


def test_autograd_refusals_are_autograd_forbidden_a_kind_of_forbidden_call():
    assert issubclass(AutogradForbidden, ForbiddenCall)
    assert ex.EXERCISES["softmax_jacobian"].autograd_off
    assert ex.EXERCISES["attention_backward"].autograd_off
    assert not ex.EXERCISES["masked_attention"].autograd_off  # plain attention may build a graph


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


def test_everything_is_back_after_the_reviewed_shortcuts_are_refused():
    """Autograd's engine, the ways to NumPy, the operators: all work again afterwards, and no
    TorchFunctionMode is left on the stack."""

    def state():
        names = ("numpy", "tolist", "__array__", "__dlpack__")
        own = {n: vars(torch.Tensor).get(n) for n in names}  # None: inherited from C
        codes = {n: getattr(f, "__code__", None) for n, f in own.items()}
        return Variable.__dict__["_execution_engine"], own, codes

    before = state()
    for name, answer, _ in REVIEWED:
        with pytest.raises(AssertionError):
            getattr(ex, f"check_{name}")(answer)
    assert state() == before
    assert torch._C._len_torch_function_stack() == 0
    z = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert np.asarray(z).tolist() == z.numpy().tolist() == z.tolist() == [1.0, -2.0, 0.5]
    p = torch.ops.aten._softmax(z, 0, False)
    assert torch.allclose(p, torch.softmax(z, 0))
    dz = torch.ops.aten._softmax_backward_data(torch.ones(3, dtype=z.dtype), p, 0, z.dtype)
    assert torch.allclose(dz, torch.zeros(3, dtype=z.dtype), atol=1e-15)  # p (1 - sum p) = 0
    w = z.clone().requires_grad_()
    y = torch.softmax(w, 0)
    assert y.grad_fn(torch.eye(3, dtype=z.dtype)[0]).shape == (3,)  # grad_fn callable again


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


def test_a_right_online_softmax_passes_and_the_row_is_no_attribute_of_the_stream():
    assert ex.check_online_softmax(online_softmax_right).passed
    case = ex.online_softmax_cases()[0]
    (blocks,) = case.args
    # the row lives in a closure: no attribute of the stream is a tensor, so `blocks._row` and
    # the like do not exist; the expected output was computed from the row when the case was made
    assert not hasattr(blocks, "_row")
    assert not any(isinstance(value, torch.Tensor) for value in vars(blocks).values())
    assert ex.EXERCISES["online_softmax"].reference is None
    assert torch.allclose(online_softmax_right(blocks), case.expected, rtol=1e-12, atol=0)


def test_each_deep_copy_of_a_stream_is_a_fresh_stream():
    """The checker deep-copies a case for every call: each copy gets its own two passes."""
    import copy

    blocks = _stream()
    list(blocks()), list(blocks())
    twin = copy.deepcopy(blocks)
    first = [b.tolist() for b in twin()]
    assert first[0] == [0.0, 1.0, 2.0] and len(first) == len(list(twin())) == 4
    with pytest.raises(ForbiddenCall, match="may be called 2 times"):
        blocks()


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
