"""Chapter 3's checkers accept right answers and name each plausible wrong one.

Right answers are written here the way a student would write them (not copied from the
references), and each checker must reject each of its listed mistakes by name.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlbook import gpt
from dlbook.exercises import gpt as ex

# ----------------------------------------------------------------------------- right answers


def nucleus_right(probs, p):
    order = np.argsort(-probs)
    sorted_probs = probs[order]
    before = np.cumsum(sorted_probs) - sorted_probs
    out = np.zeros_like(probs)
    out[order[before < p]] = sorted_probs[before < p]
    return out / out.sum()


def nucleus_with_torch(probs, p):
    """Through dlbook.gpt.top_p_filter on log-probabilities: a second right answer."""
    logits = torch.from_numpy(np.log(probs))
    return torch.softmax(gpt.top_p_filter(logits, p), -1).numpy()


def causal_right(q, k, v):
    t, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v


def causal_with_dlbook(q, k, v):
    from dlbook.attention import scaled_dot_product_attention

    return scaled_dot_product_attention(q, k, v, is_causal=True, explicit=True)


def param_count_right(V, T, L, d):
    attention = 3 * d * d + 3 * d + d * d + d
    mlp = 4 * d * d + 4 * d + 4 * d * d + d
    layer_norms = 2 * 2 * d
    return V * d + T * d + L * (attention + mlp + layer_norms) + 2 * d


CHECKERS = {
    "nucleus": (ex.check_nucleus, ex.NUCLEUS_MISTAKES, [nucleus_right, nucleus_with_torch]),
    "causal": (ex.check_causal_attention, ex.CAUSAL_MISTAKES, [causal_right, causal_with_dlbook]),
    "params": (ex.check_param_count, ex.PARAM_MISTAKES, [param_count_right, gpt.param_count]),
}


@pytest.mark.parametrize("name", CHECKERS)
def test_checker_accepts_right_answers(name):
    checker, _, rights = CHECKERS[name]
    for fn in rights:
        report = checker(fn)
        assert report.passed and report.n_failed == 0


def _feedback(checker, fn) -> str:
    with pytest.raises(AssertionError) as err:
        checker(fn)
    return str(err.value)


@pytest.mark.parametrize(
    "name,mistake",
    [(n, m) for n, (_, ms, _) in CHECKERS.items() for m in ms],
    ids=[f"{n}-{m.name}" for n, (_, ms, _) in CHECKERS.items() for m in ms],
)
def test_checker_names_each_listed_mistake(name, mistake):
    checker = CHECKERS[name][0]
    feedback = _feedback(checker, mistake.wrong)
    assert f"known mistake, {mistake.name}:" in feedback


# ----------------------------------------------------------------------------- student-style


def test_nucleus_student_mistakes_are_named():
    def no_renorm(probs, p):
        idx = np.argsort(probs)[::-1]
        total, out = 0.0, np.zeros_like(probs)
        for i in idx:
            if total >= p:
                break
            out[i] = probs[i]
            total += probs[i]
        return out  # forgot to divide by total

    assert "known mistake, not renormalised" in _feedback(ex.check_nucleus, no_renorm)

    def strict(probs, p):
        idx = np.argsort(probs)[::-1]
        out, total = np.zeros_like(probs), 0.0
        for i in idx:
            total += probs[i]
            if total > p and out.any():
                break
            out[i] = probs[i]
        return out / out.sum()

    assert "known mistake, the crossing token dropped" in _feedback(ex.check_nucleus, strict)


def test_causal_student_mistakes_are_named():
    def after_softmax(q, k, v):
        w = torch.softmax(q @ k.mT / q.shape[-1] ** 0.5, dim=-1)
        return torch.tril(w) @ v

    assert "known mistake, masked after the softmax" in _feedback(
        ex.check_causal_attention, after_softmax
    )

    def wrong_triangle(q, k, v):
        t = q.shape[-2]
        mask = torch.tril(torch.ones(t, t)) == 1
        s = (q @ k.mT / q.shape[-1] ** 0.5).masked_fill(mask.T == 0, -1e30)
        return torch.softmax(s, dim=-1) @ v

    assert "known mistake, the wrong triangle" in _feedback(
        ex.check_causal_attention, wrong_triangle
    )


def test_param_count_student_mistake_is_named():
    def untied(V, T, L, d):
        return param_count_right(V, T, L, d) + d * V  # an lm_head of its own

    assert "known mistake, an untied output layer" in _feedback(ex.check_param_count, untied)


def test_unattempted_exercise_passes_not_implemented_through():
    def stub(*args):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        ex.check_nucleus(stub)
