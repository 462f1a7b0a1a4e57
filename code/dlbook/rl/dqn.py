"""Value-based deep RL: DQN on CartPole (replay buffer, target network, epsilon-greedy, Huber loss),
and Baird's counterexample, where off-policy bootstrapping with linear features diverges.

DQN (Mnih et al., 2015) is Q-learning's update with a neural network for ``Q``: transitions go into
a :class:`ReplayBuffer`, minibatches drawn from it uniformly are regressed onto the TD target of
:func:`td_target`, computed with a slowly updated copy of the network (:func:`update_target`). The
settings of :class:`DQNConfig` carry the names of CleanRL's ``dqn.py``.

The TD target bootstraps on time-limit truncation and not on termination: the buffer stores the
*final* observation of an episode that ended and a flag ``terminated`` (not ``done``), so that the
target of a step cut off at 500 is ``r + gamma max_a' Q(s', a')`` and that of a fall is ``r``.

Derived in: Chapter 5, *Deep Q-networks and the deadly triad*.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dlbook.rl.cartpole import CartPole
from dlbook.rl.mdp import MDP
from dlbook.rl.pg import evaluate_policy
from dlbook.runtime import resolve_device, rng_scope
from dlbook.train import History, Run, StopTraining, check_progress, train_loop

__all__ = [
    "DQNConfig",
    "QNetwork",
    "ReplayBuffer",
    "baird_counterexample",
    "expected_td_update",
    "td_target",
    "train_dqn",
    "update_target",
]

# ----------------------------------------------------------------------------- the pieces


class ReplayBuffer:
    """A circular buffer of the last ``capacity`` transitions ``(s, a, r, s', terminated)``.

    Args:
        capacity: how many transitions it keeps; the oldest is overwritten first.
        obs_size: the length of an observation.
        device: where the tensors live.

    ``s'`` is the state the step reached (the final observation where an episode ended, not the
    first one of the next episode), and ``terminated`` is true only where the episode *terminated*
    (a time-limit truncation is stored as not terminated).
    """

    def __init__(
        self, capacity: int, obs_size: int, device: torch.device | str | None = "cpu"
    ) -> None:
        if capacity < 1 or obs_size < 1:
            raise ValueError(f"capacity and obs_size must be >= 1, got {capacity}, {obs_size}")
        device = resolve_device(device)
        self.capacity, self.device = capacity, device
        self.obs = torch.zeros(capacity, obs_size, device=device)
        self.next_obs = torch.zeros(capacity, obs_size, device=device)
        self.action = torch.zeros(capacity, dtype=torch.long, device=device)
        self.reward = torch.zeros(capacity, device=device)
        self.terminated = torch.zeros(capacity, dtype=torch.bool, device=device)
        self.pos, self.size = 0, 0  # next slot to write; transitions stored

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
    ) -> None:
        """Store ``n`` transitions: ``(n, obs)``, ``(n,)``, ``(n,)``, ``(n, obs)``, ``(n,)``."""
        n = obs.shape[0]
        shapes = (obs.shape, action.shape, reward.shape, next_obs.shape, terminated.shape)
        expected = (self.obs.shape[1:], (), (), self.obs.shape[1:], ())
        if any(tuple(s[1:]) != tuple(e) or s[0] != n for s, e in zip(shapes, expected)):
            raise ValueError(
                f"expected (n, {self.obs.shape[1]}), (n,), (n,), (n, {self.obs.shape[1]}), (n,); "
                f"got {[tuple(s) for s in shapes]}"
            )
        if n > self.capacity:
            raise ValueError(f"cannot add {n} transitions to a buffer of {self.capacity}")
        idx = (self.pos + torch.arange(n, device=self.device)) % self.capacity
        self.obs[idx], self.next_obs[idx] = obs.to(self.obs), next_obs.to(self.obs)
        self.action[idx], self.reward[idx] = action.long(), reward.to(self.reward)
        self.terminated[idx] = terminated.bool()
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``batch_size`` transitions drawn uniformly, with replacement, from those stored.

        Returns ``(obs, action, reward, next_obs, terminated)`` with a leading ``batch_size``.
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        idx = torch.randint(0, self.size, (batch_size,), generator=generator, device=self.device)
        return (
            self.obs[idx],
            self.action[idx],
            self.reward[idx],
            self.next_obs[idx],
            self.terminated[idx],
        )


def td_target(
    reward: torch.Tensor, next_q: torch.Tensor, terminated: torch.Tensor, gamma: float
) -> torch.Tensor:
    """DQN's target ``r + gamma (1 - terminated) max_a' Q_target(s', a')``.

    Args:
        reward: ``(B,)``.
        next_q: ``(B, A)`` the target network's action values at ``s'``.
        terminated: ``(B,)`` bool: the episode terminated at ``s'`` (its value is 0). A truncated
            episode is *not* terminated: its ``s'`` has a value, and the target bootstraps on it.
        gamma: the discount, in ``[0, 1]``.

    Returns:
        ``(B,)`` targets (no gradient flows through them).

    Derived in: Chapter 5, *Deep Q-networks and the deadly triad*.
    """
    if next_q.dim() != 2 or reward.shape != (next_q.shape[0],) or terminated.shape != reward.shape:
        raise ValueError(
            f"expected reward (B,), next_q (B, A), terminated (B,); got {tuple(reward.shape)}, "
            f"{tuple(next_q.shape)}, {tuple(terminated.shape)}"
        )
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    bootstrap = next_q.detach().max(dim=1).values
    return reward + gamma * (~terminated.bool()).to(bootstrap.dtype) * bootstrap


@torch.no_grad()
def update_target(target: nn.Module, online: nn.Module, tau: float = 1.0) -> None:
    """``theta_target <- tau theta_online + (1 - tau) theta_target``; ``tau = 1`` copies (DQN's
    periodic hard update), a small ``tau`` is a Polyak average."""
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    for p_t, p in zip(target.parameters(), online.parameters(), strict=True):
        if p_t.shape != p.shape:
            raise ValueError(f"target and online networks differ: {p_t.shape} vs {p.shape}")
        p_t.mul_(1.0 - tau).add_(p, alpha=tau)


class QNetwork(nn.Module):
    """``(N, obs)`` -> ``(N, A)`` action values: CleanRL's MLP (120 and 84 ReLU units)."""

    def __init__(self, obs_size: int = 4, n_actions: int = 2, hidden: tuple[int, int] = (120, 84)):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_size, hidden[0]),
            nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Linear(hidden[1], n_actions),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """``(N, obs)`` -> ``(N,)`` greedy actions ``argmax_a Q(s, a)``."""
        return self.net(obs).argmax(-1)


