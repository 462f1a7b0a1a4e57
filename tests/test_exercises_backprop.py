"""Chapter 1's checkers accept right answers and name each plausible wrong one.

Two kinds of wrong answers are submitted: each checker's own list of mistakes, and wrong answers
written here the way a student would write them (so that recognising a mistake does not depend on
it being computed exactly as the checker computes it).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlbook import backprop as bp
from dlbook.autograd import Value
from dlbook.exercises import backprop as ex

# ----------------------------------------------------------------------------- right answers


def softmax_ce_right(logits, labels):
    b = len(labels)
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    p[np.arange(b), labels] -= 1
    return {"loss": float(-log_p[np.arange(b), labels].mean()), "dlogits": p / b}


def linear_right(X, W, b, dY):
    return {"dX": dY @ W, "dW": dY.T @ X, "db": dY.sum(axis=0)}


def mlp_right(X, y, params):
    Z1 = X @ params["W1"].T + params["b1"]
    A1 = np.maximum(Z1, 0)
    Z2 = A1 @ params["W2"].T + params["b2"]
    P = np.exp(Z2 - Z2.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    dZ2 = P.copy()
    dZ2[np.arange(len(y)), y] -= 1
    dZ2 /= len(y)
    dA1 = dZ2 @ params["W2"]
    dZ1 = dA1 * (Z1 > 0)
    return {
        "dZ2": dZ2,
        "dW2": dZ2.T @ A1,
        "db2": dZ2.sum(0),
        "dA1": dA1,
        "dZ1": dZ1,
        "dW1": dZ1.T @ X,
        "db1": dZ1.sum(0),
    }


class FixedTanh(bp.Layer):
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, grad_out):
        return grad_out * (1 - self.out**2)


def softplus_right(x: Value) -> Value:
    out = Value(math.log1p(math.exp(x.data)), (x,), "softplus")

    def _backward(out):
        x.grad += out.grad / (1 + math.exp(-x.data))

    out._backward = _backward
    return out


def test_every_checker_accepts_a_right_answer(capsys):
    assert ex.check_softmax_cross_entropy(softmax_ce_right).passed
    assert ex.check_linear_backward(linear_right).passed
    assert ex.check_mlp_backward(mlp_right).passed
    assert ex.check_tanh_layer(FixedTanh).passed
    assert ex.check_tanh_layer(bp.Tanh).passed
    assert ex.check_softplus(softplus_right).passed
    assert ex.check_softplus(lambda x: (x.exp() + 1).log()).passed  # composed from the engine
    out = capsys.readouterr().out
    assert out.count("Well done") == 7
    assert "output['dW1']: \u2713" in out  # each gradient gets its own line


# ----------------------------------------------------------------------------- checkers' mistakes

CHECKERS = {
    "softmax_ce": (ex.check_softmax_cross_entropy, ex.SOFTMAX_CE_MISTAKES),
    "linear": (ex.check_linear_backward, ex.LINEAR_MISTAKES),
    "mlp": (ex.check_mlp_backward, ex.MLP_MISTAKES),
}
MISTAKE_IDS = [(k, m.name) for k, (_, ms) in CHECKERS.items() for m in ms]


@pytest.mark.parametrize(
    ("checker", "name"), MISTAKE_IDS, ids=[f"{k}: {n}" for k, n in MISTAKE_IDS]
)
def test_each_listed_mistake_is_rejected_by_name(checker, name):
    check, mistakes = CHECKERS[checker]
    (mistake,) = [m for m in mistakes if m.name == name]
    with pytest.raises(AssertionError) as err:
        check(mistake.wrong)
    assert f"known mistake, {name}:" in str(err.value)


def test_at_least_three_mistakes_per_checker():
    for mistakes in (
        ex.SOFTMAX_CE_MISTAKES,
        ex.LINEAR_MISTAKES,
        ex.MLP_MISTAKES,
        ex.TANH_MISTAKES,
        ex.SOFTPLUS_MISTAKES,
    ):
        assert len(mistakes) >= 3
        assert len({m.name for m in mistakes}) == len(mistakes)


# ----------------------------------------------------------------------------- students' mistakes


def _rejects(check, fn, name):
    with pytest.raises(AssertionError) as err:
        check(fn)
    text = str(err.value)
    assert f"known mistake, {name}:" in text, text
    return text


def test_softmax_ce_student_mistakes():
    def wrong_sign(logits, labels):
        out = softmax_ce_right(logits, labels)
        return {"loss": out["loss"], "dlogits": -out["dlogits"]}

    def no_batch_division(logits, labels):
        out = softmax_ce_right(logits, labels)
        return {"loss": out["loss"], "dlogits": out["dlogits"] * len(labels)}

    def naive(logits, labels):
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(p[np.arange(len(labels)), labels]))
        onehot = np.zeros_like(p)
        onehot[np.arange(len(labels)), labels] = 1
        return {"loss": float(loss), "dlogits": (p - onehot) / len(labels)}

    def no_onehot(logits, labels):
        out = softmax_ce_right(logits, labels)
        p = np.exp(logits - logits.max(1, keepdims=True))
        return {"loss": out["loss"], "dlogits": p / p.sum(1, keepdims=True) / len(labels)}

    check = ex.check_softmax_cross_entropy
    text = _rejects(check, wrong_sign, "y - p (the wrong sign)")
    assert "sign is flipped" in text
    _rejects(check, no_batch_division, "not divided by the batch size")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        text = _rejects(check, naive, "no log-sum-exp (exp overflows)")
    assert "4 of 5" not in text and "1 of 5 cases failed" in text  # only the big logits fail
    _rejects(check, no_onehot, "forgot to subtract the one-hot labels")


def test_linear_student_mistakes():
    check = ex.check_linear_backward
    text = _rejects(
        check,
        lambda X, W, b, dY: {"dX": dY @ W, "dW": X.T @ dY, "db": dY.sum(0)},
        "transposed dW (X^T Delta)",
    )
    assert "transpose" in text
    text = _rejects(
        check,
        lambda X, W, b, dY: {"dX": dY @ W, "dW": dY.T @ X, "db": dY},
        "db not summed over the batch",
    )
    assert "expected shape" in text
    _rejects(
        check,
        lambda X, W, b, dY: {"dX": dY @ W, "dW": dY.T @ X, "db": np.mean(dY, axis=0)},
        "db averaged instead of summed",
    )
    _rejects(
        check,
        lambda X, W, b, dY: {"dX": dY @ W, "dW": (dY.T @ X) / X.shape[0], "db": dY.sum(0)},
        "dW divided by the batch size",
    )
    text = _rejects(
        check,
        lambda X, W, b, dY: {"dX": dY @ W.T, "dW": dY.T @ X, "db": dY.sum(0)},
        "dX with W transposed (Delta W^T)",
    )
    assert "raised ValueError" in text  # the non-square cases cannot even multiply


def test_mlp_student_mistakes_and_which_step_is_reported():
    def forgot_relu(X, y, params):
        g = mlp_right(X, y, params)
        dZ1 = g["dA1"]
        return g | {"dZ1": dZ1, "dW1": dZ1.T @ X, "db1": dZ1.sum(0)}

    text = _rejects(ex.check_mlp_backward, forgot_relu, "forgot the ReLU derivative")
    # the checker shows that every step up to dA1 is right and dZ1 is the first wrong one
    case1 = text.split("case 2")[0]
    for key in ("dZ2", "dW2", "db2", "dA1"):
        assert f"output['{key}']: \u2713" in case1
    assert "output['dZ1']: max |difference|" in case1

    def sum_not_mean(X, y, params):
        g = mlp_right(X, y, params)
        return {k: v * len(y) for k, v in g.items()}

    _rejects(ex.check_mlp_backward, sum_not_mean, "dZ2 not divided by the batch size")

    def sign(X, y, params):
        return {k: -v for k, v in mlp_right(X, y, params).items()}

    _rejects(ex.check_mlp_backward, sign, "y - p (the wrong sign)")


def test_tanh_checker_names_the_bug_and_gradcheck_finds_it():
    text = _rejects(ex.check_tanh_layer, ex.BuggyTanh, "the original bug: 1 - x^2 with the input x")
    assert "output['y']: \u2713" in text  # the forward pass is right, only dx is wrong

    class ForgotSquare(FixedTanh):
        def backward(self, grad_out):
            return grad_out * (1 - self.out)

    class NoUpstream(FixedTanh):
        def backward(self, grad_out):
            return 1 - self.out**2

    class SigmoidDerivative(FixedTanh):
        def backward(self, grad_out):
            return grad_out * self.out * (1 - self.out)

    _rejects(ex.check_tanh_layer, ForgotSquare, "forgot the square: 1 - tanh(x)")
    _rejects(ex.check_tanh_layer, NoUpstream, "did not multiply by grad_out")
    _rejects(ex.check_tanh_layer, SigmoidDerivative, "the sigmoid's derivative y (1 - y)")

    rng = np.random.default_rng(0)
    model = bp.Sequential(bp.Linear(4, 6, rng=rng), ex.BuggyTanh(), bp.Linear(6, 3, rng=rng))
    errors = bp.gradcheck(
        model, bp.SoftmaxCrossEntropy(), rng.normal(size=(5, 4)), np.arange(5) % 3
    )
    assert errors["2.W"] < 1e-8 and errors["0.W"] > 1e-2
    with pytest.raises(ValueError, match="class itself"):
        ex.check_tanh_layer(FixedTanh())


def test_softplus_student_mistakes():
    def make(local, assign=False, chain=True):
        def op(x):
            out = Value(math.log(1 + math.exp(x.data)), (x,), "softplus")

            def _backward(out):
                g = local(x.data) * (out.grad if chain else 1)
                if assign:
                    x.grad = g
                else:
                    x.grad += g

            out._backward = _backward
            return out

        return op

    def sig(t):
        return math.exp(t) / (1 + math.exp(t))

    _rejects(
        ex.check_softplus, make(lambda t: 1 / (1 + math.exp(t))), "forgot the inner derivative e^x"
    )
    _rejects(ex.check_softplus, make(sig, chain=False), "did not multiply by out.grad")
    _rejects(
        ex.check_softplus,
        make(sig, assign=True),
        "assigned the gradient (=) instead of accumulating it (+=)",
    )


def test_not_implemented_passes_through():
    def stub(*args):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        ex.check_linear_backward(stub)
    with pytest.raises(NotImplementedError):
        ex.check_softplus(stub)
