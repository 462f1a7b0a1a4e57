"""CartPole-v1 for many environments at once, as one tensor program (CPU or GPU).

The physics, constants, thresholds, rewards and time limit are gymnasium's ``CartPole-v1``
(Barto, Sutton and Anderson, 1983), computed in the same order, so that the same state and action
give the same next state; ``tests/test_rl_cartpole.py`` checks it step for step against gymnasium.
The state is ``(x, x_dot, theta, theta_dot)``: cart position and velocity, pole angle (radians,
0 = upright) and angular velocity. Action 1 pushes the cart right with 10 N, action 0 left.

    temp      = (F + m_p l theta_dot^2 sin theta) / (m_c + m_p)
    theta_acc = (g sin theta - cos theta * temp) / (l (4/3 - m_p cos^2 theta / (m_c + m_p)))
    x_acc     = temp - m_p l theta_acc cos theta / (m_c + m_p)

then one explicit Euler step of ``tau = 0.02`` s. An episode terminates when ``|x| > 2.4`` or
``|theta| > 12 degrees`` and is truncated after 500 steps; every step, the last included, earns
reward 1. Finished environments start a new episode at once (auto-reset), and the terminal
observation is kept in ``final_obs``.

Derived in: Chapter 5, *CartPole*.
"""

from __future__ import annotations

import math

import numpy as np
import torch

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
    return _euler_step(state.T, action).T


def _euler_step(s: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """The same step on ``(4, N)`` states (one contiguous row per variable: fewer, faster ops)."""
    x, x_dot, theta, theta_dot = s
    force = action.to(s.dtype) * (2 * FORCE_MAG) - FORCE_MAG  # exactly +-10.0
    costheta, sintheta = _cos_sin(theta)
    # the same operations in the same order as gymnasium, so that float64 results agree exactly
    temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS
    thetaacc = (GRAVITY * sintheta - costheta * temp) / (
        LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / TOTAL_MASS)
    )
    xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
    return torch.stack(
        (x + TAU * x_dot, x_dot + TAU * xacc, theta + TAU * theta_dot, theta_dot + TAU * thetaacc)
    )


class CartPole:
    """``num_envs`` CartPole-v1 environments stepped together.

    Args:
        num_envs: ``N``, the number of environments.
        device: where the state lives (a GPU steps tens of thousands of environments at once).
        dtype: ``torch.float64`` reproduces gymnasium's arithmetic exactly; ``float32`` is faster.
        seed: seeds the reset generator.
        max_steps: the time limit (500 in CartPole-v1).
        compile: compile the physics step with ``torch.compile`` (one fused kernel instead of
            some thirty small ones; worth it for long runs, it costs up to a minute to compile).

    Attributes:
        state: ``(N, 4)`` current states (a view of the ``(4, N)`` array the physics works on;
            assigning an ``(N, 4)`` tensor sets them).
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
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int | None = None,
        max_steps: int = MAX_STEPS,
        compile: bool = False,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a float dtype, got {dtype}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.num_envs, self.device, self.dtype, self.max_steps = (
            num_envs,
            torch.device(device),
            dtype,
            max_steps,
        )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(0 if seed is None else seed)
        self._s = torch.zeros(4, num_envs, device=self.device, dtype=dtype)  # (4, N)
        self.steps = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.final_obs = self.state.clone()
        exact = dtype == torch.float64 and self.device.type == "cpu"  # NumPy's sin/cos inside
        self._physics = torch.compile(_euler_step) if compile and not exact else _euler_step

    @property
    def state(self) -> torch.Tensor:
        return self._s.T

    @state.setter
    def state(self, value: torch.Tensor) -> None:
        value = torch.as_tensor(value, device=self.device, dtype=self.dtype)
        if value.shape != (self.num_envs, 4):
            raise ValueError(
                f"state must have shape ({self.num_envs}, 4), got {tuple(value.shape)}"
            )
        self._s = value.T.contiguous()

    def _initial_states(self, n: int) -> torch.Tensor:
        """``(4, n)`` states uniform in [-0.05, 0.05), as gymnasium's reset."""
        u = torch.rand(n, 4, generator=self.generator, device=self.device, dtype=self.dtype)
        return (u * 0.1 - 0.05).T

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start every environment afresh; returns the ``(N, 4)`` observations."""
        if seed is not None:
            self.generator.manual_seed(seed)
        self._s = self._initial_states(self.num_envs).contiguous()
        self.steps.zero_()
        self.final_obs = self.state.contiguous()
        return self.state.contiguous()

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
        if action.dtype.is_floating_point or bool((action.long() & ~1).any()):
            raise ValueError("actions must be integers 0 (push left) or 1 (push right)")
        self._s = self._physics(self._s, action)
        self.steps += 1
        terminated = (self._s[0].abs() > X_THRESHOLD) | (self._s[2].abs() > THETA_THRESHOLD)
        truncated = (self.steps >= self.max_steps) & ~terminated
        reward = torch.ones(self.num_envs, device=self.device, dtype=self.dtype)
        self.final_obs = self.state.contiguous()
        done = terminated | truncated
        if autoreset and bool(done.any()):
            fresh = self._initial_states(self.num_envs)
            self._s = torch.where(done, fresh, self._s)
            self.steps.masked_fill_(done, 0)
            return self.state.contiguous(), reward, terminated, truncated
        return self.final_obs.clone(), reward, terminated, truncated
