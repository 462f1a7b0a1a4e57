"""Tests for dlbook.rl.dqn: the replay buffer's storage and sampling, the TD target at terminated
and truncated steps, the target network's updates, the trainer's contract on a short run, and
the expected TD update of Baird's counterexample against its closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlbook.rl.dqn import (
    DQNConfig,
    QNetwork,
    ReplayBuffer,
    baird_counterexample,
    expected_td_update,
    td_target,
    train_dqn,
    update_target,
)

# ----------------------------------------------------------------------------- replay buffer


def _fill(buf: ReplayBuffer, start: int, n: int) -> None:
    """Add transitions numbered start .. start + n - 1 (the number in every field)."""
    k = torch.arange(start, start + n, dtype=torch.float32)
    buf.add(k[:, None].repeat(1, 4), k.long(), k, -k[:, None].repeat(1, 4), k.long() % 2 == 1)


def test_replay_buffer_keeps_the_last_transitions_in_order():
    buf = ReplayBuffer(10, 4)
    _fill(buf, 0, 4)
    assert len(buf) == 4 and buf.reward[:4].tolist() == [0, 1, 2, 3]
    _fill(buf, 4, 8)  # 12 in all: wraps around, 0 and 1 overwritten by 10 and 11
    assert len(buf) == 10
    assert sorted(buf.reward.tolist()) == list(range(2, 12))
    assert buf.reward[:2].tolist() == [10, 11] and buf.pos == 2
    # every field of a slot belongs to the same transition
    k = buf.reward
    assert torch.equal(buf.obs[:, 0], k) and torch.equal(buf.next_obs[:, 3], -k)
    assert torch.equal(buf.action, k.long()) and torch.equal(buf.terminated, k.long() % 2 == 1)


def test_replay_buffer_samples_uniformly_from_what_is_stored():
    buf = ReplayBuffer(100, 4)
    _fill(buf, 0, 7)  # only 7 of 100 slots filled: must never return an empty slot
    gen = torch.Generator().manual_seed(0)
    obs, action, reward, next_obs, term = buf.sample(70_000, generator=gen)
    counts = torch.bincount(reward.long(), minlength=7)
    assert counts.numel() == 7  # nothing outside 0..6
    # uniform: each count ~ Binomial(70000, 1/7), sd ~ 93; 5 sd
    assert (counts - 10_000).abs().max() < 470
    assert torch.equal(obs[:, 0], reward) and torch.equal(next_obs[:, 0], -reward)
    assert torch.equal(action, reward.long()) and torch.equal(term, reward.long() % 2 == 1)
    # same generator state, same sample
    a = buf.sample(5, generator=torch.Generator().manual_seed(3))
    b = buf.sample(5, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_replay_buffer_validates():
    buf = ReplayBuffer(4, 4)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(2)
    with pytest.raises(ValueError, match="expected"):
        buf.add(
            torch.zeros(2, 3), torch.zeros(2), torch.zeros(2), torch.zeros(2, 4), torch.zeros(2)
        )
    with pytest.raises(ValueError, match="cannot add"):
        _fill(buf, 0, 5)
    with pytest.raises(ValueError):
        ReplayBuffer(0, 4)


# ----------------------------------------------------------------------------- TD target


def test_td_target_bootstraps_on_truncation_not_on_termination():
    reward = torch.tensor([1.0, 1.0, 0.5])
    next_q = torch.tensor([[2.0, 3.0], [2.0, 3.0], [-1.0, -4.0]])
    # step 0: terminated (value 0); steps 1 and 2: not terminated (running, or truncated)
    terminated = torch.tensor([True, False, False])
    y = td_target(reward, next_q, terminated, gamma=0.9)
    assert torch.allclose(y, torch.tensor([1.0, 1.0 + 0.9 * 3.0, 0.5 + 0.9 * -1.0]))
    # the wrong version, treating a truncation as a termination, differs on step 1
    done = torch.tensor([True, True, False])
    assert td_target(reward, next_q, done, 0.9)[1] == 1.0


def test_td_target_has_no_gradient_through_the_bootstrap():
    next_q = torch.randn(5, 2, requires_grad=True)
    y = td_target(torch.ones(5), next_q, torch.zeros(5, dtype=torch.bool), 0.99)
    assert not y.requires_grad


def test_td_target_validates():
    with pytest.raises(ValueError, match="expected"):
        td_target(torch.ones(3), torch.ones(3), torch.zeros(3, dtype=torch.bool), 0.9)
    with pytest.raises(ValueError, match="gamma"):
        td_target(torch.ones(3), torch.ones(3, 2), torch.zeros(3, dtype=torch.bool), 1.5)


def test_stored_truncation_gives_a_bootstrapped_target_on_cartpole():
    """A time limit of 3 steps: the stored next state is the final one, flagged not terminated."""
    from dlbook.rl.cartpole import CartPole

    env = CartPole(4, device="cpu", seed=0, max_steps=3)
    buf = ReplayBuffer(32, 4)
    obs = env.reset()
    for _ in range(3):
        action = torch.zeros(4, dtype=torch.long)
        nxt, r, term, trunc = env.step(action)
        reached = torch.where((term | trunc)[:, None], env.final_obs, nxt)
        buf.add(obs, action, r, reached, term)
        obs = nxt
    assert trunc.all() and not term.any()
    # the stored next state continues the trajectory (one Euler step from the stored state)
    from dlbook.rl.cartpole import cartpole_dynamics

    assert torch.allclose(buf.next_obs[8:12], cartpole_dynamics(buf.obs[8:12], buf.action[8:12]))
    assert not torch.allclose(buf.next_obs[8:12], obs)  # not the new episode's first state
    q = QNetwork()
    y = td_target(buf.reward[:12], q(buf.next_obs[:12]), buf.terminated[:12], 0.99)
    assert torch.allclose(y[8:], 1 + 0.99 * q(env.final_obs).max(1).values, atol=1e-6)


# ----------------------------------------------------------------------------- target network


def test_update_target_copies_and_averages():
    torch.manual_seed(0)
    online, target = QNetwork(), QNetwork()
    old = [p.clone() for p in target.parameters()]
    update_target(target, online, tau=0.1)
    for p_t, p, o in zip(target.parameters(), online.parameters(), old):
        assert torch.allclose(p_t, 0.1 * p + 0.9 * o, atol=1e-7)
    update_target(target, online, tau=1.0)
    assert all(torch.equal(p_t, p) for p_t, p in zip(target.parameters(), online.parameters()))
    with pytest.raises(ValueError, match="tau"):
        update_target(target, online, tau=0.0)


def test_train_dqn_contract():
    """A short run: same seed same run, the caller's RNG untouched, evaluations where asked,
    the epsilon schedule."""
    cfg = DQNConfig(
        total_timesteps=1_000, learning_starts=200, target_network_frequency=200, batch_size=32
    )
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = train_dqn(cfg, seed=1, device="cpu", eval_every=500, eval_episodes=2, progress="off")
    after = torch.rand(3)
    assert torch.equal(before, after)
    b = train_dqn(cfg, seed=1, device="cpu", eval_every=500, eval_episodes=2, progress="off")
    assert np.array_equal(a.history.values("eval"), b.history.values("eval"))
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert list(a.history.steps("eval")) == [504, 1_000]
    assert cfg.epsilon(0) == 1.0 and cfg.epsilon(200) == pytest.approx(cfg.end_e)
    assert cfg.epsilon(900) == cfg.end_e
    assert cfg.epsilon(100) == pytest.approx((1.0 + cfg.end_e) / 2)
    with pytest.raises(ValueError):
        DQNConfig(end_e=0.5, start_e=0.1)


# ----------------------------------------------------------------------------- Baird


def test_baird_expected_update_matches_the_closed_form():
    mdp, X, b, pi = baird_counterexample(0.99)
    mu = np.full(7, 1 / 7)
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    A = X.T @ np.diag(mu) @ (0.99 * P_pi - np.eye(7)) @ X
    rng = np.random.default_rng(0)
    for _ in range(5):
        w = rng.normal(size=8)
        assert np.allclose(expected_td_update(mdp, X, w, pi, b, mu), A @ w, atol=1e-13)
    assert np.linalg.eigvals(A).real.max() == pytest.approx(
        (183 + np.sqrt(23089)) / 1400, abs=1e-12
    )
    with pytest.raises(ValueError, match="cover"):
        expected_td_update(mdp, X, np.zeros(8), pi, pi[:, ::-1].copy(), mu)


def test_expected_td_update_treats_terminal_states_as_value_zero():
    from dlbook.rl.mdp import MDP

    P = np.zeros((2, 1, 2))
    P[0, 0, 1] = P[1, 0, 1] = 1.0
    mdp = MDP(P=P, R=np.array([[1.0], [0.0]]), gamma=0.9, terminal=np.array([False, True]))
    X = np.array([[1.0], [5.0]])  # the terminal state's feature is not 0: its value must be
    one = np.ones((2, 1))
    update = expected_td_update(mdp, X, np.array([2.0]), one, one, np.array([0.5, 0.5]))
    assert update == pytest.approx([0.5 * (1.0 + 0.9 * 0.0 - 2.0) * 1.0])
