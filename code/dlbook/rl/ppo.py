"""PPO on CartPole, in the manner of CleanRL's single-file ``ppo.py``: its settings under its
names (:class:`PPOConfig`), the clipped objective, and the trainer (:func:`train_ppo`), with the
environments on the device.

Derived in: Chapter 5, *Generalised advantage estimation* and *PPO's clipped objective*.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from dlbook.rl.cartpole import CartPole
from dlbook.rl.pg import ActorCritic, evaluate_policy, gae
from dlbook.runtime import resolve_device, rng_scope
from dlbook.train import History, Run, StopTraining, check_progress, train_loop

__all__ = ["PPOConfig", "explained_variance", "ppo_clip_loss", "ppo_diagnostics", "train_ppo"]

# ------------------------------------------------------------------------- the clipped objective


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


def ppo_diagnostics(
    logp_new: torch.Tensor, logp_old: torch.Tensor, clip: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two numbers PPO implementations monitor during an update, for ``(B,)`` log-probabilities.

    Returns ``(clip_fraction, approx_kl)``, two scalars: the fraction of samples whose ratio
    ``r = exp(logp_new - logp_old)`` lies outside ``[1 - clip, 1 + clip]``, and the estimate
    ``mean((r - 1) - log r)`` of ``KL(pi_old || pi_new)`` (unbiased for samples drawn from
    ``pi_old``, and never negative; CleanRL's ``approx_kl``).

    Derived in: Chapter 5, *PPO's clipped objective*.
    """
    if logp_new.shape != logp_old.shape:
        raise ValueError(
            f"logp_new {tuple(logp_new.shape)} and logp_old {tuple(logp_old.shape)} must have "
            "the same shape"
        )
    if not 0.0 < clip < 1.0:
        raise ValueError(f"clip must be in (0, 1), got {clip}")
    log_ratio = logp_new - logp_old
    ratio = log_ratio.exp()
    clip_fraction = ((ratio - 1.0).abs() > clip).to(ratio.dtype).mean()
    return clip_fraction, ((ratio - 1.0) - log_ratio).mean()


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """``1 - Var[target - predicted] / Var[target]`` for ``(B,)`` tensors (NaN if Var[target] = 0).

    1 when the critic predicts its targets exactly, 0 when it does no better than their mean,
    negative when it does worse. PPO reports it for the values ``V(s_t)`` of the rollout against
    the GAE targets ``R_t`` (CleanRL's ``explained_variance``).

    Derived in: Chapter 5, *PPO's clipped objective*.
    """
    if predicted.shape != target.shape or predicted.dim() != 1:
        raise ValueError(
            f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} must be two "
            "1-d tensors of the same shape"
        )
    var = target.var(unbiased=False)
    if var == 0:
        return float("nan")
    return float(1.0 - (target - predicted).var(unbiased=False) / var)


# ----------------------------------------------------------------------------- the trainer


