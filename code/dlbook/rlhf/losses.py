"""The losses of fine-tuning on preferences, each a few lines on log-probabilities.

- :func:`sequence_logprob`: ``log pi(y | x)`` of whole responses from per-token logits, summing
  only over the response's tokens (the mask);
- :func:`sft_loss`: supervised fine-tuning, cross-entropy on the response tokens only;
- :func:`bradley_terry_loss`: the reward model's loss on preference pairs;
- :func:`dpo_loss`: direct preference optimisation, the same loss with the reward written through
  the policy, ``r = beta log(pi / pi_ref)``;
- :func:`kl_shaped_rewards`: the per-token rewards RLHF with PPO optimises, a KL penalty at every
  token and the reward model's score at the last one.

Conventions: a batch of ``B`` sequences of length ``T``; ``mask`` is ``(B, T)`` with 1 (or True)
on the tokens that belong to the response. Log-probabilities are natural logarithms.

Derived in: Chapter 6, *From GPT to an assistant*.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "bradley_terry_loss",
    "dpo_loss",
    "kl_shaped_rewards",
    "sequence_logprob",
    "sft_loss",
    "token_logprobs",
]


def _same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"expected tensors of one shape, got {shapes}")


def _check_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The mask as 0./1. in ``like``'s dtype, after checking its shape."""
    if tuple(mask.shape) != tuple(like.shape):
        raise ValueError(f"mask must have shape {tuple(like.shape)}, got {tuple(mask.shape)}")
    return mask.to(like.dtype)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[target]`` at every position.

    Args:
        logits: ``(B, T, V)``, the model's scores for the token at each position.
        targets: ``(B, T)`` token ids.

    Returns:
        ``(B, T)``: the log-probability the model gives each target token.
    """
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits (B, T, V) and targets (B, T), got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # a log-softmax in half precision loses the small probabilities
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def sequence_logprob(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``log pi(y | x) = sum_t mask_t log pi(y_t | y_<t, x)``: one number per sequence, ``(B,)``."""
    lp = token_logprobs(logits, targets)
    return (lp * _check_mask(mask, lp)).sum(-1)


def sft_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Supervised fine-tuning: the mean cross-entropy over the response tokens only.

    The prompt's tokens (mask 0) get no loss, so no gradient flows into their logits: the model
    is taught to answer, not to write prompts. Equal to ``F.cross_entropy(...,
    ignore_index=...)`` with the prompt's targets ignored.
    """
    lp = token_logprobs(logits, targets)
    m = _check_mask(mask, lp)
    n = m.sum()
    if n <= 0:
        raise ValueError("the mask selects no token: nothing to fine-tune on")
    return -(lp * m).sum() / n


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """The Bradley-Terry negative log-likelihood of the pairs: ``-mean log sigmoid(r_c - r_r)``.

    ``P(chosen preferred to rejected) = sigmoid(r_chosen - r_rejected)``; only differences of
    rewards enter, so a constant added to every reward changes nothing.
    """
    _same_shape(r_chosen=r_chosen, r_rejected=r_rejected)
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def dpo_loss(
    logp_chosen: torch.Tensor,
    logp_rejected: torch.Tensor,
    ref_logp_chosen: torch.Tensor,
    ref_logp_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Direct preference optimisation (Rafailov et al. 2023), a scalar loss.

        -mean log sigmoid(beta [(log pi(y_c) - log pi_ref(y_c)) - (log pi(y_r) - log pi_ref(y_r))])

    All four arguments are ``(B,)`` sequence log-probabilities (:func:`sequence_logprob`); the
    reference's carry no gradient.
    """
    _same_shape(
        logp_chosen=logp_chosen,
        logp_rejected=logp_rejected,
        ref_logp_chosen=ref_logp_chosen,
        ref_logp_rejected=ref_logp_rejected,
    )
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    implied_c = beta * (logp_chosen - ref_logp_chosen.detach())
    implied_r = beta * (logp_rejected - ref_logp_rejected.detach())
    return bradley_terry_loss(implied_c, implied_r)


def kl_shaped_rewards(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    score: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """RLHF's per-token rewards: ``-beta (log pi - log pi_ref)`` at every response token, plus
    the reward model's ``score`` at the last one.

    Args:
        logp, ref_logp: ``(B, T)`` log-probabilities of the sampled tokens under the policy and
            the reference.
        score: ``(B,)`` the reward model's score of each whole sequence.
        mask: ``(B, T)``, 1 on the response tokens; each row must select at least one token.
        beta: the KL coefficient, ``>= 0``.

    Returns:
        ``(B, T)`` rewards, 0 outside the mask. Their sum over ``t`` is ``score - beta *
        (log pi(y) - log pi_ref(y))``, whose mean over samples of ``pi`` estimates
        ``E[r] - beta KL(pi || pi_ref)``.
    """
    _same_shape(logp=logp, ref_logp=ref_logp)
    m = _check_mask(mask, logp)
    if score.shape != logp.shape[:1]:
        raise ValueError(f"score must have shape ({logp.shape[0]},), got {tuple(score.shape)}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if (m.sum(-1) <= 0).any():
        raise ValueError("every row of the mask must select at least one response token")
    rewards = -beta * (logp - ref_logp).detach() * m
    t = torch.arange(m.shape[1], device=m.device)
    last = (m * (t + 1)).argmax(-1)  # the position of each row's last response token
    rewards[torch.arange(m.shape[0], device=m.device), last] += score.to(rewards.dtype)
    return rewards
