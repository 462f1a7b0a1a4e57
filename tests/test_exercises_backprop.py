"""Chapter 1's checkers beyond the contract (``test_exercises_contract.py``): which step of a
backward pass the feedback points at, the "find the bug" layer's bug seen by gradcheck, and
PyTorch's autograd refused inside the exercises that ask for a backward pass derived by hand,
however it is reached (a ``grad_fn`` called by hand, the backward operators of ``torch.ops.aten``),
and everything back afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.autograd.variable import Variable

from dlbook import backprop as bp
from dlbook.exercises import backprop as ex
from dlbook.exercises.checker import check

from exercise_answers import layernorm_with_autograd, mlp_forgot_relu, mlp_right


def test_mlp_feedback_reports_each_gradient_and_the_first_wrong_step(capsys):
    ex.check_mlp_backward(mlp_right)
    assert "output['dW1']: \u2713" in capsys.readouterr().out  # each gradient gets its own line

    with pytest.raises(AssertionError) as err:
        ex.check_mlp_backward(mlp_forgot_relu)
    case1 = str(err.value).split("case 2")[0]
    # every step up to dA1 is right and dZ1 is the first wrong one
    for key in ("dZ2", "dW2", "db2", "dA1"):
        assert f"output['{key}']: \u2713" in case1
    assert "output['dZ1']: max |difference|" in case1


def test_gradcheck_finds_the_bug_of_the_find_the_bug_layer():
    rng = np.random.default_rng(0)
    model = bp.Sequential(bp.Linear(4, 6, rng=rng), ex.BuggyTanh(), bp.Linear(6, 3, rng=rng))
    errors = bp.gradcheck(
        model, bp.SoftmaxCrossEntropy(), rng.normal(size=(5, 4)), np.arange(5) % 3
    )
    assert errors["2.W"] < 1e-8 and errors["0.W"] > 1e-2


def _autograd_works() -> bool:
    x = torch.arange(3.0, requires_grad=True)
    (x**2).sum().backward()
    return torch.equal(x.grad, 2 * x.detach())


def _unguarded(name, fn):
    """Run ``fn`` on exercise ``name``'s cases with nothing switched off."""
    exercise = ex.EXERCISES[name]
    return check(
        fn,
        exercise.cases(),
        reference=exercise.reference,
        rtol=exercise.rtol,
        atol=exercise.atol,
        quiet=True,
    )


BY_HAND = "this exercise asks for the backward pass derived by hand, with NumPy"


def test_the_layernorm_checker_refuses_torch_autograd_and_restores_it():
    # the shortcut computes the right numbers: unguarded, the exercise's cases pass
    assert _unguarded("layernorm_backward", layernorm_with_autograd).passed
    with pytest.raises(AssertionError) as err:
        ex.check_layernorm_backward(layernorm_with_autograd)
    feedback = str(err.value)
    assert "5 of 5 cases failed" in feedback
    assert (
        f"raised AutogradForbidden: {BY_HAND}: autograd is switched off while your function "
        "runs, and torch.tensor made or was given a tensor that requires grad"
    ) in feedback
    # the line that started the graph (a generator expression in layernorm_with_autograd)
    assert "in <genexpr>: `xt, g, b = (torch.tensor(a, requires_grad=True)" in feedback
    assert _autograd_works()


def _through_grad(dout, shape):
    a = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    return torch.autograd.grad(a.expand(dout.shape), a, torch.from_numpy(dout))[0].numpy()


def _through_func_vjp(dout, shape):
    _, vjp = torch.func.vjp(lambda a: a.expand(dout.shape), torch.zeros(shape, dtype=torch.float64))
    return vjp(torch.from_numpy(dout))[0].numpy()


def _through_embedding(idx, dout, vocab_size):
    W = torch.zeros(vocab_size, dout.shape[-1], dtype=torch.float64, requires_grad=True)
    torch.autograd.backward(W[torch.from_numpy(idx)], torch.from_numpy(dout))
    return W.grad.numpy()


