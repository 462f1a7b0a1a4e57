"""Chapter 5's checkers beyond the contract (``test_exercises_contract.py``): the FrozenLake
model the Bellman backup is checked on is gymnasium's."""

from __future__ import annotations

import numpy as np

from dlbook.exercises import rl as ex


def test_frozenlake_model_is_gymnasiums():
    P, R, _ = ex.frozenlake_model("4x4", True)
    assert P.shape == (16, 4, 16) and np.allclose(P.sum(-1), 1.0)
    # the only reward is reaching the goal (state 15) from 14, 11 (and slips into it)
    assert R[14].max() > 0 and R[0].max() == 0
