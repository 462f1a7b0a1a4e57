"""Finite Markov decision processes as arrays, and the dynamic programming that solves them.

An MDP with ``S`` states and ``A`` actions is two arrays and a number:

    P[s, a, s']  the probability of moving to s' after action a in state s     (S, A, S)
    R[s, a]      the expected reward of that step                               (S, A)
    gamma        the discount factor in [0, 1)

Terminal states are absorbing with zero reward, so every value below is finite. Value iteration
repeats the Bellman optimality backup; policy iteration alternates exact evaluation (a linear
solve) with greedy improvement; Q-learning learns the same optimal action values from sampled
steps. The last part computes the *exact* return of a tabular softmax policy and its gradient on a
small episodic MDP, against which the REINFORCE estimator is checked.

About 450 lines, on purpose: the MDP, its solvers and the exact policy gradient share one array
layout and are read in the order of the chapter; the gridworld that the notebooks solve is here
too, because every solver's test and check uses it.

Derived in: Chapter 5, *Markov decision processes* and *Dynamic programming*.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = [
    "ACTIONS",
    "MDP",
    "GridWorld",
    "bellman_backup",
    "bellman_residual",
    "exact_return",
    "greedy_policy",
    "gridworld",
    "policy_evaluation",
    "policy_iteration",
    "q_learning",
    "sample_episodes",
    "score_function_gradients",
    "softmax_policy",
    "value_iteration",
]

ACTIONS = ("up", "right", "down", "left")
_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))


@dataclass
class MDP:
    """A finite MDP.

    Attributes:
        P: ``(S, A, S)`` transition probabilities; each ``P[s, a]`` sums to 1.
        R: ``(S, A)`` expected immediate rewards.
        gamma: discount factor in ``[0, 1)``.
        terminal: ``(S,)`` bool; terminal states must be absorbing with zero reward.
        start: ``(S,)`` initial-state distribution.
        R_next: optional ``(S, A, S)`` reward of each transition, for sampling steps; its
            expectation under ``P`` must be ``R``. Without it a sampled step earns ``R[s, a]``.
    """

    P: np.ndarray
    R: np.ndarray
    gamma: float
    terminal: np.ndarray = field(default=None)  # type: ignore[assignment]
    start: np.ndarray = field(default=None)  # type: ignore[assignment]
    R_next: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.P = np.asarray(self.P, dtype=np.float64)
        self.R = np.asarray(self.R, dtype=np.float64)
        if self.P.ndim != 3 or self.P.shape[0] != self.P.shape[2]:
            raise ValueError(f"P must have shape (S, A, S), got {self.P.shape}")
        S, A, _ = self.P.shape
        if self.R.shape != (S, A):
            raise ValueError(f"R must have shape (S, A) = {(S, A)}, got {self.R.shape}")
        if (self.P < 0).any() or not np.allclose(self.P.sum(-1), 1.0, atol=1e-12):
            raise ValueError("every P[s, a] must be a probability distribution over next states")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")
        self.terminal = (
            np.zeros(S, bool) if self.terminal is None else np.asarray(self.terminal, dtype=bool)
        )
        if self.terminal.shape != (S,):
            raise ValueError(f"terminal must have shape ({S},), got {self.terminal.shape}")
        for s in np.flatnonzero(self.terminal):
            if not np.allclose(self.P[s, :, s], 1.0) or not np.allclose(self.R[s], 0.0):
                raise ValueError(f"terminal state {s} must be absorbing with zero reward")
        self.start = (
            np.full(S, 1.0 / S) if self.start is None else np.asarray(self.start, dtype=np.float64)
        )
        if self.start.shape != (S,) or not np.isclose(self.start.sum(), 1.0):
            raise ValueError("start must be a probability distribution over the S states")
        if self.R_next is None:
            self.R_next = np.repeat(self.R[:, :, None], S, axis=2)
        self.R_next = np.asarray(self.R_next, dtype=np.float64)
        if self.R_next.shape != (S, A, S):
            raise ValueError(f"R_next must have shape {(S, A, S)}, got {self.R_next.shape}")
        if not np.allclose((self.P * self.R_next).sum(-1), self.R, atol=1e-12):
            raise ValueError("R_next does not average to R under P")

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]


# ----------------------------------------------------------------------------- a gridworld


@dataclass
class GridWorld:
    """A maze of cells as an MDP, and how to draw its states back on the grid.

    Layout characters: ``S`` start, ``G`` goal (terminal, reward ``goal_reward`` on entering),
    ``P`` pit (terminal, ``pit_reward``), ``#`` wall, ``.`` free. Actions move up, right, down,
    left; with probability ``slip`` the move goes to one of the two perpendicular directions instead
    (half each). A move into a wall or off the grid stays put. Every other step costs
    ``step_reward``.
    """

    layout: tuple[str, ...]
    mdp: MDP
    cells: list[tuple[int, int]]  # state -> (row, col)
    slip: float

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.layout), len(self.layout[0])

    def to_grid(self, values: np.ndarray) -> np.ndarray:
        """``(S,)`` values -> ``(rows, cols)`` array, NaN on walls."""
        values = np.asarray(values, dtype=float)
        if values.shape != (len(self.cells),):
            raise ValueError(f"expected {len(self.cells)} values, got shape {values.shape}")
        grid = np.full(self.shape, np.nan)
        for s, (r, c) in enumerate(self.cells):
            grid[r, c] = values[s]
        return grid

    def kind(self, s: int) -> str:
        r, c = self.cells[s]
        return self.layout[r][c]


DEFAULT_LAYOUT = (
    "S..#....",
    ".#...##.",
    ".#.#..P.",
    "...#.#..",
    "P#...#.G",
)


def gridworld(
    layout: tuple[str, ...] | list[str] = DEFAULT_LAYOUT,
    *,
    slip: float = 0.2,
    gamma: float = 0.95,
    step_reward: float = -0.04,
    goal_reward: float = 1.0,
    pit_reward: float = -1.0,
) -> GridWorld:
    """Build the :class:`GridWorld` MDP of a layout (see the class for the rules).

    Derived in: Chapter 5, *Markov decision processes* (built in the notebook *Gridworld and
    dynamic programming*).
    """
    layout = tuple(layout)
    if not layout or len({len(row) for row in layout}) != 1:
        raise ValueError("layout must be a non-empty list of equally long strings")
    bad = set("".join(layout)) - set("SGP#.")
    if bad:
        raise ValueError(f"unknown layout characters {sorted(bad)}; use S, G, P, # and .")
    if "".join(layout).count("S") != 1:
        raise ValueError("layout must have exactly one start S")
    if not 0.0 <= slip <= 1.0:
        raise ValueError(f"slip must be in [0, 1], got {slip}")
    rows, cols = len(layout), len(layout[0])
    cells = [(r, c) for r in range(rows) for c in range(cols) if layout[r][c] != "#"]
    index = {cell: s for s, cell in enumerate(cells)}
    S, A = len(cells), len(ACTIONS)
    P = np.zeros((S, A, S))
    terminal = np.array([layout[r][c] in "GP" for r, c in cells])
    reward_in = {"G": goal_reward, "P": pit_reward}
    # the reward of entering each state; leaving a terminal state earns nothing
    entering = np.array([reward_in.get(layout[r][c], step_reward) for r, c in cells])
    R_next = np.where(terminal[:, None, None], 0.0, np.broadcast_to(entering, (S, A, S)))

    def move(cell, k):
        r, c = cell[0] + _MOVES[k][0], cell[1] + _MOVES[k][1]
        if 0 <= r < rows and 0 <= c < cols and layout[r][c] != "#":
            return index[(r, c)]
        return index[cell]

    for s, cell in enumerate(cells):
        if terminal[s]:
            P[s, :, s] = 1.0
            continue
        for a in range(A):
            for k, p in ((a, 1.0 - slip), ((a + 1) % 4, slip / 2), ((a + 3) % 4, slip / 2)):
                P[s, a, move(cell, k)] += p
    R = (P * R_next).sum(-1)
    start = np.zeros(S)
    start[next(s for s, (r, c) in enumerate(cells) if layout[r][c] == "S")] = 1.0
    return GridWorld(layout, MDP(P, R, gamma, terminal, start, R_next), cells, slip)


# ----------------------------------------------------------------------------- dynamic programming


def bellman_backup(mdp: MDP, V: np.ndarray) -> np.ndarray:
    """``Q[s, a] = R[s, a] + gamma * sum_s' P[s, a, s'] V[s']``, shape ``(S, A)``."""
    V = np.asarray(V, dtype=np.float64)
    if V.shape != (mdp.n_states,):
        raise ValueError(f"V must have shape ({mdp.n_states},), got {V.shape}")
    return mdp.R + mdp.gamma * mdp.P @ V


def bellman_residual(mdp: MDP, V: np.ndarray) -> float:
    """``max_s |(T V)(s) - V(s)|`` for the Bellman optimality operator ``T``."""
    return float(np.abs(bellman_backup(mdp, V).max(axis=1) - V).max())


def greedy_policy(mdp: MDP, V: np.ndarray) -> np.ndarray:
    """``(S,)`` the action maximising the backed-up value in each state (lowest index on ties)."""
    return bellman_backup(mdp, V).argmax(axis=1)


def value_iteration(
    mdp: MDP, *, tol: float = 1e-12, max_iter: int = 100_000
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Iterate ``V <- max_a Q(V)`` until the change is below ``tol``.

    Returns:
        ``(V, policy, residuals)``: ``(S,)`` optimal values, ``(S,)`` greedy actions, and the
        sup-norm change of each sweep (it shrinks at least geometrically with ratio ``gamma``).

    Derived in: Chapter 5, *Value iteration converges*.
    """
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    V = np.zeros(mdp.n_states)
    residuals = []
    for _ in range(max_iter):
        V_new = bellman_backup(mdp, V).max(axis=1)
        residuals.append(float(np.abs(V_new - V).max()))
        V = V_new
        if residuals[-1] < tol:
            break
    return V, greedy_policy(mdp, V), residuals


def _policy_matrix(mdp: MDP, policy: np.ndarray) -> np.ndarray:
    policy = np.asarray(policy)
    if policy.shape == (mdp.n_states,):
        pi = np.zeros((mdp.n_states, mdp.n_actions))
        pi[np.arange(mdp.n_states), policy.astype(int)] = 1.0
        return pi
    if policy.shape == (mdp.n_states, mdp.n_actions):
        return policy.astype(np.float64)
    raise ValueError(f"policy must have shape (S,) or (S, A), got {policy.shape}")


def policy_evaluation(mdp: MDP, policy: np.ndarray) -> np.ndarray:
    """Exact ``V^pi`` by solving ``(I - gamma P_pi) V = R_pi`` (policy: ``(S,)`` or ``(S, A)``)."""
    pi = _policy_matrix(mdp, policy)
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    R_pi = (pi * mdp.R).sum(axis=1)
    return np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * P_pi, R_pi)


def policy_iteration(mdp: MDP, *, max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray, int]:
    """Evaluate exactly, improve greedily, until the policy is stable.

    Returns:
        ``(V, policy, iterations)``.

    Derived in: Chapter 5, *Policy iteration*.
    """
    policy = np.zeros(mdp.n_states, dtype=int)
    for it in range(1, max_iter + 1):
        V = policy_evaluation(mdp, policy)
        Q = bellman_backup(mdp, V)
        # keep the current action unless another is strictly better (no cycling between ties)
        better = Q.max(axis=1) > Q[np.arange(mdp.n_states), policy] + 1e-12
        if not better.any():
            return V, policy, it
        policy = np.where(better, Q.argmax(axis=1), policy)
    raise RuntimeError(f"policy iteration did not converge in {max_iter} iterations")


def q_learning(
    mdp: MDP,
    *,
    episodes: int = 20_000,
    epsilon: float = 0.2,
    alpha0: float = 1.0,
    alpha_power: float = 0.6,
    max_steps: int = 200,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Tabular Q-learning with epsilon-greedy exploration, from sampled steps of ``mdp``.

    The step size of each ``(s, a)`` pair decays as ``alpha0 / n(s, a) ** alpha_power`` (a
    Robbins-Monro schedule when ``0.5 < alpha_power <= 1``).

    Returns:
        ``(Q, returns)``: ``(S, A)`` learned action values and the ``(episodes,)`` undiscounted
        return of each training episode.

    Derived in: Chapter 5, *Q-learning*.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    if episodes < 1 or max_steps < 1:
        raise ValueError("episodes and max_steps must be >= 1")
    rng = np.random.default_rng(seed)
    S, A = mdp.n_states, mdp.n_actions
    Q = np.zeros((S, A))
    visits = np.zeros((S, A))
    cum_P = mdp.P.cumsum(axis=-1)
    returns = np.zeros(episodes)
    for ep in range(episodes):
        s = int(rng.choice(S, p=mdp.start))
        total = 0.0
        for _ in range(max_steps):
            if mdp.terminal[s]:
                break
            a = int(rng.integers(A)) if rng.random() < epsilon else int(Q[s].argmax())
            s2 = min(int(np.searchsorted(cum_P[s, a], rng.random(), side="right")), S - 1)
            r = mdp.R_next[s, a, s2]
            visits[s, a] += 1
            alpha = alpha0 / visits[s, a] ** alpha_power
            target = r + (0.0 if mdp.terminal[s2] else mdp.gamma * Q[s2].max())
            Q[s, a] += alpha * (target - Q[s, a])
            total += r
            s = s2
        returns[ep] = total
    return Q, returns


# ------------------------------------------------------------------------ exact policy gradients


def softmax_policy(theta: torch.Tensor) -> torch.Tensor:
    """``(S, A)`` logits -> ``(S, A)`` action probabilities (softmax over actions)."""
    if theta.dim() != 2:
        raise ValueError(f"theta must have shape (S, A), got {tuple(theta.shape)}")
    return torch.softmax(theta, dim=-1)


def exact_return(mdp: MDP, theta: torch.Tensor, horizon: int) -> torch.Tensor:
    """The exact expected discounted return ``J(theta)`` of the softmax policy, ``horizon`` steps.

    Backward induction, differentiable in ``theta``: ``torch.autograd.grad(J, theta)`` is the exact
    policy gradient.

        V_H = 0,   V_t(s) = sum_a pi(a|s) [R(s, a) + gamma sum_s' P(s, a, s') V_{t+1}(s')],
        J = sum_s start(s) V_0(s)
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if theta.shape != (mdp.n_states, mdp.n_actions):
        raise ValueError(
            f"theta must have shape {(mdp.n_states, mdp.n_actions)}, got {tuple(theta.shape)}"
        )
    P = torch.as_tensor(mdp.P, dtype=theta.dtype)
    R = torch.as_tensor(mdp.R, dtype=theta.dtype)
    pi = softmax_policy(theta)
    V = torch.zeros(mdp.n_states, dtype=theta.dtype)
    for _ in range(horizon):
        V = (pi * (R + mdp.gamma * P @ V)).sum(-1)
    return torch.as_tensor(mdp.start, dtype=theta.dtype) @ V


def sample_episodes(
    mdp: MDP, theta: torch.Tensor, horizon: int, n: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` episodes of ``horizon`` steps of the softmax policy, all at once.

    Rewards are the expected rewards ``R[s, a]`` of the steps taken, so the estimator's only
    randomness is the policy's and the dynamics'. After a terminal state the episode stays there
    with zero reward.

    Returns:
        ``(states, actions, rewards)``, each ``(n, horizon)``.
    """
    rng = np.random.default_rng(seed)
    pi = softmax_policy(theta.detach().double()).numpy()
    S = mdp.n_states
    states = np.zeros((n, horizon), dtype=int)
    actions = np.zeros((n, horizon), dtype=int)
    rewards = np.zeros((n, horizon))
    s = rng.choice(S, size=n, p=mdp.start)
    for t in range(horizon):
        u = rng.random(n)[:, None]
        a = (u > pi[s].cumsum(-1)).sum(-1).clip(max=mdp.n_actions - 1)
        states[:, t], actions[:, t] = s, a
        rewards[:, t] = mdp.R[s, a]
        u2 = rng.random(n)[:, None]
        s = (u2 > mdp.P[s, a].cumsum(-1)).sum(-1).clip(max=S - 1)
    return states, actions, rewards


def score_function_gradients(
    mdp: MDP,
    theta: torch.Tensor,
    states: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    baseline: np.ndarray | None = None,
) -> np.ndarray:
    """One REINFORCE gradient estimate per episode, ``(n, S, A)``.

        g = sum_t gamma^t grad log pi(a_t | s_t) (G_t - b(s_t)),  G_t = sum_{k>=t} gamma^(k-t) r_k

    For the softmax policy, ``grad_theta log pi(a|s)`` is ``onehot(a) - pi(.|s)`` in row ``s``
    and zero elsewhere. ``baseline`` is ``(horizon, S)`` (a function of time and state) or None.

    Derived in: Chapter 5, *REINFORCE* and *Baselines*.
    """
    n, H = states.shape
    gamma = mdp.gamma
    disc = gamma ** np.arange(H)
    G = np.zeros((n, H))
    acc = np.zeros(n)
    for t in reversed(range(H)):
        acc = rewards[:, t] + gamma * acc
        G[:, t] = acc
    if baseline is not None:
        baseline = np.asarray(baseline)
        if baseline.shape != (H, mdp.n_states):
            raise ValueError(
                f"baseline must have shape (horizon, S) = {(H, mdp.n_states)}, got {baseline.shape}"
            )
        G = G - baseline[np.arange(H)[None, :], states]
    pi = softmax_policy(theta.detach().double()).numpy()
    grads = np.zeros((n, mdp.n_states, mdp.n_actions))
    rows = np.arange(n)
    for t in range(H):
        s, a = states[:, t], actions[:, t]
        score = -pi[s]  # (n, A)
        score[rows, a] += 1.0
        np.add.at(grads, (rows, s), (disc[t] * G[:, t])[:, None] * score)
    return grads