# ----------------------------------------------------------------------------- the trainer


@dataclass
class DQNConfig:
    """DQN's settings, under the names of CleanRL's ``dqn.py``.

    Each iteration steps ``num_envs`` environments once (``num_envs`` environment steps); after
    ``learning_starts`` steps, every ``train_frequency`` iterations take one Adam step on a
    minibatch of ``batch_size`` transitions from the last ``buffer_size``; the target network is
    updated every ``target_network_frequency`` environment steps. Epsilon falls linearly from
    ``start_e`` to ``end_e`` over the first ``exploration_fraction`` of ``total_timesteps``.
    ``huber=True`` is Mnih et al.'s loss (error clipping); CleanRL's is the squared error.
    The defaults are ours, tuned for :class:`CartPole` on a small budget (CleanRL's: 500,000
    steps, 1 environment, ``learning_rate=2.5e-4``, ``buffer_size=10_000``,
    ``learning_starts=10_000``, ``train_frequency=10``, ``target_network_frequency=500``,
    ``exploration_fraction=0.5``, squared error).

    Derived in: Chapter 5, *Deep Q-networks and the deadly triad*.
    """

    total_timesteps: int = 100_000
    learning_rate: float = 1e-3
    num_envs: int = 8
    buffer_size: int = 50_000
    gamma: float = 0.99
    tau: float = 1.0
    target_network_frequency: int = 500
    batch_size: int = 128
    start_e: float = 1.0
    end_e: float = 0.05
    exploration_fraction: float = 0.2
    learning_starts: int = 1_000
    train_frequency: int = 1
    huber: bool = True
    max_grad_norm: float = 10.0

    def __post_init__(self) -> None:
        ints = (self.total_timesteps, self.num_envs, self.buffer_size, self.batch_size)
        if min((*ints, self.target_network_frequency, self.train_frequency)) < 1:
            raise ValueError(
                "total_timesteps, num_envs, buffer_size, batch_size, target_network_frequency "
                "and train_frequency must be >= 1"
            )
        if self.buffer_size < self.num_envs:
            raise ValueError(f"buffer_size must be >= num_envs, got {self.buffer_size}")
        if not 0.0 <= self.end_e <= self.start_e <= 1.0:
            raise ValueError(f"need 0 <= end_e <= start_e <= 1, got {self.end_e}, {self.start_e}")
        if not 0.0 < self.exploration_fraction <= 1.0:
            raise ValueError(
                f"exploration_fraction must be in (0, 1], got {self.exploration_fraction}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")

    def epsilon(self, step: int) -> float:
        """Epsilon after ``step`` environment steps (CleanRL's ``linear_schedule``)."""
        duration = self.exploration_fraction * self.total_timesteps
        slope = (self.end_e - self.start_e) / duration
        return max(slope * step + self.start_e, self.end_e)


