"""Chapter 1's checkers beyond the contract (``test_exercises_contract.py``): which step of a
backward pass the feedback points at, the "find the bug" layer's bug seen by gradcheck, and
PyTorch's autograd refused inside the exercises that ask for a backward pass derived by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlbook import backprop as bp
from dlbook.exercises import backprop as ex

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


def test_the_layernorm_checker_refuses_torch_autograd_and_restores_it():
    # the shortcut computes the right numbers: unguarded, the exercise's cases pass
    ex.EXERCISES["layernorm_backward"].check(layernorm_with_autograd)
    with pytest.raises(AssertionError) as err:
        ex.check_layernorm_backward(layernorm_with_autograd)
    feedback = str(err.value)
    assert "5 of 5 cases failed" in feedback
    assert "raised AutogradForbidden: torch autograd is switched off in layernorm_backward" in (
        feedback
    )
    assert "in layernorm_with_autograd: `torch.nn.functional.layer_norm(" in feedback  # its line
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