@pytest.mark.parametrize(
    ("checker", "shortcut"),
    [
        (ex.check_broadcast_backward, _through_grad),
        (ex.check_broadcast_backward, _through_func_vjp),
        (ex.check_embedding_backward, _through_embedding),
    ],
    ids=["autograd.grad", "func.vjp", "autograd.backward"],
)
def test_every_way_into_autograd_is_refused(checker, shortcut):
    with pytest.raises(AssertionError, match="raised AutogradForbidden"):
        checker(shortcut)
    assert _autograd_works()


def test_torch_without_autograd_is_allowed():
    """Only the backward pass is refused: NumPy through torch tensors, no graph, is fine."""

    def with_torch_tensors(idx, dout, vocab_size):
        dW = torch.zeros(vocab_size, dout.shape[-1], dtype=torch.float64)
        d = torch.from_numpy(dout).reshape(-1, dout.shape[-1])
        return dW.index_add_(0, torch.from_numpy(idx).reshape(-1), d).numpy()

    assert ex.check_embedding_backward(with_torch_tensors).passed


# ----------------------------------------------------------------------------- the reviewer's ways


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


def _np(*tensors):
    return [t.detach().numpy() for t in tensors]


def _layernorm_grad_fn(x, gamma, beta, dy, eps):
    xt, g, b = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    y = F.layer_norm(xt, (x.shape[-1],), g, b, eps)
    return dict(zip(("dx", "dgamma", "dbeta"), _np(*y.grad_fn(torch.tensor(dy)))))


def _layernorm_aten(x, gamma, beta, dy, eps):
    xt, g, b = (torch.tensor(a) for a in (x, gamma, beta))
    d = [x.shape[-1]]
    _, mean, rstd = torch.ops.aten.native_layer_norm(xt, d, g, b, eps)
    grads = torch.ops.aten.native_layer_norm_backward(
        torch.tensor(dy), xt, d, mean, rstd, g, b, [True] * 3
    )
    return dict(zip(("dx", "dgamma", "dbeta"), _np(*grads)))


def _batchnorm_walk(x, gamma, beta, dy, eps):
    xt, g, b = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    y = F.batch_norm(xt, None, None, g, b, training=True, eps=eps)
    return dict(zip(("dx", "dgamma", "dbeta"), _np(*_walk(y, torch.tensor(dy), (xt, g, b)))))


def _embedding_grad_fn(idx, dout, vocab_size):
    W = torch.zeros(vocab_size, dout.shape[-1], dtype=torch.float64, requires_grad=True)
    out = F.embedding(torch.from_numpy(idx), W)
    return out.grad_fn(torch.tensor(dout)).detach().numpy()


def _embedding_aten(idx, dout, vocab_size):
    dW = torch.ops.aten.embedding_dense_backward(
        torch.tensor(dout), torch.from_numpy(idx), vocab_size, -1, False
    )
    return dW.numpy()


def _broadcast_sum_to_size(dout, shape):
    return torch.from_numpy(dout).sum_to_size(shape).numpy()


def _broadcast_grad_fn(dout, shape):
    a = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    return a.expand(dout.shape).grad_fn(torch.from_numpy(dout)).detach().numpy()


def _broadcast_set_requires_grad(dout, shape):
    a = torch.zeros(shape, dtype=torch.float64)
    a.requires_grad = True
    return a.expand(dout.shape).grad_fn(torch.from_numpy(dout)).detach().numpy()


def _broadcast_parameter(dout, shape):
    a = torch.nn.Parameter(torch.zeros(shape, dtype=torch.float64))
    return a.expand(dout.shape).grad_fn(torch.from_numpy(dout)).detach().numpy()


def _softmax_ce_walk(logits, labels):
    z = torch.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(z, torch.from_numpy(labels), ignore_index=-100)
    (dz,) = _walk(loss, torch.tensor(1.0, dtype=torch.float64), (z,))
    return {"loss": loss.item(), "dlogits": dz.detach().numpy()}


