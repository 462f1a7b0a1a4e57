"""dlbook.backprop: NumPy layers against torch, the gradient check, validation, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbook import backprop as bp
from dlbook.data import load_digits


def _t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


# ----------------------------------------------------------------------------- layers vs torch


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 9),
    n=st.integers(1, 9),
    m=st.integers(1, 9),
    seed=st.integers(0, 2**31 - 1),
)
def test_linear_forward_and_backward_match_torch_on_random_shapes(b, n, m, seed):
    rng = np.random.default_rng(seed)
    layer = bp.Linear(n, m, init="xavier", rng=rng)
    layer.params["b"][:] = rng.normal(size=m)
    x, dy = rng.normal(size=(b, n)), rng.normal(size=(b, m))
    y = layer.forward(x)
    dx = layer.backward(dy)

    tx, tw, tb = _t(x, True), _t(layer.params["W"], True), _t(layer.params["b"], True)
    ty = F.linear(tx, tw, tb)
    ty.backward(_t(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["W"], tw.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["b"], tb.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert layer.grads["W"].shape == layer.params["W"].shape  # gradients have their shapes


ACTS = {
    "sigmoid": (bp.Sigmoid, torch.sigmoid),
    "tanh": (bp.Tanh, torch.tanh),
    "relu": (bp.ReLU, torch.relu),
    "gelu": (bp.GELU, F.gelu),
    "gelu-tanh": (lambda: bp.GELU("tanh"), lambda t: F.gelu(t, approximate="tanh")),
}


@pytest.mark.parametrize("name", sorted(ACTS))
def test_activations_match_torch(name):
    make, t_fn = ACTS[name]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 5)) * 3
    x[0, :3] = [-50.0, 0.0, 50.0]  # saturation, the kink, no overflow
    dy = rng.normal(size=x.shape)
    layer = make()
    y = layer.forward(x)
    dx = layer.backward(dy)
    tx = _t(x, True)
    ty = t_fn(tx)
    ty.backward(_t(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_softmax_cross_entropy_matches_torch_even_for_huge_logits():
    rng = np.random.default_rng(2)
    for offset in (0.0, 1e4, -1e4):
        logits = rng.normal(size=(7, 5)) * 4 + offset
        labels = rng.integers(0, 5, size=7)
        ce = bp.SoftmaxCrossEntropy()
        loss = ce.forward(logits, labels)
        grad = ce.backward()
        tz = _t(logits, True)
        tl = F.cross_entropy(tz, torch.from_numpy(labels))
        tl.backward()
        assert np.isfinite(loss)
        assert loss == pytest.approx(tl.item(), rel=1e-10)
        np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-9, atol=1e-15)


def test_logsumexp_softmax_match_torch_and_do_not_overflow():
    z = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1000.0], [0.0, 1.0, 2.0]])
    np.testing.assert_allclose(bp.logsumexp(z), torch.logsumexp(_t(z), dim=-1).numpy())
    np.testing.assert_allclose(bp.softmax(z), torch.softmax(_t(z), dim=-1).numpy(), rtol=1e-12)
    assert bp.logsumexp(z, keepdims=True).shape == (3, 1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        naive = np.log(np.exp(z).sum(axis=1))
    assert not np.isfinite(naive[0]) and not np.isfinite(naive[1])
    assert np.all(bp.sigmoid(np.array([-1000.0, 1000.0])) == np.array([0.0, 1.0]))


def test_mse_matches_torch():
    rng = np.random.default_rng(3)
    pred, target = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    mse = bp.MSELoss()
    loss = mse.forward(pred, target)
    tp = _t(pred, True)
    tl = F.mse_loss(tp, _t(target))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(mse.backward(), tp.grad.numpy(), rtol=1e-12)


def test_mlp_builder_matches_torch_sequential_with_copied_weights():
    model = bp.mlp([6, 8, 7, 3], "tanh", seed=4)
    torch_model = torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 7),
        torch.nn.Tanh(),
        torch.nn.Linear(7, 3),
    ).double()
    with torch.no_grad():
        for i in (0, 2, 4):
            torch_model[i].weight.copy_(torch.from_numpy(model.layers[i].params["W"]))
            torch_model[i].bias.copy_(torch.from_numpy(model.layers[i].params["b"]))
    x = np.random.default_rng(5).normal(size=(10, 6))
    y = np.arange(10) % 3
    ce = bp.SoftmaxCrossEntropy()
    loss = ce.forward(model.forward(x), y)
    model.backward(ce.backward())
    tl = F.cross_entropy(torch_model(_t(x)), torch.from_numpy(y))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    for name, g in model.gradients().items():
        i, kind = name.split(".")
        ref = torch_model[int(i)].weight if kind == "W" else torch_model[int(i)].bias
        np.testing.assert_allclose(g, ref.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert sorted(model.parameters()) == ["0.W", "0.b", "2.W", "2.b", "4.W", "4.b"]


# ----------------------------------------------------------------------------- gradient check


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "gelu"])
def test_gradcheck_passes_on_every_parameter(activation):
    d = load_digits(dtype=np.float64)
    model = bp.mlp([64, 16, 12, 10], activation, seed=0)
    errors = bp.gradcheck(model, bp.SoftmaxCrossEntropy(), d.X_train[:8], d.y_train[:8])
    assert set(errors) == {"0.W", "0.b", "2.W", "2.b", "4.W", "4.b", "input"}
    assert max(errors.values()) < 1e-7, errors


def test_gradcheck_with_mse_regression():
    rng = np.random.default_rng(6)
    model = bp.mlp([3, 5, 2], "tanh", seed=1)
    errors = bp.gradcheck(model, bp.MSELoss(), rng.normal(size=(4, 3)), rng.normal(size=(4, 2)))
    assert max(errors.values()) < 1e-7, errors


class _ReLUWithLeak(bp.ReLU):
    """A planted bug: the backward pass lets 10% of the gradient through where z <= 0."""

    def backward(self, grad_out):
        return grad_out * np.where(self._mask, 1.0, 0.1)


class _LinearForgetsBias(bp.Linear):
    """A planted bug: db is the gradient of the first example only, not the batch's sum."""

    def backward(self, grad_out):
        dx = super().backward(grad_out)
        self.grads["b"] = grad_out[0].copy()
        return dx


