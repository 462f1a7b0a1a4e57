"""CartPole-v1 for many environments at once, as one tensor program (CPU or GPU).

The physics, constants, thresholds, rewards and time limit are gymnasium's ``CartPole-v1``
(Barto, Sutton and Anderson, 1983), computed in the same order, so that the same state and action
give the same next state; ``tests/test_rl.py`` (``test_cartpole_matches_gymnasium_step_for_step``)
checks it step for step against gymnasium, as does the chapter's notebook ``cartpole.ipynb``.
The state is ``(x, x_dot, theta, theta_dot)``: cart position and velocity, pole angle (radians,
0 = upright) and angular velocity. Action 1 pushes the cart right with 10 N, action 0 left.

    temp      = (F + m_p l theta_dot^2 sin theta) / (m_c + m_p)
    theta_acc = (g sin theta - cos theta * temp) / (l (4/3 - m_p cos^2 theta / (m_c + m_p)))
    x_acc     = temp - m_p l theta_acc cos theta / (m_c + m_p)

then one explicit Euler step of ``tau = 0.02`` s. An episode terminates when ``|x| > 2.4`` or
``|theta| > 12 degrees`` and is truncated after 500 steps; every step, the last included, earns
reward 1. As in gymnasium, whose ``TimeLimit`` wrapper sets ``truncated`` once the step count
reaches the limit whatever the episode did, an episode that falls at step 500 is both terminated
and truncated; a learner must let ``terminated`` decide whether to bootstrap. Finished
environments start a new episode at once (auto-reset), and the terminal
observation is kept in ``final_obs``.

Derived in: Chapter 5, *CartPole*.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from dlbook.runtime import resolve_device

__all__ = ["CartPole", "cartpole_dynamics"]

GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
MAX_STEPS = 500


def _cos_sin(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin; in float64 on the CPU computed by NumPy, as gymnasium computes them.

    Torch's vectorised sin and cos differ from the C library's in the last bit for about one
    input in a thousand. CartPole is chaotic (an upright pole is unstable), so such a bit grows to
    1e-5 within a few hundred steps; with NumPy's functions float64 trajectories are identical.
    """
    if theta.dtype == torch.float64 and theta.device.type == "cpu":
        a = theta.numpy()
        return torch.from_numpy(np.cos(a)), torch.from_numpy(np.sin(a))
    return torch.cos(theta), torch.sin(theta)