def _linear_engine(X, W, b, dY):
    x, w, bb = (torch.tensor(a) for a in (X, W, b))
    for t in (x, w, bb):
        t.requires_grad_()
    y = F.linear(x, w, bb)
    engine = Variable._execution_engine
    grads = engine.run_backward((y,), (torch.tensor(dY),), False, False, (x, w, bb), False, False)
    return dict(zip(("dX", "dW", "db"), _np(*grads)))


GRAPH = "autograd is switched off while your function runs, and {} made or was given a tensor"
REVIEWED = [
    # (exercise, shortcut, what the refusal names)
    ("layernorm_backward", _layernorm_grad_fn, GRAPH.format("torch.tensor")),
    (
        "layernorm_backward",
        _layernorm_aten,
        "torch.ops.aten.native_layer_norm_backward is switched off",
    ),
    ("batchnorm_backward", _batchnorm_walk, GRAPH.format("torch.tensor")),
    ("embedding_backward", _embedding_grad_fn, GRAPH.format("torch.zeros")),
    ("embedding_backward", _embedding_aten, "torch.ops.aten.embedding_dense_backward is switched"),
    ("broadcast_backward", _broadcast_sum_to_size, "torch.Tensor.sum_to_size is switched off"),
    ("broadcast_backward", _broadcast_grad_fn, GRAPH.format("torch.zeros")),
    (
        "broadcast_backward",
        _broadcast_set_requires_grad,
        GRAPH.format("setting torch.Tensor.requires_grad"),
    ),
    ("broadcast_backward", _broadcast_parameter, GRAPH.format("torch.Tensor.expand")),
    ("softmax_cross_entropy", _softmax_ce_walk, GRAPH.format("torch.tensor")),
    ("linear_backward", _linear_engine, GRAPH.format("torch.Tensor.requires_grad_")),
]


@pytest.mark.parametrize(
    ("name", "shortcut", "refused"),
    REVIEWED,
    ids=[f"{n}/{f.__name__.lstrip('_')}" for n, f, _ in REVIEWED],
)
def test_each_way_around_the_rule_is_refused_with_what_and_why(name, shortcut, refused):
    # unguarded, the shortcut computes the right numbers
    assert _unguarded(name, shortcut).passed
    exercise = ex.EXERCISES[name]
    n = len(exercise.cases())
    with pytest.raises(AssertionError) as err:
        getattr(ex, f"check_{name}")(shortcut)
    feedback = str(err.value)
    assert f"{n} of {n} cases failed" in feedback, feedback
    error = "ForbiddenCall" if "sum_to_size" in refused else "AutogradForbidden"
    assert f"raised {error}: {exercise.rule}: {refused}" in feedback, feedback
    # the student's line, not torch's (a generator expression's frame is its own)
    assert f"in {shortcut.__name__}:" in feedback or "in <genexpr>: `xt, g, b" in feedback


def test_the_broadcast_exercise_says_why_sum_to_size_is_off():
    assert "which axes to sum" in ex.EXERCISES["broadcast_backward"].rule


def test_everything_is_back_after_the_refusals():
    engine = Variable.__dict__["_execution_engine"]
    for name, shortcut, _ in REVIEWED:
        with pytest.raises(AssertionError):
            getattr(ex, f"check_{name}")(shortcut)
    assert Variable.__dict__["_execution_engine"] is engine
    assert torch._C._len_torch_function_stack() == 0  # no mode left behind
    assert "sum_to_size" not in vars(torch.Tensor)
    assert _autograd_works()
    x = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.equal(x.sum_to_size(1, 3), torch.full((1, 3), 2.0, dtype=torch.float64))
    y = F.layer_norm(x * torch.arange(3.0), (3,))
    assert y.grad_fn(torch.ones_like(y))[0].shape == (2, 3)  # a grad_fn may be called again
