"""Policy gradients on CartPole: returns, GAE, REINFORCE with a baseline, and PPO.

Everything is batched over environments (the second axis of the ``(T, N)`` rollout tensors), in
the spirit of CleanRL's single-file PPO but with the environments themselves on the device, so
that one process collects thousands of steps per tensor operation.

Derived in: Chapter 5, *The policy gradient theorem*, *Baselines*, *Generalised advantage
estimation* and *PPO*.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from dlbook.rl.cartpole import CartPole
from dlbook.train import History, progress

__all__ = [
    "ActorCritic",
    "PPOConfig",
    "discounted_returns",
    "evaluate_policy",
    "gae",
    "ppo_clip_loss",
    "train_ppo",
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


def ppo_clip_loss(
    logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, clip: float = 0.2
) -> torch.Tensor:
    """PPO's clipped surrogate, as a loss to minimise (a scalar).

        r = exp(logp_new - logp_old),   L = -mean(min(r A, clip(r, 1 - eps, 1 + eps) A))

    Derived in: Chapter 5, *PPO's clipped objective*.
    """
    if not (logp_new.shape == logp_old.shape == advantages.shape):
        raise ValueError(
            f"logp_new {tuple(logp_new.shape)}, logp_old {tuple(logp_old.shape)} and advantages "
            f"{tuple(advantages.shape)} must have the same shape"
        )
    if not 0.0 < clip < 1.0:
        raise ValueError(f"clip must be in (0, 1), got {clip}")
    ratio = torch.exp(logp_new - logp_old)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    return -torch.min(unclipped, clipped).mean()


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
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Run ``episodes`` full episodes of ``policy`` (``(N, 4)`` float obs -> ``(N,)`` actions).

    Args:
        env: ``"torch"`` (this module's :class:`CartPole`, float64) or ``"gymnasium"``
            (``gymnasium.make("CartPole-v1")``, one environment per episode, stepped in lockstep).

    Returns:
        ``(episodes,)`` the undiscounted return of each episode (at most 500).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    returns = np.zeros(episodes)
    if env == "torch":
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
    if env == "gymnasium":
        import gymnasium as gym

        envs = [gym.make("CartPole-v1") for _ in range(episodes)]
        obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
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
    raise ValueError(f"env must be 'torch' or 'gymnasium', got {env!r}")


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
    device: torch.device | str = "cpu",
    show_progress: bool = True,
) -> tuple[ActorCritic, History]:
    """REINFORCE on CartPole: each iteration runs ``num_envs`` complete episodes.

    Loss per iteration: ``-mean over steps of log pi(a_t|s_t) (G_t - b(s_t))`` with ``G_t`` the
    discounted reward-to-go and, if ``baseline``, ``b`` a value network fitted to ``G_t``.

    Returns:
        ``(agent, history)``; ``history["return"]`` is the mean episode return per iteration.
    """
    if iterations < 1 or num_envs < 1:
        raise ValueError("iterations and num_envs must be >= 1")
    torch.manual_seed(seed)
    agent = ActorCritic(hidden=hidden).to(device)
    opt = torch.optim.Adam(agent.parameters(), lr=lr)
    env = CartPole(num_envs, device=device, seed=seed)
    history = History()
    bar = progress(range(iterations), desc="REINFORCE") if show_progress else range(iterations)
    for it in bar:
        obs = env.reset()
        alive = torch.ones(num_envs, dtype=torch.bool, device=env.device)
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
        obs_t, act_t = torch.stack(obs_l), torch.stack(act_l)
        rew_t, mask_t = torch.stack(rew_l), torch.stack(mask_l).float()
        G = discounted_returns(rew_t, torch.zeros_like(rew_t), gamma)  # episodes end by masking
        logp = agent.dist(obs_t).log_prob(act_t)
        n = mask_t.sum()
        if baseline:
            v = agent.value(obs_t)
            advantage = (G - v).detach()
            value_loss = (((v - G) ** 2) * mask_t).sum() / n
        else:
            advantage, value_loss = G, torch.zeros((), device=env.device)
        policy_loss = -(logp * advantage * mask_t).sum() / n
        opt.zero_grad()
        (policy_loss + 0.5 * value_loss).backward()
        opt.step()
        mean_return = float(rew_t.sum(0).mean())
        history.log(it, **{"return": mean_return})
        if show_progress:
            bar.set_postfix({"return": f"{mean_return:.0f}"}, refresh=False)
    return agent, history


# ----------------------------------------------------------------------------- PPO


@dataclass
class PPOConfig:
    """PPO's settings (CleanRL's names). One update collects ``num_envs * num_steps`` steps."""

    num_envs: int = 32
    num_steps: int = 128
    total_steps: int = 400_000
    lr: float = 1e-3
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    clip: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    norm_adv: bool = True
    hidden: int = 64

    def __post_init__(self) -> None:
        if min(self.num_envs, self.num_steps, self.num_minibatches, self.update_epochs) < 1:
            raise ValueError("num_envs, num_steps, num_minibatches and update_epochs must be >= 1")
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError(
                f"num_minibatches ({self.num_minibatches}) must divide the batch "
                f"num_envs * num_steps = {self.num_envs * self.num_steps}"
            )
        if not 0.0 < self.clip < 1.0:
            raise ValueError(f"clip must be in (0, 1), got {self.clip}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def train_ppo(
    cfg: PPOConfig | None = None,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    target_return: float | None = None,
    eval_every: int = 5,
    eval_episodes: int = 100,
    time_limit_s: float | None = None,
    show_progress: bool = True,
) -> tuple[ActorCritic, History]:
    """PPO with GAE, the clipped objective, a value loss and minibatches, on :class:`CartPole`.

    Every ``eval_every`` updates the greedy policy plays ``eval_episodes`` episodes (recorded as
    ``"eval"`` with the wall-clock seconds so far as ``"seconds"``); training stops early once that
    mean reaches ``target_return``, or when ``time_limit_s`` has passed.

    Returns:
        ``(agent, history)``: ``history["return"]`` holds the mean return of the episodes that
        ended in each update, ``history["eval"]`` the evaluations.
    """
    cfg = cfg or PPOConfig()
    device = torch.device(device)
    torch.manual_seed(seed)
    env = CartPole(cfg.num_envs, device=device, seed=seed)
    agent = ActorCritic(hidden=cfg.hidden).to(device)
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)
    T, N = cfg.num_steps, cfg.num_envs
    batch = T * N
    mb = batch // cfg.num_minibatches
    updates = max(1, cfg.total_steps // batch)
    obs_buf = torch.zeros(T, N, 4, device=device)
    act_buf = torch.zeros(T, N, dtype=torch.long, device=device)
    logp_buf, rew_buf, val_buf, nextval_buf = (torch.zeros(T, N, device=device) for _ in range(4))
    term_buf, done_buf = (torch.zeros(T, N, dtype=torch.bool, device=device) for _ in range(2))
    history = History()
    obs = env.reset()
    ep_return = torch.zeros(N, device=device)
    start = time.perf_counter()
    bar = progress(range(updates), desc="PPO") if show_progress else range(updates)
    for update in bar:
        if cfg.anneal_lr:
            opt.param_groups[0]["lr"] = cfg.lr * (1.0 - update / updates)
        finished: list[torch.Tensor] = []
        with torch.no_grad():
            for t in range(T):
                dist = agent.dist(obs)
                action = dist.sample()
                obs_buf[t], act_buf[t] = obs, action
                logp_buf[t], val_buf[t] = dist.log_prob(action), agent.value(obs)
                obs, reward, term, trunc = env.step(action)
                done = term | trunc
                rew_buf[t], term_buf[t], done_buf[t] = reward, term, done
                # the value of the state each step reached: the final observation where it ended
                nextval_buf[t] = agent.value(torch.where(done[:, None], env.final_obs, obs))
                ep_return += reward
                if bool(done.any()):
                    finished.append(ep_return[done].clone())
                    ep_return = torch.where(done, torch.zeros_like(ep_return), ep_return)
            adv, ret = gae(
                rew_buf, val_buf, nextval_buf, term_buf, done_buf, cfg.gamma, cfg.gae_lambda
            )
        b_obs, b_act = obs_buf.reshape(batch, 4), act_buf.reshape(batch)
        b_logp, b_adv, b_ret = logp_buf.reshape(batch), adv.reshape(batch), ret.reshape(batch)
        for _ in range(cfg.update_epochs):
            perm = torch.randperm(batch, device=device)
            for k in range(0, batch, mb):
                idx = perm[k : k + mb]
                dist = agent.dist(b_obs[idx])
                a = b_adv[idx]
                if cfg.norm_adv:
                    a = (a - a.mean()) / (a.std() + 1e-8)
                pg_loss = ppo_clip_loss(dist.log_prob(b_act[idx]), b_logp[idx], a, cfg.clip)
                v_loss = 0.5 * ((agent.value(b_obs[idx]) - b_ret[idx]) ** 2).mean()
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * dist.entropy().mean()
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                opt.step()
        steps = (update + 1) * batch
        if finished:
            history.log(steps, **{"return": float(torch.cat(finished).mean())})
        stop = False
        if eval_every and ((update + 1) % eval_every == 0 or update == updates - 1):
            score = float(
                evaluate_policy(
                    lambda o: agent.act(o, greedy=True),
                    eval_episodes,
                    device=device,
                    seed=seed + 10_000 + update,
                ).mean()
            )
            history.log(steps, eval=score, seconds=time.perf_counter() - start)
            stop = target_return is not None and score >= target_return
        if show_progress and finished:
            bar.set_postfix({"return": f"{history.last('return'):.0f}"}, refresh=False)
        if stop or (time_limit_s is not None and time.perf_counter() - start > time_limit_s):
            break
    if show_progress:
        bar.close()
    return agent, history
