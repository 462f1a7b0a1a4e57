"""Chapter 4's checkers accept right answers and name each plausible wrong one.

Wrong answers come from two places: each checker's own list of mistakes, and wrong answers
written here the way a student would write them (so that recognising a mistake does not depend
on it being computed exactly as the checker computes it).
"""

from __future__ import annotations

import numpy as np
import pytest

from dlbook import gan
from dlbook.exercises import gan as ex

# ----------------------------------------------------------------------------- right answers


def softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def saturating_right(logits):
    return float(-softplus(logits).mean())


def nonsaturating_right(logits):
    return float(softplus(-logits).mean())


def d_star_right(p_data, p_g):
    return p_data / (p_data + p_g)


def modes_right(samples, modes, std):
    m = gan.mode_metrics(samples, modes, std)
    return m["modes_captured"], m["high_quality_rate"]


def _feedback(checker, fn) -> str:
    with pytest.raises(AssertionError) as err:
        checker(fn)
    return str(err.value)


@pytest.mark.parametrize(
    "checker, fn",
    [
        (ex.check_saturating_loss, saturating_right),
        (ex.check_nonsaturating_loss, nonsaturating_right),
        (ex.check_d_star, d_star_right),
        (ex.check_d_star, gan.optimal_discriminator),
        (ex.check_mode_metrics, modes_right),
    ],
)
def test_checkers_accept_right_answers(checker, fn):
    report = checker(fn)
    assert report.passed and report.n_failed == 0


# ----------------------------------------------------------------------------- listed mistakes


@pytest.mark.parametrize(
    "checker, mistakes",
    [
        (ex.check_saturating_loss, ex.SATURATING_MISTAKES),
        (ex.check_nonsaturating_loss, ex.NONSATURATING_MISTAKES),
        (ex.check_d_star, ex.D_STAR_MISTAKES),
        (ex.check_mode_metrics, ex.MODE_MISTAKES),
    ],
)
def test_checkers_reject_each_listed_mistake_by_name(checker, mistakes):
    assert len(mistakes) >= 3
    for m in mistakes:
        text = _feedback(checker, m.wrong)
        assert f"known mistake, {m.name}" in text, (m.name, text)


# ------------------------------------------------------------------------ as students write them


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


STUDENT_WRONG = [
    # (checker, wrong function, the mistake it must be recognised as)
    (
        ex.check_saturating_loss,
        lambda logits: float(np.mean(softplus(-logits))),
        "the non-saturating loss instead",
    ),
    (
        ex.check_saturating_loss,
        lambda logits: float(np.sum(-softplus(logits))),
        "a sum instead of a mean",
    ),
    (
        ex.check_saturating_loss,
        lambda logits: float(np.mean(softplus(logits))),
        "the wrong sign",
    ),
    (
        ex.check_saturating_loss,
        lambda logits: float(np.mean(np.log(1 - _sigmoid(logits)))),
        "log of the sigmoid computed directly",
    ),
    (
        ex.check_nonsaturating_loss,
        lambda logits: float(-np.mean(np.log(_sigmoid(logits)))),
        "log of the sigmoid computed directly",
    ),
    (
        ex.check_nonsaturating_loss,
        lambda logits: float(np.mean(-softplus(logits))),
        "the saturating loss instead",
    ),
    (
        ex.check_nonsaturating_loss,
        lambda logits: float(np.mean(-softplus(-logits))),
        "the wrong sign",
    ),
    (ex.check_d_star, lambda p, q: q / (q + p), "p_g on top"),
    (ex.check_d_star, lambda p, q: np.divide(p, q), "the density ratio"),
    (ex.check_d_star, lambda p, q: _sigmoid(p - q), "sigmoid of the difference"),
    (
        ex.check_mode_metrics,
        lambda s, m, std: modes_right(s, m, std / 3),
        "one standard deviation",
    ),
    (
        ex.check_mode_metrics,
        lambda s, m, std: (
            len(set(np.argmin(((s[:, None] - m[None]) ** 2).sum(-1), axis=1).tolist())),
            modes_right(s, m, std)[1],
        ),
        "every nearest mode counted",
    ),
    (
        ex.check_mode_metrics,
        lambda s, m, std: (modes_right(s, m, std)[0], modes_right(s, m, std)[1] * len(s)),
        "a count instead of a rate",
    ),
]


@pytest.mark.parametrize("checker, fn, name", STUDENT_WRONG, ids=[w[2] for w in STUDENT_WRONG])
def test_checkers_name_mistakes_written_by_students(checker, fn, name):
    with np.errstate(all="ignore"):
        text = _feedback(checker, fn)
    assert f"known mistake, {name}" in text, text


def test_unattempted_exercise_raises_not_implemented():
    def stub(logits):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        ex.check_saturating_loss(stub)
