"""Policy gradients on CartPole: returns, GAE, the actor-critic network, evaluation, REINFORCE.

Everything is batched over environments (the second axis of the ``(T, N)`` rollout tensors), with
the environments themselves on the device, so that one process collects thousands of steps per
tensor operation. PPO, built from these pieces, is :mod:`dlbook.rl.ppo`.

Derived in: Chapter 5, *The policy gradient theorem*, *Baselines* and *Generalised advantage
estimation*.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from dlbook.rl.cartpole import CartPole
from dlbook.runtime import resolve_device, rng_scope
from dlbook.train import Run, check_progress, train_loop

__all__ = [
    "ActorCritic",
    "discounted_returns",
    "evaluate_policy",
    "gae",
    "train_reinforce",
]


def _check_tn(name: str, x: torch.Tensor, shape: tuple[int, ...] | None = None) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (T, N), got {tuple(x.shape)}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")


def discounted_returns(
    rewards: torch.Tensor, dones: torch.Tensor, gamma: float, last_value: torch.Tensor | None = None
) -> torch.Tensor:
    """Reward-to-go ``G_t = r_t + gamma (1 - done_t) G_{t+1}`` for ``(T, N)`` rollouts.

    ``dones[t]`` marks that the episode ended at step ``t`` (so nothing after it counts towards
    ``G_t``). ``last_value`` (``(N,)``) bootstraps the return of episodes still running at the end.
    """
    _check_tn("rewards", rewards)
    _check_tn("dones", dones, rewards.shape)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    T, N = rewards.shape
    G = torch.zeros_like(rewards)
    acc = torch.zeros(N, dtype=rewards.dtype, device=rewards.device)
    if last_value is not None:
        acc = last_value.to(rewards.dtype)
    notdone = 1.0 - dones.to(rewards.dtype)
    for t in reversed(range(T)):
        acc = rewards[t] + gamma * notdone[t] * acc
        G[t] = acc
    return G


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation for ``(T, N)`` rollouts.

        delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma lam (1 - done_t) A_{t+1}

    ``next_values[t]`` is the value of the state reached by step ``t`` (of the *final* observation
    where an episode ended, so a truncated episode is bootstrapped, a terminated one is not);
    ``dones = terminated | truncated`` stops the recursion at episode ends.

    Returns:
        ``(advantages, returns)``, both ``(T, N)``; ``returns = advantages + values`` are the
        value targets.

    Derived in: Chapter 5, *Generalised advantage estimation*.
    """
    for name, x in (
        ("values", values),
        ("next_values", next_values),
        ("terminated", terminated),
        ("dones", dones),
    ):
        _check_tn(name, x, rewards.shape)
    if not 0.0 <= gamma <= 1.0 or not 0.0 <= lam <= 1.0:
        raise ValueError(f"gamma and lam must be in [0, 1], got {gamma}, {lam}")
    f = rewards.dtype
    delta = rewards + gamma * (1.0 - terminated.to(f)) * next_values - values
    adv = torch.zeros_like(rewards)
    acc = torch.zeros_like(rewards[0])
    notdone = 1.0 - dones.to(f)
    for t in reversed(range(rewards.shape[0])):
        acc = delta[t] + gamma * lam * notdone[t] * acc
        adv[t] = acc
    return adv, adv + values


# ----------------------------------------------------------------------------- the agent


