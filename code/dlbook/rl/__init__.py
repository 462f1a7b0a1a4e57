"""Reinforcement learning: finite MDPs and dynamic programming, a batched CartPole in torch,
REINFORCE and PPO.

- :mod:`dlbook.rl.mdp`: MDPs as arrays, a gridworld, value and policy iteration, Q-learning, and
  exact policy gradients of small MDPs.
- :mod:`dlbook.rl.cartpole`: ``CartPole``, gymnasium's CartPole-v1 for many environments at once.
- :mod:`dlbook.rl.pg`: returns, GAE, the actor-critic network, evaluation and REINFORCE.
- :mod:`dlbook.rl.ppo`: PPO (CleanRL's settings under their names, the clipped loss, the trainer).
- :mod:`dlbook.rl.dqn`: DQN (replay buffer, target network) and Baird's counterexample.

Derived in: Chapter 5, *Reinforcement learning*.
"""

from dlbook.rl.cartpole import CartPole
from dlbook.rl.dqn import DQNConfig, train_dqn
from dlbook.rl.mdp import (
    ACTIONS,
    MDP,
    GridWorld,
    bellman_backup,
    bellman_residual,
    exact_return,
    greedy_policy,
    gridworld,
    policy_evaluation,
    policy_iteration,
    q_learning,
    sample_episodes,
    score_function_gradients,
    softmax_policy,
    value_iteration,
)
from dlbook.rl.pg import (
    ActorCritic,
    discounted_returns,
    evaluate_policy,
    gae,
    train_reinforce,
)
from dlbook.rl.ppo import PPOConfig, explained_variance, ppo_clip_loss, ppo_diagnostics, train_ppo

__all__ = [
    "ACTIONS",
    "MDP",
    "ActorCritic",
    "CartPole",
    "DQNConfig",
    "GridWorld",
    "PPOConfig",
    "bellman_backup",
    "bellman_residual",
    "discounted_returns",
    "evaluate_policy",
    "exact_return",
    "explained_variance",
    "gae",
    "greedy_policy",
    "gridworld",
    "policy_evaluation",
    "policy_iteration",
    "ppo_clip_loss",
    "ppo_diagnostics",
    "q_learning",
    "sample_episodes",
    "score_function_gradients",
    "softmax_policy",
    "train_dqn",
    "train_ppo",
    "train_reinforce",
    "value_iteration",
]