@dataclass
class PPOConfig:
    """PPO's settings, under the names of CleanRL's ``ppo.py``.

    One iteration collects ``num_steps`` steps from each of ``num_envs`` environments
    (``batch_size`` steps) and runs ``update_epochs`` passes over them in ``num_minibatches``
    minibatches. Where the defaults differ from CleanRL's ``ppo.py`` they are ours, tuned for a
    fast CPU run on :class:`CartPole`: ``learning_rate=1e-3`` (CleanRL: 2.5e-4), ``num_envs=32``
    (CleanRL: 4), ``ent_coef=0.0`` (CleanRL: 0.01), no value-loss clipping (CleanRL:
    ``clip_vloss=True``), and ``bootstrap_truncated=True`` (CleanRL's ``ppo.py`` treats a time-limit
    cut-off as a termination, which is ``bootstrap_truncated=False``). There is no ``target_kl``
    (CleanRL's default is ``None`` too).

    Derived in: Chapter 5, *PPO's clipped objective*.
    """

    total_timesteps: int = 400_000
    learning_rate: float = 1e-3
    num_envs: int = 32
    num_steps: int = 128
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 64  # ours: the width of the actor's and the critic's two hidden layers
    # ours: bootstrap V(s') where an episode was truncated (False: treat truncation as termination)
    bootstrap_truncated: bool = True

    def __post_init__(self) -> None:
        if min(self.num_envs, self.num_steps, self.num_minibatches, self.update_epochs) < 1:
            raise ValueError("num_envs, num_steps, num_minibatches and update_epochs must be >= 1")
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"num_minibatches ({self.num_minibatches}) must divide the batch "
                f"num_envs * num_steps = {self.batch_size}"
            )
        if self.total_timesteps < 1:
            raise ValueError(f"total_timesteps must be >= 1, got {self.total_timesteps}")
        if not 0.0 < self.clip_coef < 1.0:
            raise ValueError(f"clip_coef must be in (0, 1), got {self.clip_coef}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")

    @property
    def batch_size(self) -> int:
        """Steps collected per iteration: ``num_envs * num_steps`` (CleanRL's name)."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        """``batch_size // num_minibatches`` (CleanRL's name)."""
        return self.batch_size // self.num_minibatches

    @property
    def num_iterations(self) -> int:
        """Iterations (rollouts and updates): ``total_timesteps // batch_size``, at least 1."""
        return max(1, self.total_timesteps // self.batch_size)


def train_ppo(
    cfg: PPOConfig | None = None,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    target_return: float | None = None,
    eval_every: int = 5,
    eval_episodes: int = 100,
    time_limit_s: float | None = None,
    progress: str = "plot",
) -> Run:
    """PPO with GAE, the clipped objective, a value loss and minibatches, on :class:`CartPole`.

    Every ``eval_every`` iterations (and after the last) the greedy policy plays ``eval_episodes``
    episodes (recorded as ``"eval"``, with the wall-clock seconds so far as ``"seconds"``;
    ``eval_every=0``: never); training stops early once that mean reaches ``target_return``, or
    when ``time_limit_s`` has passed.

    Args:
        seed: seeds the networks, the environments' resets, the actions sampled and the minibatch
            order, in a stream of the call's own (the caller's random generators are left as they
            were); the same seed on the same device gives the same run.
        device: ``None``: :func:`dlbook.device`.
        progress: ``"plot"`` (a progress bar and the returns redrawn live), ``"bar"`` or ``"off"``.

    Returns:
        A :class:`~dlbook.train.Run`: ``model`` the :class:`ActorCritic`; ``history`` is indexed
        by environment steps: ``"return"`` is the mean return of the episodes that ended in each
        iteration, ``"eval"`` and ``"seconds"`` the evaluations; ``"clipfrac"``, ``"approx_kl"``,
        ``"kl"`` and ``"entropy"`` are averages over the iteration's minibatch steps (see
        :func:`ppo_diagnostics`; ``"kl"`` is the exact ``KL(pi_old || pi_new)`` between the two
        categorical policies on the minibatch's states, by ``torch.distributions.kl_divergence``,
        which ``"approx_kl"`` estimates from the actions taken; the entropy of the policy in
        nats), and
        ``"explained_variance"`` that of the rollout's values against their GAE targets (see
        :func:`explained_variance`); ``"cut_offs"`` counts the episodes that the time limit
        ended in the iteration (truncated, not terminated).

    Derived in: Chapter 5, *Generalised advantage estimation* and *PPO's clipped objective*.
    """
    cfg = cfg or PPOConfig()
    if eval_every < 0 or eval_episodes < 1:
        raise ValueError(
            f"eval_every must be >= 0 and eval_episodes >= 1, got {eval_every}, {eval_episodes}"
        )
    check_progress(progress)
    device = resolve_device(device)
    T, N, batch = cfg.num_steps, cfg.num_envs, cfg.batch_size
    iterations = cfg.num_iterations
    with rng_scope(seed, device):
        env = CartPole(N, device=device, seed=seed)
        agent = ActorCritic(env.observation_size, env.num_actions, cfg.hidden).to(device)
        opt = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
        # the rollout's storage: (T, N, ...) tensors, filled anew in every iteration
        obs_buf = torch.zeros(T, N, env.observation_size, device=device)
        act_buf = torch.zeros(T, N, dtype=torch.long, device=device)
        logits_buf = torch.zeros(T, N, env.num_actions, device=device)  # of the rollout's policy
        logp_buf, rew_buf, val_buf, nextval_buf = (
            torch.zeros(T, N, device=device) for _ in range(4)
        )
        term_buf, done_buf = (torch.zeros(T, N, dtype=torch.bool, device=device) for _ in range(2))
        history = History()
        obs = env.reset()
        ep_return = torch.zeros(N, device=device)  # of each environment's running episode
        start = time.perf_counter()

        def iteration(it: int) -> dict[str, float]:
            nonlocal obs, ep_return
            if cfg.anneal_lr:
                opt.param_groups[0]["lr"] = cfg.learning_rate * (1.0 - it / iterations)
            # 1. collect T steps in each of the N environments
            finished: list[torch.Tensor] = []
            cut_offs = torch.zeros((), device=device)  # episodes ended by the time limit alone
            with torch.no_grad():
                for t in range(T):
                    dist = agent.dist(obs)
                    action = dist.sample()
                    obs_buf[t], act_buf[t], logits_buf[t] = obs, action, dist.logits
                    logp_buf[t], val_buf[t] = dist.log_prob(action), agent.value(obs)
                    obs, reward, term, trunc = env.step(action)
                    done = term | trunc
                    rew_buf[t], term_buf[t], done_buf[t] = reward, term, done
                    cut_offs += (trunc & ~term).sum()
                    # the value of the state reached: of the final observation if it ended
                    nextval_buf[t] = agent.value(torch.where(done[:, None], env.final_obs, obs))
                    ep_return += reward
                    if bool(done.any()):
                        finished.append(ep_return[done].clone())
                        ep_return = torch.where(done, torch.zeros_like(ep_return), ep_return)
                # 2. advantages by GAE, value targets; without bootstrapping at a time limit, every
                # episode end counts as terminal (CleanRL's ppo.py)
                stop = term_buf if cfg.bootstrap_truncated else done_buf
                adv, ret = gae(
                    rew_buf, val_buf, nextval_buf, stop, done_buf, cfg.gamma, cfg.gae_lambda
                )
            # 3. update_epochs passes of minibatch steps on the clipped objective
            b_obs = obs_buf.reshape(batch, env.observation_size)
            b_act, b_logp = act_buf.reshape(batch), logp_buf.reshape(batch)
            b_adv, b_ret = adv.reshape(batch), ret.reshape(batch)
            b_logits = logits_buf.reshape(batch, env.num_actions)
            clipped, kls, exact_kls, entropies = [], [], [], []
            for _ in range(cfg.update_epochs):
                perm = torch.randperm(batch, device=device)
                for start_mb in range(0, batch, cfg.minibatch_size):
                    idx = perm[start_mb : start_mb + cfg.minibatch_size]
                    dist = agent.dist(b_obs[idx])
                    a = b_adv[idx]
                    if cfg.norm_adv:
                        a = (a - a.mean()) / (a.std() + 1e-8)
                    logp_new = dist.log_prob(b_act[idx])
                    pg_loss = ppo_clip_loss(logp_new, b_logp[idx], a, cfg.clip_coef)
                    v_loss = 0.5 * ((agent.value(b_obs[idx]) - b_ret[idx]) ** 2).mean()
                    entropy = dist.entropy().mean()
                    loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
                    with torch.no_grad():
                        frac, approx_kl = ppo_diagnostics(logp_new, b_logp[idx], cfg.clip_coef)
                        old = torch.distributions.Categorical(logits=b_logits[idx])
                        clipped.append(frac)
                        kls.append(approx_kl)
                        exact_kls.append(torch.distributions.kl_divergence(old, dist).mean())
                        entropies.append(entropy.detach())
                    opt.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                    opt.step()
            # 4. record, at the environment steps so far; evaluate; stop early if asked
            steps = (it + 1) * batch
            if finished:
                history.log(steps, **{"return": float(torch.cat(finished).mean())})
            history.log(
                steps,
                clipfrac=float(torch.stack(clipped).mean()),
                approx_kl=float(torch.stack(kls).mean()),
                kl=float(torch.stack(exact_kls).mean()),
                entropy=float(torch.stack(entropies).mean()),
                explained_variance=explained_variance(val_buf.reshape(batch), b_ret),
                cut_offs=float(cut_offs),
            )
            if eval_every and ((it + 1) % eval_every == 0 or it == iterations - 1):
                score = evaluate_policy(
                    lambda o: agent.act(o, greedy=True),
                    eval_episodes,
                    seed=seed + 10_000 + it,
                    device=device,
                ).mean()
                history.log(steps, eval=score, seconds=time.perf_counter() - start)
                if target_return is not None and score >= target_return:
                    raise StopTraining
            if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
                raise StopTraining
            return {}  # recorded above, at environment steps rather than iterations

        train_loop(
            iteration,
            iterations,
            history=history,
            desc="PPO",
            progress=progress,
            plot=dict(
                names=["return", "eval"], title="PPO on CartPole", ylabel="mean episode return"
            ),
        )
    return Run(model=agent, history=history)
