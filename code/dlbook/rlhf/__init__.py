"""From GPT to an assistant: fine-tuning on preferences.

Two modules, following Chapter 6:

- :mod:`dlbook.rlhf.losses`: the losses, each a few lines on log-probabilities: supervised
  fine-tuning with the prompt masked, the Bradley-Terry loss of a reward model, DPO, and the
  KL-shaped per-token rewards of RLHF with PPO. They take tensors from any model, a GPT included.
- :mod:`dlbook.rlhf.exact`: a language small enough to enumerate (81 sequences), an autoregressive
  policy with one row of logits per prefix, and what can be computed on it exactly: the optimum of
  the KL-regularised objective, best-of-n, preferences and the rewards they identify, and RLHF
  with PPO (Chapter 5's GAE and clipped loss, token by token).
- :mod:`dlbook.rlhf.lm`: the same for a GPT (Chapter 3): a scalar head on its body (value head,
  reward model), responses and their log-probabilities, one step of the reward model's and of
  DPO's loss, and RLHF with PPO over tokens.

Every name is re-exported here.

Derived in: Chapter 6, *From GPT to an assistant*.
"""

from dlbook.rlhf.exact import (
    PPOHistory,
    TabularPolicy,
    TinyLanguage,
    best_of_n,
    best_of_n_kl_bound,
    expected_pair_loss,
    fit_rewards,
    kl,
    kl_optimum,
    regularised_objective,
    rlhf_ppo,
    sample_preferences,
)
from dlbook.rlhf.lm import (
    LMPPOConfig,
    LMPPOHistory,
    ScalarHead,
    dpo_step,
    hidden_states,
    pretrain,
    response_logprobs,
    response_values,
    reward_model_step,
    rlhf_ppo_lm,
    sample_responses,
)
from dlbook.rlhf.losses import (
    bradley_terry_loss,
    dpo_loss,
    kl_shaped_rewards,
    sequence_logprob,
    sft_loss,
    token_logprobs,
)

__all__ = [
    "LMPPOConfig",
    "LMPPOHistory",
    "PPOHistory",
    "ScalarHead",
    "TabularPolicy",
    "TinyLanguage",
    "best_of_n",
    "best_of_n_kl_bound",
    "bradley_terry_loss",
    "dpo_loss",
    "dpo_step",
    "expected_pair_loss",
    "fit_rewards",
    "hidden_states",
    "kl",
    "kl_optimum",
    "kl_shaped_rewards",
    "pretrain",
    "regularised_objective",
    "response_logprobs",
    "response_values",
    "reward_model_step",
    "rlhf_ppo",
    "rlhf_ppo_lm",
    "sample_preferences",
    "sample_responses",
    "sequence_logprob",
    "sft_loss",
    "token_logprobs",
]
