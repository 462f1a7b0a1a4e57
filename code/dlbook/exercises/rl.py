"""Checkers for Chapter 5's exercises: a Bellman backup, returns, GAE and PPO's clipped loss.

The Bellman backup is checked on gymnasium's FrozenLake, whose model (``env.unwrapped.P``, lists
of ``(probability, next_state, reward, terminated)``) gymnasium wrote, not us; the reference sums
over those lists one transition at a time. Returns and advantages are checked against their
definitions written as explicit sums (no recursion), PPO's loss against the formula evaluated
case by case. Each checker names the plausible mistakes it recognises; ``EXERCISES`` maps each
exercise's name to its :class:`~dlbook.exercises.checker.Exercise`.

Derived in: Chapter 5, *Exercises*.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlbook.exercises.checker import Case, CheckReport, Exercise, Mistake

__all__ = [
    "BELLMAN_MISTAKES",
    "EXERCISES",
    "GAE_MISTAKES",
    "PPO_MISTAKES",
    "RETURNS_MISTAKES",
    "check_bellman_backup",
    "check_discounted_returns",
    "check_gae",
    "check_ppo_clip_objective",
    "frozenlake_model",
]


# ----------------------------------------------------------------------------- Bellman backup


def frozenlake_model(map_name: str = "4x4", slippery: bool = True) -> tuple:
    """Gymnasium's FrozenLake as arrays: ``P (S, A, S)``, ``R (S, A)`` expected rewards, and the
    raw transition lists ``env.unwrapped.P`` they came from."""
    import gymnasium as gym

    env = gym.make("FrozenLake-v1", map_name=map_name, is_slippery=slippery)
    model = env.unwrapped.P
    S, A = env.observation_space.n, env.action_space.n
    P, R = np.zeros((S, A, S)), np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            for prob, s2, reward, _done in model[s][a]:
                P[s, a, s2] += prob
                R[s, a] += prob * reward
    env.close()
    return P, R, model


def _bellman_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    cases = []
    for map_name, slippery in [("4x4", True), ("8x8", True), ("4x4", False)]:
        P, R, model = frozenlake_model(map_name, slippery)
        V = rng.normal(size=P.shape[0])
        name = f"FrozenLake {map_name}{', slippery' if slippery else ''}"
        cases.append(
            Case(args=(P, R, 0.9, V), name=name, expected=_backup_from_lists(model, V, 0.9))
        )
    P = rng.dirichlet(np.ones(5), size=(5, 3))
    R, V = rng.normal(size=(5, 3)), rng.normal(size=5)
    expected = np.array(
        [
            [R[s, a] + 0.8 * sum(P[s, a, t] * V[t] for t in range(5)) for a in range(3)]
            for s in range(5)
        ]
    )
    cases.append(
        Case(args=(P, R, 0.8, V), name="a random MDP, 5 states, 3 actions", expected=expected)
    )
    return cases


def _backup_from_lists(model: dict, V: np.ndarray, gamma: float) -> np.ndarray:
    """Q(s, a) = sum over gymnasium's listed transitions of p (r + gamma V(s')).

    Gymnasium's FrozenLake keeps terminal states absorbing with reward 0, so no special case.
    """
    S, A = len(model), len(model[0])
    Q = np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            Q[s, a] = sum(p * (r + gamma * V[s2]) for p, s2, r, _ in model[s][a])
    return Q


BELLMAN_MISTAKES = [
    Mistake(
        "forgot the discount",
        lambda P, R, gamma, V: R + P @ V,
        "future values are discounted: Q(s, a) = R(s, a) + gamma * sum_s' P(s, a, s') V(s').",
    ),
    Mistake(
        "took the max over actions (returned V, not Q)",
        lambda P, R, gamma, V: (R + gamma * P @ V).max(axis=1),
        "return the whole (S, A) table of backed-up action values; the max over actions is the "
        "next step (value iteration), not part of the backup.",
    ),
    Mistake(
        "summed over the wrong axis of P (P[s', a, s])",
        lambda P, R, gamma, V: R + gamma * np.einsum("tas,t->sa", P, V),
        "P[s, a, s'] is the probability of s' after (s, a): sum over the last axis, P @ V.",
    ),
    Mistake(
        "forgot the immediate reward",
        lambda P, R, gamma, V: gamma * P @ V,
        "the backup adds the expected immediate reward R(s, a) to the discounted future value.",
    ),
]


BELLMAN_BACKUP = Exercise("bellman_backup", _bellman_cases, None, BELLMAN_MISTAKES)


def check_bellman_backup(fn: Callable[..., np.ndarray]) -> CheckReport:
    """Check ``fn(P (S, A, S), R (S, A), gamma, V (S,)) -> Q (S, A)``.

    Three cases are gymnasium's FrozenLake (4x4 and 8x8, slippery or not), checked against a
    backup summed over gymnasium's own transition lists.
    """
    return BELLMAN_BACKUP.check(fn)


# ----------------------------------------------------------------------------- returns


def _episode_cases(seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for T, p_done, name in [
        (6, 0.0, "one episode, 6 steps"),
        (12, 0.25, "12 steps, episodes end"),
        (1, 0.0, "a single step"),
        (30, 0.1, "30 steps"),
    ]:
        rewards = rng.normal(size=T)
        dones = rng.random(T) < p_done
        dones[-1] = True
        cases.append(Case(args=(rewards, dones, 0.9), name=name))
    return cases


def _returns_direct(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = sum_{k = t}^{end of t's episode} gamma^(k - t) r_k, summed term by term."""
    T = len(rewards)
    G = np.zeros(T)
    for t in range(T):
        k = t
        while True:
            G[t] += gamma ** (k - t) * rewards[k]
            if dones[k] or k == T - 1:
                break
            k += 1
    return G