def train_dqn(
    cfg: DQNConfig | None = None,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    target_return: float | None = None,
    eval_every: int = 5_000,
    eval_episodes: int = 20,
    progress: str = "plot",
) -> Run:
    """DQN on :class:`CartPole`: epsilon-greedy actions, a replay buffer, a target network.

    Every ``eval_every`` environment steps (and after the last) the greedy policy plays
    ``eval_episodes`` episodes, recorded as ``"eval"`` (with wall-clock ``"seconds"``);
    training stops early once that mean reaches ``target_return``.

    Args:
        seed: seeds the network, the environments, exploration and the minibatches, in a stream of
            the call's own; the same seed on the same device gives the same run.
        device: ``None``: :func:`dlbook.device`.
        progress: ``"plot"``, ``"bar"`` or ``"off"``.

    Returns:
        A :class:`~dlbook.train.Run`: ``model`` the online :class:`QNetwork`; ``history`` indexed
        by environment steps: ``"return"`` the mean return of the training episodes that ended in
        each block of ``eval_every`` steps, ``"eval"``, ``"seconds"``, ``"loss"``.

    Derived in: Chapter 5, *Deep Q-networks and the deadly triad*.
    """
    cfg = cfg or DQNConfig()
    if eval_every < 0 or eval_episodes < 1:
        raise ValueError(
            f"eval_every must be >= 0 and eval_episodes >= 1, got {eval_every}, {eval_episodes}"
        )
    check_progress(progress)
    device = resolve_device(device)
    N = cfg.num_envs
    iterations = max(1, cfg.total_timesteps // N)
    with rng_scope(seed, device):
        env = CartPole(N, device=device, seed=seed)
        q = QNetwork(env.observation_size, env.num_actions).to(device)
        target = QNetwork(env.observation_size, env.num_actions).to(device)
        target.load_state_dict(q.state_dict())
        opt = torch.optim.Adam(q.parameters(), lr=cfg.learning_rate)
        buffer = ReplayBuffer(cfg.buffer_size, env.observation_size, device)
        history = History()
        obs = env.reset()
        ep_return = torch.zeros(N, device=device)
        finished: list[torch.Tensor] = []
        losses: list[float] = []
        start = time.perf_counter()
        block = max(1, (eval_every or 5_000) // N)  # iterations per logged block

        def iteration(it: int) -> dict[str, float]:
            nonlocal obs, ep_return
            steps = it * N  # environment steps before this iteration
            # 1. act epsilon-greedily and store the transitions
            explore = torch.rand(N, device=device) < cfg.epsilon(steps)
            random_action = torch.randint(0, env.num_actions, (N,), device=device)
            action = torch.where(explore, random_action, q.act(obs))
            next_obs, reward, term, trunc = env.step(action)
            done = term | trunc
            reached = torch.where(done[:, None], env.final_obs, next_obs)
            buffer.add(obs, action, reward, reached, term)  # term, not done: see td_target
            ep_return += reward
            if bool(done.any()):
                finished.append(ep_return[done].clone())
                ep_return = torch.where(done, torch.zeros_like(ep_return), ep_return)
            obs = next_obs
            steps += N
            # 2. a gradient step on a minibatch from the buffer
            if steps > cfg.learning_starts and it % cfg.train_frequency == 0:
                s, a, r, s2, t = buffer.sample(cfg.batch_size)
                with torch.no_grad():
                    y = td_target(r, target(s2), t, cfg.gamma)
                pred = q(s).gather(1, a[:, None]).squeeze(1)
                loss = F.smooth_l1_loss(pred, y) if cfg.huber else F.mse_loss(pred, y)
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(q.parameters(), cfg.max_grad_norm)
                opt.step()
                losses.append(loss.item())
            # 3. the target network, every target_network_frequency environment steps
            if steps // cfg.target_network_frequency > (steps - N) // cfg.target_network_frequency:
                update_target(target, q, cfg.tau)
            # 4. record and evaluate
            last = it == iterations - 1
            if (it + 1) % block == 0 or last:
                if finished:
                    history.log(steps, **{"return": float(torch.cat(finished).mean())})
                    finished.clear()
                if losses:
                    history.log(steps, loss=float(np.mean(losses)))
                    losses.clear()
            if eval_every and (steps // eval_every > (steps - N) // eval_every or last):
                score = evaluate_policy(
                    q.act, eval_episodes, seed=seed + 10_000 + it, device=device
                ).mean()
                history.log(steps, eval=score, seconds=time.perf_counter() - start)
                if target_return is not None and score >= target_return:
                    raise StopTraining
            return {}

        train_loop(
            iteration,
            iterations,
            history=history,
            desc="DQN",
            progress=progress,
            plot=dict(
                names=["return", "eval"], title="DQN on CartPole", ylabel="mean episode return"
            ),
        )
    return Run(model=q, history=history)


# ----------------------------------------------------------------------------- Baird


def baird_counterexample(gamma: float = 0.99) -> tuple[MDP, np.ndarray, np.ndarray, np.ndarray]:
    """Baird's (1995) star counterexample, in Sutton and Barto (2018), Section 11.2 (Figure 11.1).

    Their Figure 11.2 shows semi-gradient TD(0) and DP diverging on it. (Their Example 11.1 is
    another counterexample, Tsitsiklis and Van Roy's.)

    Seven states, two actions: *dashed* (0) moves to one of the six upper states uniformly, *solid*
    (1) to the seventh state; every reward is 0, so the true values are all 0. State ``i < 6``
    has the value ``2 w_i + w_7``, state 6 the value ``w_6 + 2 w_7`` (0-based indices; the book's
    ``w_1 .. w_8``).

    Returns:
        ``(mdp, X, behaviour, target)``: the :class:`~dlbook.rl.MDP`, ``X`` the ``(7, 8)``
        features, and the ``(7, 2)`` behaviour policy (dashed 6/7, solid 1/7) and target policy
        (solid always).

    Derived in: Chapter 5, *Deep Q-networks and the deadly triad*.
    """
    S = 7
    P = np.zeros((S, 2, S))
    P[:, 0, :6] = 1.0 / 6.0
    P[:, 1, 6] = 1.0
    mdp = MDP(P=P, R=np.zeros((S, 2)), gamma=gamma)
    X = np.zeros((S, 8))
    for i in range(6):
        X[i, i], X[i, 7] = 2.0, 1.0
    X[6, 6], X[6, 7] = 1.0, 2.0
    behaviour = np.tile([6.0 / 7.0, 1.0 / 7.0], (S, 1))
    target = np.tile([0.0, 1.0], (S, 1))
    return mdp, X, behaviour, target


def expected_td_update(
    mdp: MDP,
    X: np.ndarray,
    w: np.ndarray,
    target: np.ndarray,
    behaviour: np.ndarray,
    state_dist: np.ndarray,
) -> np.ndarray:
    """The expected off-policy semi-gradient TD(0) update direction for linear values ``X w``.

        E[rho delta x(s)] = sum_s mu(s) sum_a b(a|s) rho(s, a) sum_s' P(s'|s,a)
                            [r(s, a, s') + gamma x(s')^T w - x(s)^T w] x(s),

    with ``rho = pi(a|s) / b(a|s)`` the importance ratio and ``mu`` the distribution of the states
    updated. Summed state by state, action by action, as a sampler would see it (the notebook
    checks it against the matrix form ``X^T D (r_pi + gamma P_pi X w - X w)``). ``w <- w + alpha *
    this`` is the expected TD(0) step, and Sutton and Barto's semi-gradient DP step when
    ``mu`` is uniform. Terminal states are not updated, and their value as a next state is 0.

    Args:
        X: ``(S, d)`` features; ``w``: ``(d,)``; ``target``, ``behaviour``: ``(S, A)`` policies
            (``behaviour > 0`` wherever ``target > 0``); ``state_dist``: ``(S,)``.

    Returns:
        ``(d,)``.

    Derived in: Chapter 5, *Deep Q-networks and the deadly triad*.
    """
    S, A = mdp.n_states, mdp.n_actions
    X, w = np.asarray(X, dtype=np.float64), np.asarray(w, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != S or w.shape != (X.shape[1],):
        raise ValueError(f"expected X (S={S}, d) and w (d,), got {X.shape} and {w.shape}")
    if target.shape != (S, A) or behaviour.shape != (S, A) or state_dist.shape != (S,):
        raise ValueError(f"policies must be (S, A) = {(S, A)} and state_dist ({S},)")
    if ((target > 0) & (behaviour <= 0)).any():
        raise ValueError("the behaviour policy must cover the target policy (b > 0 where pi > 0)")
    v = X @ w
    v_next = np.where(mdp.terminal, 0.0, v)  # a terminal state's value is 0
    update = np.zeros_like(w)
    for s in np.flatnonzero(~mdp.terminal):
        for a in range(A):
            if behaviour[s, a] == 0:
                continue
            rho = target[s, a] / behaviour[s, a]
            delta = mdp.R_next[s, a] + mdp.gamma * v_next - v[s]  # (S,) one per next state
            update += state_dist[s] * behaviour[s, a] * rho * (mdp.P[s, a] @ delta) * X[s]
    return update
