"""Chapter 1's checkers beyond the contract (``test_exercises_contract.py``): which step of a
backward pass the feedback points at, and the "find the bug" layer's bug seen by gradcheck."""

from __future__ import annotations

import numpy as np
import pytest

from dlbook import backprop as bp
from dlbook.exercises import backprop as ex

from exercise_answers import mlp_forgot_relu, mlp_right


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