def _returns_variant(reset: bool = True, discount_first: bool = False, gamma_one: bool = False):
    def wrong(rewards, dones, gamma):
        g = 1.0 if gamma_one else gamma
        G, acc = np.zeros(len(rewards)), 0.0
        for t in reversed(range(len(rewards))):
            if reset and dones[t]:
                acc = 0.0
            acc = g * (rewards[t] + acc) if discount_first else rewards[t] + g * acc
            G[t] = acc
        return G

    return wrong


def _returns_forward(rewards, dones, gamma):
    G, acc = np.zeros(len(rewards)), 0.0
    for t in range(len(rewards)):
        acc = rewards[t] + gamma * acc
        G[t] = acc
        if dones[t]:
            acc = 0.0
    return G


RETURNS_MISTAKES = [
    Mistake(
        "did not stop at the end of an episode",
        _returns_variant(reset=False),
        "rewards after an episode ended belong to the next episode: when done[t], G_t = r_t.",
    ),
    Mistake(
        "discounted the first reward too (gamma (r_t + G_{t+1}))",
        _returns_variant(discount_first=True),
        "G_t = r_t + gamma G_{t+1}: the reward of step t itself is not discounted.",
    ),
    Mistake(
        "forgot the discount",
        _returns_variant(gamma_one=True),
        "each step into the future multiplies by gamma: G_t = r_t + gamma G_{t+1}.",
    ),
    Mistake(
        "summed the past instead of the future",
        _returns_forward,
        "the return from t is what comes after t: run the recursion backwards, from the last step.",
    ),
]


DISCOUNTED_RETURNS = Exercise(
    "discounted_returns", _episode_cases, _returns_direct, RETURNS_MISTAKES
)


def check_discounted_returns(fn: Callable[..., np.ndarray]) -> CheckReport:
    """Check ``fn(rewards (T,), dones (T,) bool, gamma) -> G (T,)``, the reward-to-go."""
    return DISCOUNTED_RETURNS.check(fn)


# ----------------------------------------------------------------------------- GAE


def _gae_cases() -> list[Case]:
    rng = np.random.default_rng(1)
    cases = []
    for case in _episode_cases(1):
        rewards, dones, gamma = case.args
        T = len(rewards)
        values, next_values = rng.normal(size=T), rng.normal(size=T)
        # an episode end is a termination (nothing after it: V = 0) or, with probability 1/2, a
        # truncation (the critic's value of the final state is bootstrapped)
        truncated = dones & (rng.random(T) < 0.5)
        next_values = np.where(dones & ~truncated, 0.0, next_values)
        cases.append(Case(args=(rewards, values, next_values, dones, gamma, 0.8), name=case.name))
    # truncations for certain, and lam = 1: the return to the end of each episode, plus the
    # bootstrapped value where it was cut, minus V(s_t)  (eq. rl-gae-lambda-one)
    T = 10
    dones = np.zeros(T, dtype=bool)
    dones[[3, 6, 9]] = True
    next_values = rng.normal(size=T)
    next_values[6] = 0.0  # the episode of steps 4..6 terminated; 0..3 and 7..9 were truncated
    for lam in (0.8, 1.0):
        cases.append(
            Case(
                args=(rng.normal(size=T), rng.normal(size=T), next_values, dones, 0.9, lam),
                name=f"truncated episodes, lam = {lam}",
            )
        )
    return cases


def _gae_direct(rewards, values, next_values, dones, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l} to the end of t's episode, term by term."""
    delta = rewards + gamma * next_values - values
    return _returns_direct(delta, dones, gamma * lam)


def _gae_variant(use_lam=True, reset=True, td_only=False, zero_at_ends=False):
    def wrong(rewards, values, next_values, dones, gamma, lam):
        if zero_at_ends:
            next_values = np.where(dones, 0.0, next_values)
        delta = rewards + gamma * next_values - values
        if td_only:
            return delta
        factor = gamma * lam if use_lam else gamma
        A, acc = np.zeros(len(rewards)), 0.0
        for t in reversed(range(len(rewards))):
            if reset and dones[t]:
                acc = 0.0
            acc = delta[t] + factor * acc
            A[t] = acc
        return A

    return wrong


