"""Right and wrong answers to every auto-checked exercise, written the way a student would.

For each chapter, ``ANSWERS[chapter][exercise]`` holds right answers (each must pass the
exercise's checker) and wrong ones (each must fail with the named mistake's hint, plus any further
words in ``also``). They are written independently of the checkers' own references and mistake
functions, so that passing and recognising a mistake do not depend on an answer being computed
exactly as the checker computes it. The keys match each module's ``EXERCISES``; the contract in
``test_exercises_contract.py`` runs them. They live here, not in ``dlbook``, because students
import ``dlbook``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from dlbook import attention as A
from dlbook import backprop as bp
from dlbook import gan, gpt, rl
from dlbook.autograd import Value
from dlbook.exercises import attention, backprop, demo
from dlbook.exercises import gan as gan_ex
from dlbook.exercises import gpt as gpt_ex
from dlbook.exercises import rl as rl_ex


@dataclass(frozen=True)
class Wrong:
    """A wrong answer and what the feedback on it must contain."""

    answer: Any  # what the student passes to the checker: a function, or a class
    mistake: str  # the name of the checker's Mistake it must be recognised as
    also: tuple[str, ...] = ()  # further words the feedback must contain


@dataclass(frozen=True)
class Answers:
    """Right and wrong answers to one exercise."""

    right: tuple[Any, ...]
    wrong: tuple[Wrong, ...] = ()


# ----------------------------------------------------------------------------- 00: the demo


def mse_right(y_pred, y):
    return float(np.mean((y_pred - y) ** 2))


def mse_grad_right(y_pred, y):
    return 2 * (y_pred - y) / y_pred.size


def mse_summed_in_a_loop(y_pred, y):
    return float(sum((a - b) ** 2 for a, b in zip(y_pred.ravel(), y.ravel())))


def mse_grad_over_len(y_pred, y):
    return 2 * (y_pred - y) / len(y_pred)  # right for vectors, not for matrices


DEMO = {
    "mse": Answers(
        right=(mse_right,), wrong=(Wrong(mse_summed_in_a_loop, "a sum instead of a mean"),)
    ),
    "mse_grad": Answers(
        right=(mse_grad_right,),
        wrong=(Wrong(mse_grad_over_len, "divided by the number of rows only"),),
    ),
}


# ----------------------------------------------------------------------------- 01: backprop


def softmax_ce_right(logits, labels):
    b = len(labels)
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    p[np.arange(b), labels] -= 1
    return {"loss": float(-log_p[np.arange(b), labels].mean()), "dlogits": p / b}


def softmax_ce_wrong_sign(logits, labels):
    out = softmax_ce_right(logits, labels)
    return {"loss": out["loss"], "dlogits": -out["dlogits"]}


def softmax_ce_no_batch_division(logits, labels):
    out = softmax_ce_right(logits, labels)
    return {"loss": out["loss"], "dlogits": out["dlogits"] * len(labels)}


def softmax_ce_naive(logits, labels):
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(len(labels)), labels]))
    onehot = np.zeros_like(p)
    onehot[np.arange(len(labels)), labels] = 1
    return {"loss": float(loss), "dlogits": (p - onehot) / len(labels)}


def softmax_ce_no_onehot(logits, labels):
    out = softmax_ce_right(logits, labels)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return {"loss": out["loss"], "dlogits": p / p.sum(1, keepdims=True) / len(labels)}


def linear_right(X, W, b, dY):
    return {"dX": dY @ W, "dW": dY.T @ X, "db": dY.sum(axis=0)}


def linear_dw_transposed(X, W, b, dY):
    return {"dX": dY @ W, "dW": X.T @ dY, "db": dY.sum(0)}


def linear_db_unsummed(X, W, b, dY):
    return {"dX": dY @ W, "dW": dY.T @ X, "db": dY}


def linear_db_mean(X, W, b, dY):
    return {"dX": dY @ W, "dW": dY.T @ X, "db": np.mean(dY, axis=0)}


def linear_dw_over_batch(X, W, b, dY):
    return {"dX": dY @ W, "dW": (dY.T @ X) / X.shape[0], "db": dY.sum(0)}


def linear_dx_with_w_transposed(X, W, b, dY):
    return {"dX": dY @ W.T, "dW": dY.T @ X, "db": dY.sum(0)}


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


def mlp_forgot_relu(X, y, params):
    g = mlp_right(X, y, params)
    dZ1 = g["dA1"]
    return g | {"dZ1": dZ1, "dW1": dZ1.T @ X, "db1": dZ1.sum(0)}


def mlp_sum_not_mean(X, y, params):
    return {k: v * len(y) for k, v in mlp_right(X, y, params).items()}


def mlp_wrong_sign(X, y, params):
    return {k: -v for k, v in mlp_right(X, y, params).items()}


class FixedTanh(bp.Layer):
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, grad_out):
        return grad_out * (1 - self.out**2)


class ForgotSquare(FixedTanh):
    def backward(self, grad_out):
        return grad_out * (1 - self.out)


class NoUpstream(FixedTanh):
    def backward(self, grad_out):
        return 1 - self.out**2


class SigmoidDerivative(FixedTanh):
    def backward(self, grad_out):
        return grad_out * self.out * (1 - self.out)


def softplus_right(x: Value) -> Value:
    out = Value(math.log1p(math.exp(x.data)), (x,), "softplus")

    def _backward(out):
        x.grad += out.grad / (1 + math.exp(-x.data))

    out._backward = _backward
    return out


def softplus_composed(x: Value) -> Value:
    return (x.exp() + 1).log()  # from the engine's own operations


def _softplus_op(local: Callable[[float], float], assign: bool = False, chain: bool = True):
    """A softplus whose backward multiplies ``local(x)`` (times ``out.grad`` if ``chain``)
    into ``x.grad``, with ``=`` if ``assign``."""

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


def _sig(t):
    return math.exp(t) / (1 + math.exp(t))


BACKPROP = {
    "softmax_cross_entropy": Answers(
        right=(softmax_ce_right,),
        wrong=(
            Wrong(softmax_ce_wrong_sign, "y - p (the wrong sign)", also=("sign is flipped",)),
            Wrong(softmax_ce_no_batch_division, "not divided by the batch size"),
            # only the logits near 1000 overflow: the other four cases pass
            Wrong(
                softmax_ce_naive, "no log-sum-exp (exp overflows)", also=("1 of 5 cases failed",)
            ),
            Wrong(softmax_ce_no_onehot, "forgot to subtract the one-hot labels"),
        ),
    ),
    "linear_backward": Answers(
        right=(linear_right,),
        wrong=(
            Wrong(linear_dw_transposed, "transposed dW (X^T Delta)", also=("transpose",)),
            Wrong(linear_db_unsummed, "db not summed over the batch", also=("expected shape",)),
            Wrong(linear_db_mean, "db averaged instead of summed"),
            Wrong(linear_dw_over_batch, "dW divided by the batch size"),
            # the non-square cases cannot even multiply; the square one is recognised
            Wrong(
                linear_dx_with_w_transposed,
                "dX with W transposed (Delta W^T)",
                also=("raised ValueError",),
            ),
        ),
    ),
    "mlp_backward": Answers(
        right=(mlp_right,),
        wrong=(
            Wrong(mlp_forgot_relu, "forgot the ReLU derivative"),
            Wrong(mlp_sum_not_mean, "dZ2 not divided by the batch size"),
            Wrong(mlp_wrong_sign, "y - p (the wrong sign)"),
        ),
    ),
    "tanh_layer": Answers(
        right=(FixedTanh, bp.Tanh),
        wrong=(
            # the forward pass is right, only dx is wrong
            Wrong(
                backprop.BuggyTanh,
                "the original bug: 1 - x^2 with the input x",
                also=("output['y']: \u2713",),
            ),
            Wrong(ForgotSquare, "forgot the square: 1 - tanh(x)"),
            Wrong(NoUpstream, "did not multiply by grad_out"),
            Wrong(SigmoidDerivative, "the sigmoid's derivative y (1 - y)"),
        ),
    ),
    "softplus": Answers(
        right=(softplus_right, softplus_composed),
        wrong=(
            Wrong(_softplus_op(lambda t: 1 / (1 + math.exp(t))), "forgot the inner derivative e^x"),
            Wrong(_softplus_op(_sig, chain=False), "did not multiply by out.grad"),
            Wrong(
                _softplus_op(_sig, assign=True),
                "assigned the gradient (=) instead of accumulating it (+=)",
            ),
        ),
    ),
}


# ----------------------------------------------------------------------------- 02: attention


def masked_attention_right(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=scores.dtype))
    return torch.softmax(scores, dim=-1) @ v


def masked_attention_with_dlbook(q, k, v, mask):
    return A.scaled_dot_product_attention(q, k, v, mask=mask)


def masked_attention_times_mask(q, k, v, mask):
    s = torch.matmul(q, k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    return torch.softmax(s * mask, dim=-1) @ v  # multiplying by the mask: 0, not -inf


def masked_attention_unscaled(q, k, v, mask):
    s = torch.einsum("...id,...jd->...ij", q, k)
    return torch.softmax(s.masked_fill(mask == 0, -1e30), dim=-1) @ v


def masked_attention_wrong_axis(q, k, v, mask):
    s = (q @ k.mT) / math.sqrt(k.shape[-1])
    return s.masked_fill(~mask, -math.inf).softmax(dim=-2) @ v


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


def _sdpa(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def multi_head_no_transpose(x, w_in, b_in, w_out, b_out, h):
    B, T, d = x.shape
    q, k, v = torch.chunk(x @ w_in.t() + b_in, 3, dim=-1)
    q, k, v = (z.view(B, h, T, d // h) for z in (q, k, v))
    o = _sdpa(q, k, v).transpose(1, 2).reshape(B, T, d)
    return o @ w_out.t() + b_out


def multi_head_forgot_projection(x, w_in, b_in, w_out, b_out, h):
    B, T, d = x.shape
    q, k, v = torch.chunk(x @ w_in.t() + b_in, 3, dim=-1)
    q, k, v = (z.view(B, T, h, d // h).transpose(1, 2) for z in (q, k, v))
    return _sdpa(q, k, v).transpose(1, 2).reshape(B, T, d)


def softmax_jacobian_right(z):
    p = torch.exp(z - z.max()) / torch.exp(z - z.max()).sum()
    return torch.diag(p) - p[:, None] * p[None, :]


def softmax_jacobian_only_diagonal(z):
    p = torch.softmax(z, 0)
    return torch.diag_embed(p - p**2)


def online_softmax_right(x, block):
    m = torch.tensor(float("-inf"), dtype=x.dtype)
    s = torch.tensor(0.0, dtype=x.dtype)
    for start in range(0, x.numel(), block):
        chunk = x[start : start + block]
        new_m = torch.maximum(m, chunk.max())
        s = s * torch.exp(m - new_m) + torch.exp(chunk - new_m).sum()
        m = new_m
    return torch.exp(x - m) / s


def online_softmax_no_rescale(x, block):
    m, s = -math.inf, 0.0
    for j in range(0, len(x), block):
        m = max(m, float(x[j : j + block].max()))
        s += float(torch.exp(x[j : j + block] - m).sum())
    return torch.exp(x - m) / s


ATTENTION = {
    "masked_attention": Answers(
        right=(masked_attention_right, masked_attention_with_dlbook),
        wrong=(
            Wrong(masked_attention_times_mask, "masked scores set to 0"),
            Wrong(masked_attention_unscaled, "no scaling"),
            Wrong(masked_attention_wrong_axis, "softmax over the queries"),
        ),
    ),
    "multi_head_attention": Answers(
        right=(multi_head_right,),
        wrong=(
            Wrong(multi_head_no_transpose, "heads split without a transpose"),
            Wrong(multi_head_forgot_projection, "no output projection"),
        ),
    ),
    "softmax_jacobian": Answers(
        right=(softmax_jacobian_right, A.softmax_jacobian),
        wrong=(Wrong(softmax_jacobian_only_diagonal, "the diagonal only"),),
    ),
    "online_softmax": Answers(
        right=(online_softmax_right, A.online_softmax),
        wrong=(Wrong(online_softmax_no_rescale, "the running sum not rescaled"),),
    ),
}


# ----------------------------------------------------------------------------- 03: GPT


def nucleus_right(probs, p):
    order = np.argsort(-probs)
    sorted_probs = probs[order]
    before = np.cumsum(sorted_probs) - sorted_probs
    out = np.zeros_like(probs)
    out[order[before < p]] = sorted_probs[before < p]
    return out / out.sum()


def nucleus_with_dlbook(probs, p):
    """Through dlbook.gpt.top_p_filter on log-probabilities."""
    logits = torch.from_numpy(np.log(probs))
    return torch.softmax(gpt.top_p_filter(logits, p), -1).numpy()


def nucleus_not_renormalised(probs, p):
    idx = np.argsort(probs)[::-1]
    total, out = 0.0, np.zeros_like(probs)
    for i in idx:
        if total >= p:
            break
        out[i] = probs[i]
        total += probs[i]
    return out  # forgot to divide by total


def nucleus_strict(probs, p):
    idx = np.argsort(probs)[::-1]
    out, total = np.zeros_like(probs), 0.0
    for i in idx:
        total += probs[i]
        if total > p and out.any():
            break
        out[i] = probs[i]
    return out / out.sum()


def causal_right(q, k, v):
    t, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v


def causal_with_dlbook(q, k, v):
    return A.scaled_dot_product_attention(q, k, v, is_causal=True, explicit=True)


def causal_after_softmax(q, k, v):
    w = torch.softmax(q @ k.mT / q.shape[-1] ** 0.5, dim=-1)
    return torch.tril(w) @ v


def causal_wrong_triangle(q, k, v):
    t = q.shape[-2]
    mask = torch.tril(torch.ones(t, t)) == 1
    s = (q @ k.mT / q.shape[-1] ** 0.5).masked_fill(mask.T == 0, -1e30)
    return torch.softmax(s, dim=-1) @ v


def param_count_right(V, T, L, d):
    attention = 3 * d * d + 3 * d + d * d + d
    mlp = 4 * d * d + 4 * d + 4 * d * d + d
    layer_norms = 2 * 2 * d
    return V * d + T * d + L * (attention + mlp + layer_norms) + 2 * d


def param_count_untied(V, T, L, d):
    return param_count_right(V, T, L, d) + d * V  # an lm_head of its own


GPT = {
    "nucleus": Answers(
        right=(nucleus_right, nucleus_with_dlbook),
        wrong=(
            Wrong(nucleus_not_renormalised, "not renormalised"),
            Wrong(nucleus_strict, "the crossing token dropped"),
        ),
    ),
    "causal_attention": Answers(
        right=(causal_right, causal_with_dlbook),
        wrong=(
            Wrong(causal_after_softmax, "masked after the softmax"),
            Wrong(causal_wrong_triangle, "the wrong triangle"),
        ),
    ),
    "param_count": Answers(
        right=(param_count_right, gpt.param_count),
        wrong=(Wrong(param_count_untied, "an untied output layer"),),
    ),
}


# ----------------------------------------------------------------------------- 04: GANs


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def saturating_right(logits):
    return float(-_softplus(logits).mean())


def nonsaturating_right(logits):
    return float(_softplus(-logits).mean())


def d_star_right(p_data, p_g):
    return p_data / (p_data + p_g)


def modes_right(samples, modes, std):
    m = gan.mode_metrics(samples, modes, std)
    return m["modes_captured"], m["high_quality_rate"]


def modes_every_nearest(samples, modes, std):
    nearest = np.argmin(((samples[:, None] - modes[None]) ** 2).sum(-1), axis=1)
    return len(set(nearest.tolist())), modes_right(samples, modes, std)[1]


GANS = {
    "saturating_loss": Answers(
        right=(saturating_right,),
        wrong=(
            Wrong(
                lambda logits: float(np.mean(_softplus(-logits))),
                "the non-saturating loss instead",
            ),
            Wrong(lambda logits: float(np.sum(-_softplus(logits))), "a sum instead of a mean"),
            Wrong(lambda logits: float(np.mean(_softplus(logits))), "the wrong sign"),
            Wrong(
                lambda logits: float(np.mean(np.log(1 - _sigmoid(logits)))),
                "log of the sigmoid computed directly",
            ),
        ),
    ),
    "nonsaturating_loss": Answers(
        right=(nonsaturating_right,),
        wrong=(
            Wrong(
                lambda logits: float(-np.mean(np.log(_sigmoid(logits)))),
                "log of the sigmoid computed directly",
            ),
            Wrong(lambda logits: float(np.mean(-_softplus(logits))), "the saturating loss instead"),
            Wrong(lambda logits: float(np.mean(-_softplus(-logits))), "the wrong sign"),
        ),
    ),
    "d_star": Answers(
        right=(d_star_right, gan.optimal_discriminator),
        wrong=(
            Wrong(lambda p, q: q / (q + p), "p_g on top"),
            Wrong(lambda p, q: np.divide(p, q), "the density ratio"),
            Wrong(lambda p, q: _sigmoid(p - q), "sigmoid of the difference"),
        ),
    ),
    "mode_metrics": Answers(
        right=(modes_right,),
        wrong=(
            Wrong(lambda s, m, std: modes_right(s, m, std / 3), "one standard deviation"),
            Wrong(modes_every_nearest, "every nearest mode counted"),
            Wrong(
                lambda s, m, std: (modes_right(s, m, std)[0], modes_right(s, m, std)[1] * len(s)),
                "a count instead of a rate",
            ),
        ),
    ),
}


# ----------------------------------------------------------------------------- 05: RL


def bellman_right(P, R, gamma, V):
    return rl.bellman_backup(rl.MDP(P, R, gamma), V)


def bellman_returned_v(P, R, gamma, V):
    return np.max(R + gamma * np.einsum("sat,t->sa", P, V), axis=1)


def returns_right(rewards, dones, gamma):
    G = rl.discounted_returns(torch.tensor(rewards)[:, None], torch.tensor(dones)[:, None], gamma)
    return G[:, 0].numpy()


def returns_no_reset(rewards, dones, gamma):
    out, acc = [], 0.0
    for r in rewards[::-1]:
        acc = r + gamma * acc
        out.append(acc)
    return np.array(out[::-1])


def gae_right(rewards, values, next_values, dones, gamma, lam):
    col = [torch.tensor(x)[:, None] for x in (rewards, values, next_values, dones, dones)]
    return rl.gae(*col, gamma, lam)[0][:, 0].numpy()


def gae_no_reset(rewards, values, next_values, dones, gamma, lam):
    advantages, acc = np.zeros_like(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * next_values[t] - values[t] + gamma * lam * acc
        advantages[t] = acc
    return advantages


def ppo_right(logp_new, logp_old, adv, eps):
    loss = rl.ppo_clip_loss(*(torch.tensor(x) for x in (logp_new, logp_old, adv)), eps)
    return -loss.item()


def ppo_with_max(logp_new, logp_old, adv, eps):
    ratio = np.exp(logp_new - logp_old)
    return float(
        np.mean([max(r * a, np.clip(r, 1 - eps, 1 + eps) * a) for r, a in zip(ratio, adv)])
    )


RL = {
    "bellman_backup": Answers(
        right=(bellman_right,),
        wrong=(Wrong(bellman_returned_v, "took the max over actions (returned V, not Q)"),),
    ),
    "discounted_returns": Answers(
        right=(returns_right,),
        wrong=(Wrong(returns_no_reset, "did not stop at the end of an episode"),),
    ),
    "gae": Answers(
        right=(gae_right,),
        wrong=(Wrong(gae_no_reset, "did not stop at the end of an episode"),),
    ),
    "ppo_clip_objective": Answers(
        right=(ppo_right,), wrong=(Wrong(ppo_with_max, "max instead of min"),)
    ),
}


# ----------------------------------------------------------------------------- every chapter

CHAPTERS: dict[str, tuple[ModuleType, dict[str, Answers]]] = {
    "00-preface": (demo, DEMO),
    "01-backprop": (backprop, BACKPROP),
    "02-attention": (attention, ATTENTION),
    "03-gpt": (gpt_ex, GPT),
    "04-gans": (gan_ex, GANS),
    "05-rl": (rl_ex, RL),
}