def test_gradcheck_catches_planted_bugs_and_points_at_them():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(6, 5)), rng.integers(0, 3, size=6)

    model = bp.Sequential(bp.Linear(5, 8, rng=rng), _ReLUWithLeak(), bp.Linear(8, 3, rng=rng))
    errors = bp.gradcheck(model, bp.SoftmaxCrossEntropy(), x, y)
    # the bug sits between layer 0 and layer 2: gradients above it stay right
    assert errors["2.W"] < 1e-8 and errors["2.b"] < 1e-8
    assert errors["0.W"] > 1e-2 and errors["0.b"] > 1e-2 and errors["input"] > 1e-2

    model = bp.Sequential(bp.Linear(5, 8, rng=rng), bp.Tanh(), _LinearForgetsBias(8, 3, rng=rng))
    errors = bp.gradcheck(model, bp.SoftmaxCrossEntropy(), x, y)
    assert errors["2.b"] > 1e-2
    assert max(v for k, v in errors.items() if k != "2.b") < 1e-7


def test_numerical_gradient_and_relative_error():
    x = np.array([1.0, -2.0, 0.5])
    g = bp.numerical_gradient(lambda: float(np.sum(x**3)), x)
    np.testing.assert_allclose(g, 3 * x**2, rtol=1e-8)
    assert x.tolist() == [1.0, -2.0, 0.5]  # restored
    assert bp.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert bp.relative_error(np.ones(3), -np.ones(3)) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        bp.relative_error(np.ones(3), np.ones(4))