GAE_MISTAKES = [
    Mistake(
        "decayed by gamma alone, without lambda",
        _gae_variant(use_lam=False),
        "GAE weights the TD error l steps ahead by (gamma * lam)^l: A_t = delta_t + gamma lam "
        "A_{t+1}.",
    ),
    Mistake(
        "did not stop at the end of an episode",
        _gae_variant(reset=False),
        "an advantage only sums TD errors of its own episode: when done[t], A_t = delta_t.",
    ),
    Mistake(
        "returned the one-step TD errors",
        _gae_variant(td_only=True),
        "that is GAE with lam = 0; accumulate the later TD errors too, backwards from the end.",
    ),
    Mistake(
        "set the next value to 0 at every episode end, truncations too",
        _gae_variant(zero_at_ends=True),
        "next_values already holds 0 where an episode terminated; where it was truncated (a time "
        "limit) it holds the critic's value of the final state, which must be bootstrapped.",
    ),
    Mistake(
        "returns minus values (Monte Carlo, lam = 1 with no critic in between)",
        lambda r, v, nv, d, g, lam: _returns_direct(r, d, g) - v,
        "GAE uses the critic at every step through the TD errors delta_t = r_t + gamma V(s_{t+1}) "
        "- V(s_t), then sums them with weights (gamma lam)^l.",
    ),
]


GAE = Exercise("gae", _gae_cases, _gae_direct, GAE_MISTAKES)


def check_gae(fn: Callable[..., np.ndarray]) -> CheckReport:
    """Check ``fn(rewards, values, next_values, dones, gamma, lam) -> advantages``, all ``(T,)``.

    ``next_values[t]`` is V(s'_{t+1}), already 0 where the episode terminated at t, the critic's
    value of the final state where it was truncated.
    """
    return GAE.check(fn)


# ----------------------------------------------------------------------------- PPO


def _ppo_cases() -> list[Case]:
    rng = np.random.default_rng(2)
    cases = []
    for n, spread, name in [
        (8, 0.05, "ratios near 1 (nothing clipped)"),
        (16, 0.6, "ratios far from 1 (some clipped)"),
        (64, 0.3, "64 samples"),
    ]:
        logp_old = np.log(rng.uniform(0.1, 0.9, size=n))
        logp_new = logp_old + rng.normal(scale=spread, size=n)
        adv = rng.normal(size=n)
        cases.append(Case(args=(logp_new, logp_old, adv, 0.2), name=name))
    return cases


def _ppo_direct(logp_new, logp_old, adv, eps):
    total = 0.0
    for lp, lo, a in zip(logp_new, logp_old, adv):
        ratio = float(np.exp(lp - lo))
        clipped = min(max(ratio, 1 - eps), 1 + eps)
        total += min(ratio * a, clipped * a)
    return total / len(adv)


def _ppo_variant(kind: str):
    def wrong(logp_new, logp_old, adv, eps):
        ratio = np.exp(logp_new - logp_old)
        clipped = np.clip(ratio, 1 - eps, 1 + eps)
        if kind == "max":
            return float(np.maximum(ratio * adv, clipped * adv).mean())
        if kind == "no-exp":
            r = logp_new - logp_old
            return float(np.minimum(r * adv, np.clip(r, 1 - eps, 1 + eps) * adv).mean())
        if kind == "clip-product":
            return float(np.minimum(ratio * adv, np.clip(ratio * adv, 1 - eps, 1 + eps)).mean())
        if kind == "loss":
            return float(-np.minimum(ratio * adv, clipped * adv).mean())
        raise AssertionError(kind)

    return wrong


PPO_MISTAKES = [
    Mistake(
        "max instead of min",
        _ppo_variant("max"),
        "the clipped objective is pessimistic: take the minimum of the unclipped and the clipped "
        "terms, so the clip can only take away incentive, never add it.",
    ),
    Mistake(
        "used the difference of log-probabilities as the ratio",
        _ppo_variant("no-exp"),
        "the ratio is pi_new / pi_old = exp(logp_new - logp_old).",
    ),
    Mistake(
        "clipped the product ratio * A instead of the ratio",
        _ppo_variant("clip-product"),
        "clip the ratio to [1 - eps, 1 + eps], then multiply by the advantage.",
    ),
    Mistake(
        "returned the loss (the negative objective)",
        _ppo_variant("loss"),
        "this exercise asks for the objective to maximise, mean(min(r A, clip(r) A)), not its "
        "negative.",
    ),
]


PPO_CLIP_OBJECTIVE = Exercise("ppo_clip_objective", _ppo_cases, _ppo_direct, PPO_MISTAKES)


def check_ppo_clip_objective(fn: Callable[..., float]) -> CheckReport:
    """Check ``fn(logp_new (n,), logp_old (n,), adv (n,), eps) -> float``, PPO's objective."""
    return PPO_CLIP_OBJECTIVE.check(fn)


EXERCISES = {e.name: e for e in (BELLMAN_BACKUP, DISCOUNTED_RETURNS, GAE, PPO_CLIP_OBJECTIVE)}
