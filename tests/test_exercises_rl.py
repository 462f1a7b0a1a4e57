"""The Chapter 5 checkers accept right answers written independently here and reject every
mistake they list, by name, plus wrong answers written the way a student would write them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlbook import rl
from dlbook.exercises import rl as ex

CHECKERS = {
    "bellman": (ex.check_bellman_backup, ex.BELLMAN_MISTAKES),
    "returns": (ex.check_discounted_returns, ex.RETURNS_MISTAKES),
    "gae": (ex.check_gae, ex.GAE_MISTAKES),
    "ppo": (ex.check_ppo_clip_objective, ex.PPO_MISTAKES),
}
MISTAKE_IDS = [(k, m.name) for k, (_, ms) in CHECKERS.items() for m in ms]


# right answers, written with dlbook.rl (torch) rather than the checkers' loops


def bellman_right(P, R, gamma, V):
    return rl.bellman_backup(rl.MDP(P, R, gamma), V)


def returns_right(rewards, dones, gamma):
    G = rl.discounted_returns(torch.tensor(rewards)[:, None], torch.tensor(dones)[:, None], gamma)
    return G[:, 0].numpy()


def gae_right(rewards, values, next_values, dones, gamma, lam):
    col = [torch.tensor(x)[:, None] for x in (rewards, values, next_values, dones, dones)]
    return rl.gae(*col, gamma, lam)[0][:, 0].numpy()


def ppo_right(logp_new, logp_old, adv, eps):
    loss = rl.ppo_clip_loss(*(torch.tensor(x) for x in (logp_new, logp_old, adv)), eps)
    return -loss.item()


@pytest.mark.parametrize(
    "checker,fn",
    [
        ("bellman", bellman_right),
        ("returns", returns_right),
        ("gae", gae_right),
        ("ppo", ppo_right),
    ],
)
def test_right_answers_pass(checker, fn):
    report = CHECKERS[checker][0](fn)
    assert report.passed and report.n_failed == 0


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
    for _, mistakes in CHECKERS.values():
        assert len(mistakes) >= 3
        assert len({m.name for m in mistakes}) == len(mistakes)


def test_frozenlake_model_is_gymnasiums():
    P, R, _ = ex.frozenlake_model("4x4", True)
    assert P.shape == (16, 4, 16) and np.allclose(P.sum(-1), 1.0)
    # the only reward is reaching the goal (state 15) from 14, 11 (and slips into it)
    assert R[14].max() > 0 and R[0].max() == 0


def test_student_style_wrong_answers_get_specific_feedback():
    def returns_no_reset(rewards, dones, gamma):  # a student's loop that ignores dones
        out, acc = [], 0.0
        for r in rewards[::-1]:
            acc = r + gamma * acc
            out.append(acc)
        return np.array(out[::-1])

    with pytest.raises(AssertionError, match="did not stop at the end of an episode"):
        ex.check_discounted_returns(returns_no_reset)

    def ppo_with_max(logp_new, logp_old, adv, eps):
        ratio = np.exp(logp_new - logp_old)
        return float(
            np.mean([max(r * a, np.clip(r, 1 - eps, 1 + eps) * a) for r, a in zip(ratio, adv)])
        )

    with pytest.raises(AssertionError, match="max instead of min"):
        ex.check_ppo_clip_objective(ppo_with_max)

    def backup_shape_bug(P, R, gamma, V):  # forgets to return the table, returns V
        return np.max(R + gamma * np.einsum("sat,t->sa", P, V), axis=1)

    with pytest.raises(AssertionError, match="took the max over actions"):
        ex.check_bellman_backup(backup_shape_bug)