def test_gradcheck_refuses_float32():
    model = bp.mlp([4, 3, 2], dtype=np.float32)
    x = np.ones((2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="float64"):
        bp.gradcheck(model, bp.SoftmaxCrossEntropy(), x, np.array([0, 1]))


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda: bp.Linear(3, 2).forward(np.ones((4, 5))), r"expected x of shape \(B, 3\)"),
        (lambda: bp.Linear(3, 2).forward(np.ones(3)), r"got shape \(3,\)"),
        (lambda: bp.Linear(3, 2).forward([[1.0, 2.0, 3.0]]), "NumPy array"),
        (lambda: bp.Linear(3, 2).forward(np.ones((1, 3), dtype=int)), "float array"),
        (lambda: bp.Linear(3, 2).backward(np.ones((4, 2))), "forward before backward"),
        (lambda: bp.Linear(0, 2), "n_in, n_out >= 1"),
        (lambda: bp.Linear(3, 2, init="kaiming"), "init must be"),
        (lambda: bp.Tanh().backward(np.ones(3)), "forward before backward"),
        (lambda: bp.GELU("erf"), "approximate"),
        (lambda: bp.mlp([4]), "at least two"),
        (lambda: bp.mlp([4, 2], "swish"), "activation must be"),
        (lambda: bp.SoftmaxCrossEntropy().forward(np.ones(3), np.array([0])), r"\(B, V\)"),
        (lambda: bp.SoftmaxCrossEntropy().forward(np.ones((2, 3)), np.array([0, 3])), "labels"),
        (lambda: bp.SoftmaxCrossEntropy().forward(np.ones((2, 3)), np.array([0.0, 1.0])), "int"),
        (lambda: bp.SoftmaxCrossEntropy().backward(), "forward before backward"),
        (lambda: bp.MSELoss().forward(np.ones((2, 3)), np.ones((3, 2))), "same shape"),
        (lambda: bp.Sequential(), "one or more Layer"),
        (lambda: bp.SGD(bp.mlp([2, 2]), lr=0.0), "lr"),
        (lambda: bp.SGD(bp.mlp([2, 2]), lr=0.1, momentum=1.0), "momentum"),
    ],
)
def test_invalid_inputs_raise_clear_value_errors(action, message):
    with pytest.raises(ValueError, match=message):
        action()


def test_backward_checks_the_gradient_shape():
    layer = bp.Linear(3, 2)
    layer.forward(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"expected grad_out of the output's shape \(4, 2\)"):
        layer.backward(np.ones((2, 4)))
    act = bp.ReLU()
    act.forward(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        act.backward(np.ones((3, 4)))


# ----------------------------------------------------------------------------- training


def test_sgd_with_momentum_matches_torch_optim():
    model = bp.mlp([4, 5, 3], "relu", seed=2)
    torch_params = {n: _t(p.copy(), True) for n, p in model.parameters().items()}
    opt_t = torch.optim.SGD(list(torch_params.values()), lr=0.05, momentum=0.9)
    opt = bp.SGD(model, lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    for _ in range(3):
        grads = {n: rng.normal(size=p.shape) for n, p in model.parameters().items()}
        for i, layer in enumerate(model.layers):
            for k in layer.params:
                layer.grads[k] = grads[f"{i}.{k}"]
        opt.step()
        for n, t in torch_params.items():
            t.grad = _t(grads[n])
        opt_t.step()
    for n, p in model.parameters().items():
        np.testing.assert_allclose(p, torch_params[n].detach().numpy(), rtol=1e-12)


def test_train_classifier_learns_digits_and_is_reproducible():
    d = load_digits()

    def run():
        model = bp.mlp([64, 32, 10], seed=0, dtype=np.float32)
        run = bp.train_classifier(
            model,
            d.X_train,
            d.y_train,
            X_val=d.X_test,
            y_val=d.y_test,
            epochs=3,
            batch_size=32,
            lr=0.05,
            progress="off",
        )
        assert run.model is model
        return model, run.history

    model, h = run()
    assert h.last("val_acc") > 0.9
    assert h.last("val_acc") == bp.accuracy(model, d.X_test, d.y_test)
    assert len(h["val"]) == 4  # before training and after each epoch
    _, h2 = run()
    assert h2.values("train").tolist() == h.values("train").tolist()  # same seed, same numbers
    with pytest.raises(ValueError, match="same length"):
        bp.train_classifier(model, d.X_train, d.y_train[:-1], progress="off")