def cartpole_dynamics(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """One Euler step: ``(N, 4)`` states, ``(N,)`` actions in {0, 1} -> ``(N, 4)`` next states."""
    return _euler_step(state, action, _constants(state.dtype, state.device))


@functools.lru_cache(maxsize=16)
def _constants(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The physical constants as 0-dim tensors of the state's dtype: the same values as the Python
    floats, without a conversion of a Python number in each of the step's thirty operations."""
    values = (FORCE_MAG, POLEMASS_LENGTH, TOTAL_MASS, GRAVITY, LENGTH, 4.0 / 3.0, MASSPOLE, TAU)
    return tuple(torch.tensor(v, dtype=dtype, device=device) for v in values)


def _euler_step(s: torch.Tensor, action: torch.Tensor, c: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """:func:`cartpole_dynamics` with the constants ``c`` from :func:`_constants` passed in."""
    force_mag, pml, total_mass, gravity, length, four_thirds, masspole, tau = c
    _, x_dot, theta, theta_dot = s.unbind(1)  # x enters only through s below
    force = action.to(s.dtype) * (2 * force_mag) - force_mag  # exactly +-10.0
    costheta, sintheta = _cos_sin(theta)
    # the same operations in the same order as gymnasium, so that float64 results agree exactly
    temp = (force + pml * (theta_dot * theta_dot) * sintheta) / total_mass
    thetaacc = (gravity * sintheta - costheta * temp) / (
        length * (four_thirds - masspole * (costheta * costheta) / total_mass)
    )
    xacc = temp - pml * thetaacc * costheta / total_mass
    # x + tau x_dot, x_dot + tau xacc, theta + tau theta_dot, theta_dot + tau thetaacc at once
    return s + tau * torch.stack((x_dot, xacc, theta_dot, thetaacc), dim=1)


def _advance(
    s: torch.Tensor,
    steps: torch.Tensor,
    action: torch.Tensor,
    c: tuple[torch.Tensor, ...],
    max_steps: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Everything in a step but the reset, as one function (``torch.compile`` fuses it whole).

    ``(N, 4)`` states, ``(N,)`` step counts and actions -> the ``(N, 4)`` next states, the new
    step counts and the ``(N,)`` terminated and truncated flags.
    """
    s = _euler_step(s, action, c)
    steps = steps + 1
    terminated = (s[:, 0].abs() > X_THRESHOLD) | (s[:, 2].abs() > THETA_THRESHOLD)
    truncated = steps >= max_steps  # as gymnasium's TimeLimit: also where it also terminated
    return s, steps, terminated, truncated


class CartPole:
    """``num_envs`` CartPole-v1 environments stepped together.

    Args:
        num_envs: ``N``, the number of environments.
        device: where the state lives (a GPU steps tens of thousands of environments at once);
            ``None``: :func:`dlbook.device`.
        dtype: ``torch.float64`` on the CPU reproduces gymnasium's arithmetic exactly; ``float32``
            is faster.
        seed: seeds the environments' own generator, which draws every initial state (the
            global random generators are not used).
        max_steps: the time limit (500 in CartPole-v1).
        compile: compile the step (physics, termination, truncation; not the reset) with
            ``torch.compile``: one fused kernel instead of some forty small operations; worth it
            for long runs, it costs up to a minute to compile.

    Attributes:
        state: ``(N, 4)`` current states (assigning an ``(N, 4)`` tensor sets them).
        steps: ``(N,)`` steps taken in the current episode.
        final_obs: ``(N, 4)`` after :meth:`step`, the observation that ended each finished episode
            (equal to the returned observation for environments still running).
    """

    observation_size = 4
    num_actions = 2

    def __init__(
        self,
        num_envs: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
        max_steps: int = MAX_STEPS,
        compile: bool = False,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a float dtype, got {dtype}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.num_envs, self.device, self.dtype, self.max_steps = (
            num_envs,
            resolve_device(device),
            dtype,
            max_steps,
        )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self._s = torch.zeros(num_envs, 4, device=self.device, dtype=dtype)
        self._final = self._s
        self.steps = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._c = _constants(dtype, self.device)
        exact = dtype == torch.float64 and self.device.type == "cpu"  # NumPy's sin/cos inside
        self._advance = (
            torch.compile(_advance, dynamic=False) if compile and not exact else _advance
        )

    @property
    def state(self) -> torch.Tensor:
        return self._s

    @state.setter
    def state(self, value: torch.Tensor) -> None:
        value = torch.as_tensor(value, device=self.device, dtype=self.dtype)
        if value.shape != (self.num_envs, 4):
            raise ValueError(
                f"state must have shape ({self.num_envs}, 4), got {tuple(value.shape)}"
            )
        self._s = value.clone(memory_format=torch.contiguous_format)

    @property
    def final_obs(self) -> torch.Tensor:
        # the physics makes a new tensor every step, and the reset writes only into a copy of it:
        # this one never changes after the step returns
        return self._final

    def _initial_states(self, n: int) -> torch.Tensor:
        """``(n, 4)`` states uniform in [-0.05, 0.05), as gymnasium's reset."""
        u = torch.rand(n, 4, generator=self.generator, device=self.device, dtype=self.dtype)
        return u * 0.1 - 0.05

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start every environment afresh; returns the ``(N, 4)`` observations."""
        if seed is not None:
            self.generator.manual_seed(seed)
        self._s = self._initial_states(self.num_envs)
        self._final = self._s
        self.steps.zero_()
        return self._s.clone()

    def step(
        self, action: torch.Tensor, *, autoreset: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Apply ``(N,)`` actions in {0, 1}.

        Returns:
            ``(obs, reward, terminated, truncated)``: ``(N, 4)`` observations (of the new episode
            where one just ended, if ``autoreset``), ``(N,)`` rewards (all 1), and ``(N,)`` bools.
        """
        action = torch.as_tensor(action, device=self.device)
        if action.shape != (self.num_envs,):
            raise ValueError(
                f"action must have shape ({self.num_envs},), got {tuple(action.shape)}"
            )
        if action.dtype.is_floating_point:
            raise ValueError("actions must be integers 0 (push left) or 1 (push right)")
        if action.dtype != torch.bool and (action & -2).any():  # a bit above the lowest: <0 or >1
            raise ValueError("actions must be integers 0 (push left) or 1 (push right)")
        self._s, self.steps, terminated, truncated = self._advance(
            self._s, self.steps, action, self._c, self.max_steps
        )
        self._final = self._s
        reward = torch.ones(self.num_envs, device=self.device, dtype=self.dtype)
        if autoreset:
            ended = (terminated | truncated).nonzero().squeeze(1)  # (k,) episodes that ended
            if len(ended):
                # fresh states for those k only, written into a copy (final_obs keeps the old)
                self._s = self._s.clone()
                self._s[ended] = self._initial_states(len(ended))
                self.steps[ended] = 0
        return self._s.clone(), reward, terminated, truncated