def _layer(n_in: int, n_out: int, std: float) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """A policy network (logits over actions) and a value network, each two tanh layers.

    Orthogonal initialisation as in CleanRL: hidden layers with gain sqrt(2), the policy's output
    with 0.01 (a near-uniform first policy), the value's output with 1.
    """

    def __init__(self, obs_size: int = 4, n_actions: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.actor = nn.Sequential(
            _layer(obs_size, hidden, 2**0.5),
            nn.Tanh(),
            _layer(hidden, hidden, 2**0.5),
            nn.Tanh(),
            _layer(hidden, n_actions, 0.01),
        )
        self.critic = nn.Sequential(
            _layer(obs_size, hidden, 2**0.5),
            nn.Tanh(),
            _layer(hidden, hidden, 2**0.5),
            nn.Tanh(),
            _layer(hidden, 1, 1.0),
        )

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """``(N, obs)`` -> ``(N,)``."""
        return self.critic(obs).squeeze(-1)

    def dist(self, obs: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=self.actor(obs))

    @torch.no_grad()
    def act(self, obs: torch.Tensor, greedy: bool = False) -> torch.Tensor:
        """``(N, obs)`` -> ``(N,)`` actions: sampled, or the most probable if ``greedy``."""
        logits = self.actor(obs)
        if greedy:
            return logits.argmax(-1)
        return torch.distributions.Categorical(logits=logits).sample()


# ----------------------------------------------------------------------------- evaluation


def evaluate_policy(
    policy: Callable[[torch.Tensor], torch.Tensor],
    episodes: int = 100,
    *,
    env: str = "torch",
    seed: int = 10_000,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Run ``episodes`` full episodes of ``policy`` (``(N, 4)`` float obs -> ``(N,)`` actions).

    Args:
        env: ``"torch"`` (this module's :class:`CartPole`, float64, on ``device``) or
            ``"gymnasium"`` (``gymnasium.make("CartPole-v1")``, one environment per episode,
            stepped in lockstep; the observations go to ``device`` for the policy).
        seed: seeds the episodes' initial states and anything ``policy`` samples; the caller's
            random generators are left as they were. The default, 10,000, keeps an evaluation
            away from the starting states of training environments seeded 0, 1, 2, ...
        device: ``None``: :func:`dlbook.device`.

    Returns:
        ``(episodes,)`` the undiscounted return of each episode (at most 500).

    Derived in: Chapter 5, *CartPole*.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if env not in ("torch", "gymnasium"):
        raise ValueError(f"env must be 'torch' or 'gymnasium', got {env!r}")
    device = resolve_device(device)
    with rng_scope(seed, device):
        if env == "torch":
            return _play_torch(policy, episodes, seed, device)
        return _play_gymnasium(policy, episodes, seed, device)


def _play_torch(
    policy: Callable[[torch.Tensor], torch.Tensor], episodes: int, seed: int, device: torch.device
) -> np.ndarray:
    cp = CartPole(episodes, device=device, dtype=torch.float64, seed=seed)
    obs = cp.reset()
    alive = torch.ones(episodes, dtype=torch.bool, device=cp.device)
    total = torch.zeros(episodes, dtype=torch.float64, device=cp.device)
    while bool(alive.any()):
        action = policy(obs.float())
        obs, reward, term, trunc = cp.step(action, autoreset=False)
        total += reward * alive
        alive &= ~(term | trunc)
    return total.cpu().numpy()


def _play_gymnasium(
    policy: Callable[[torch.Tensor], torch.Tensor], episodes: int, seed: int, device: torch.device
) -> np.ndarray:
    import gymnasium as gym

    envs = [gym.make("CartPole-v1") for _ in range(episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    returns = np.zeros(episodes)
    alive = np.ones(episodes, dtype=bool)
    while alive.any():
        actions = policy(torch.as_tensor(obs, device=device)).cpu().numpy()
        for i in np.flatnonzero(alive):
            o, r, term, trunc, _ = envs[i].step(int(actions[i]))
            obs[i] = o
            returns[i] += r
            alive[i] = not (term or trunc)
    for e in envs:
        e.close()
    return returns


# ----------------------------------------------------------------------------- REINFORCE


def train_reinforce(
    iterations: int = 60,
    *,
    num_envs: int = 32,
    lr: float = 1e-2,
    gamma: float = 0.99,
    baseline: bool = True,
    hidden: int = 32,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: str = "plot",
) -> Run:
    """REINFORCE on CartPole: each iteration runs ``num_envs`` complete episodes.

    Loss per iteration: ``-mean over steps of log pi(a_t|s_t) (G_t - b(s_t))`` with ``G_t`` the
    discounted reward-to-go and, if ``baseline``, ``b`` a value network fitted to ``G_t``.

    Args:
        seed: seeds the network, the episodes and the actions sampled, in a stream of the call's
            own (the caller's random generators are left as they were).
        device: ``None``: :func:`dlbook.device`.
        progress: ``"plot"`` (a progress bar and the return redrawn live), ``"bar"`` or ``"off"``.

    Returns:
        A :class:`~dlbook.train.Run`: ``model`` the :class:`ActorCritic`; in ``history``,
        ``"return"`` is the mean episode return of each iteration ``0 .. iterations - 1``.

    Derived in: Chapter 5, *REINFORCE* and *Baselines*.
    """
    if iterations < 1 or num_envs < 1:
        raise ValueError(f"iterations and num_envs must be >= 1, got {iterations}, {num_envs}")
    check_progress(progress)
    device = resolve_device(device)
    with rng_scope(seed, device):
        env = CartPole(num_envs, device=device, seed=seed)
        agent = ActorCritic(env.observation_size, env.num_actions, hidden).to(device)
        opt = torch.optim.Adam(agent.parameters(), lr=lr)

        def iteration(it: int) -> dict[str, float]:
            # play num_envs complete episodes; finished ones are masked out until all have ended
            obs = env.reset()
            alive = torch.ones(num_envs, dtype=torch.bool, device=device)
            obs_l, act_l, rew_l, mask_l = [], [], [], []
            while bool(alive.any()):
                with torch.no_grad():
                    action = agent.dist(obs).sample()
                next_obs, reward, term, trunc = env.step(action, autoreset=False)
                obs_l.append(obs)
                act_l.append(action)
                rew_l.append(reward * alive)
                mask_l.append(alive.clone())
                alive &= ~(term | trunc)
                obs = next_obs
            obs_t, act_t = torch.stack(obs_l), torch.stack(act_l)  # (T, N, obs), (T, N)
            rew_t, mask_t = torch.stack(rew_l), torch.stack(mask_l).float()  # (T, N)
            G = discounted_returns(rew_t, torch.zeros_like(rew_t), gamma)  # ends: by masking
            logp = agent.dist(obs_t).log_prob(act_t)
            n = mask_t.sum()
            if baseline:
                v = agent.value(obs_t)
                advantage = (G - v).detach()
                value_loss = (((v - G) ** 2) * mask_t).sum() / n
            else:
                advantage, value_loss = G, torch.zeros((), device=device)
            policy_loss = -(logp * advantage * mask_t).sum() / n
            opt.zero_grad()
            (policy_loss + 0.5 * value_loss).backward()
            opt.step()
            return {"return": float(rew_t.sum(0).mean())}

        history = train_loop(
            iteration,
            iterations,
            desc="REINFORCE",
            progress=progress,
            plot=dict(title="REINFORCE on CartPole", ylabel="mean episode return"),
        )
    return Run(model=agent, history=history)
