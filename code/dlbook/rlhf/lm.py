"""Fine-tuning a GPT on preferences: a scalar head, responses and their log-probabilities, a
reward model's training, DPO's step and RLHF with PPO over tokens.

The pieces of :mod:`dlbook.rlhf.exact`, for a language model that cannot be enumerated:

- :class:`ScalarHead`: a GPT's body (Chapter 3's :class:`~dlbook.gpt.GPT` without its language
  head) and a linear layer that gives one number per position: a *value head* (the return to go
  after each token) or a *reward model* (the number at a response's last token);
- :func:`response_logprobs`: ``log pi(y_t | x, y_<t)`` of each response token, from one forward
  pass over prompt and response;
- :func:`sample_responses`: responses drawn by Chapter 3's :func:`~dlbook.gpt.generate`;
- :func:`reward_model_step` and :func:`dpo_step`: one optimiser step of the Bradley-Terry loss and
  of the DPO loss on a batch of preference pairs;
- :func:`rlhf_ppo_lm`: RLHF with PPO, tokens as actions (Chapter 5's GAE and clipped loss);
- :func:`pretrain`: Chapter 3's training loop, the reference the chapter's notebooks start from.

Sequences are ``(B, P + n)`` token ids: a prompt of ``P`` tokens, then a response of ``n``; every
prompt of a batch has the same length ``P`` and every response has ``n`` tokens (no end-of-text
token, no padding: a real assistant's responses end at an end token, and their masks, as in
:mod:`dlbook.rlhf.losses`, then differ from row to row). The models must have no dropout
(``GPTConfig.dropout = 0``): PPO's ratio and the KL penalty compare log-probabilities computed in
different passes, which dropout would make differ by noise.

Derived in: Chapter 6, *RLHF with PPO*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from dlbook.gpt.model import GPT, GPTConfig
from dlbook.gpt.sample import generate
from dlbook.gpt.train import configure_optimizer, cosine_lr, get_batch, train_step
from dlbook.rl.pg import gae
from dlbook.rl.ppo import ppo_clip_loss
from dlbook.rlhf.losses import bradley_terry_loss, dpo_loss, kl_shaped_rewards, token_logprobs

__all__ = [
    "LMPPOConfig",
    "LMPPOHistory",
    "ScalarHead",
    "dpo_step",
    "hidden_states",
    "pretrain",
    "response_logprobs",
    "response_values",
    "reward_model_step",
    "rlhf_ppo_lm",
    "sample_responses",
]


def pretrain(
    config: GPTConfig,
    data: torch.Tensor,
    steps: int,
    *,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    max_lr: float = 3e-3,
) -> GPT:
    """A GPT trained on the 1-D token tensor ``data`` as in Chapter 3 (AdamW, weight decay 0.1,
    cosine schedule with 50 warm-up steps, a progress bar), returned in eval mode."""
    from dlbook.train import train_loop

    model = GPT(config).to(device)
    optimizer = configure_optimizer(model, lr=max_lr, weight_decay=0.1)

    def step_fn(step: int) -> float:
        x, y = get_batch(data, batch_size, config.block_size, device=device, generator=generator)
        lr = cosine_lr(step, max_lr=max_lr, min_lr=max_lr / 10, warmup=50, total=steps)
        return train_step(model, optimizer, x, y, lr=lr)

    train_loop(step_fn, steps, log_every=20, progress="bar", desc="pretraining")
    return model.eval()


def hidden_states(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """The GPT's final hidden states, after its last LayerNorm: ``(B, T)`` ids -> ``(B, T, d)``.

    ``model.lm_head(hidden_states(model, idx))`` are the model's logits.
    """
    model._check_idx(idx)
    pos = torch.arange(idx.shape[1], device=idx.device)
    x = model.drop(model.wte(idx) + model.wpe(pos))
    for i, block in enumerate(model.blocks):
        x = block(x, None, i)
    return model.ln_f(x)


class ScalarHead(nn.Module):
    """A GPT body with a linear head to one number per position: ``(B, T)`` ids -> ``(B, T)``.

    Used as a value head (every position) or a reward model (:meth:`score`, the last position).
    The head starts at zero, so a new head predicts 0 everywhere.
    """

    def __init__(self, body: GPT) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(body.config.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(hidden_states(self.body, idx)).squeeze(-1)

    def score(self, idx: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """A reward model's score of each sequence, ``(B,)``: the number at the last position, or,
        given ``start``, the mean of the numbers at positions ``start, start + 1, ...`` (the
        response's tokens, each judged with everything before it in view)."""
        values = self(idx)
        if start is None:
            return values[:, -1]
        if not 0 <= start < idx.shape[1]:
            raise ValueError(f"start must be in [0, {idx.shape[1]}), got {start}")
        return values[:, start:].mean(1)


def _check_seqs(seqs: torch.Tensor, prompt_len: int) -> None:
    if seqs.dim() != 2 or not 1 <= prompt_len < seqs.shape[1]:
        raise ValueError(
            f"expected (B, P + n) sequences with 1 <= P < P + n, got shape {tuple(seqs.shape)} "
            f"and prompt_len={prompt_len}"
        )


def _no_dropout(**models: nn.Module) -> None:
    for name, m in models.items():
        body = m.body if isinstance(m, ScalarHead) else m
        if body.config.dropout > 0:
            raise ValueError(
                f"{name} has dropout {body.config.dropout}: log-probabilities from different "
                "passes would differ by dropout noise; fine-tune a copy with dropout 0"
            )


def response_values(critic: ScalarHead, seqs: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """The value of the state before each response token: ``(B, n)``.

    The state before response token ``t`` is the prompt and the response's first ``t`` tokens,
    whose last position is ``P + t - 1``: so ``critic(seqs)[:, P - 1 : -1]``.
    """
    _check_seqs(seqs, prompt_len)
    return critic(seqs)[:, prompt_len - 1 : -1]


def response_logprobs(model: GPT, seqs: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """``log pi(y_t | x, y_<t)`` for the response tokens ``seqs[:, P:]``: ``(B, n)``.

    The logits at position ``t`` predict token ``t + 1``, so one pass over ``seqs[:, :-1]`` gives
    them all; the prompt's own tokens are not scored.
    """
    _check_seqs(seqs, prompt_len)
    logits, _ = model(seqs[:, :-1])
    return token_logprobs(logits[:, prompt_len - 1 :], seqs[:, prompt_len:])


@torch.no_grad()
def sample_responses(
    model: GPT, prompts: torch.Tensor, n_new: int, generator: torch.Generator, **kwargs
) -> torch.Tensor:
    """Prompts ``(B, P)`` -> prompts and sampled responses ``(B, P + n_new)`` (plain sampling at
    temperature 1 unless ``kwargs`` say otherwise; see :func:`dlbook.gpt.generate`)."""
    was_training = model.training
    model.eval()
    try:
        return generate(model, prompts, n_new, generator=generator, autocast=False, **kwargs)
    finally:
        model.train(was_training)


def reward_model_step(
    rm: ScalarHead,
    optimizer: torch.optim.Optimizer,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    start: int | None = None,
) -> float:
    """One step of the Bradley-Terry loss on ``(B, P + n)`` chosen and rejected sequences
    (``start``: as in :meth:`ScalarHead.score`)."""
    if chosen.shape != rejected.shape:
        raise ValueError(
            f"chosen {tuple(chosen.shape)} and rejected {tuple(rejected.shape)} differ"
        )
    loss = bradley_terry_loss(rm.score(chosen, start), rm.score(rejected, start))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def dpo_step(
    policy: GPT,
    ref: GPT,
    optimizer: torch.optim.Optimizer,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    prompt_len: int,
    beta: float,
) -> float:
    """One step of the DPO loss on ``(B, P + n)`` chosen and rejected sequences."""
    if chosen.shape != rejected.shape:
        raise ValueError(
            f"chosen {tuple(chosen.shape)} and rejected {tuple(rejected.shape)} differ"
        )
    _no_dropout(policy=policy, ref=ref)
    with torch.no_grad():
        ref_c = response_logprobs(ref, chosen, prompt_len).sum(-1)
        ref_r = response_logprobs(ref, rejected, prompt_len).sum(-1)
    logp_c = response_logprobs(policy, chosen, prompt_len).sum(-1)
    logp_r = response_logprobs(policy, rejected, prompt_len).sum(-1)
    loss = dpo_loss(logp_c, logp_r, ref_c, ref_r, beta)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


@dataclass
class LMPPOConfig:
    """RLHF-PPO's settings. One iteration samples ``batch`` responses of ``n_new`` tokens and takes
    ``epochs`` full-batch steps on them."""

    beta: float = 0.1
    iterations: int = 100
    batch: int = 64
    n_new: int = 32
    epochs: int = 4
    lr: float = 1e-4
    value_lr: float = 1e-3
    clip: float = 0.2
    lam: float = 0.95
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if min(self.iterations, self.batch, self.n_new, self.epochs) < 1:
            raise ValueError("iterations, batch, n_new and epochs must be >= 1")


@dataclass
class LMPPOHistory:
    """Per iteration, means over the iteration's samples (before its update)."""

    score: list[float] = field(default_factory=list)  # the reward model's score r(x, y)
    kl: list[float] = field(default_factory=list)  # sum_t log pi/pi_ref: estimates KL(pi || ref)
    objective: list[float] = field(default_factory=list)  # score - beta * kl
    extra: list[float] = field(default_factory=list)  # what `track` returned, if given


def rlhf_ppo_lm(
    policy: GPT,
    ref: GPT,
    critic: ScalarHead,
    reward_fn: Callable[[torch.Tensor], torch.Tensor],
    prompt_fn: Callable[[int], torch.Tensor],
    config: LMPPOConfig,
    generator: torch.Generator,
    *,
    track: Callable[[torch.Tensor], float] | None = None,
    progress: bool = False,
) -> LMPPOHistory:
    """RLHF with PPO on a GPT; ``policy`` and ``critic`` are trained in place.

    Args:
        policy, ref: the model being tuned and a frozen copy of where it started.
        critic: the value head, ``critic(seqs)[:, t]`` the value of the state after token ``t``.
        reward_fn: ``(B, P + n)`` sequences -> ``(B,)`` scores (a reward model, no gradient).
        prompt_fn: ``B`` -> ``(B, P)`` prompts.
        track: ``(B, P + n)`` sequences -> a number to record, e.g. a score the reward model
            stands in for.

    Each iteration: sample, score, give each token :func:`kl_shaped_rewards`, take the values of
    the states before each response token, run GAE (``gamma = 1``), and take ``epochs`` steps of
    PPO's clipped loss (policy) and the squared error to the returns (critic).
    """
    c = config
    _no_dropout(policy=policy, ref=ref, critic=critic)
    p_opt = torch.optim.Adam(policy.parameters(), lr=c.lr)
    v_opt = torch.optim.Adam(critic.parameters(), lr=c.value_lr)
    hist = LMPPOHistory()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=c.iterations, desc="RLHF-PPO")
    for _ in range(c.iterations):
        prompts = prompt_fn(c.batch)
        P = prompts.shape[1]
        seqs = sample_responses(policy, prompts, c.n_new, generator)
        with torch.no_grad():
            old = response_logprobs(policy, seqs, P)
            ref_lp = response_logprobs(ref, seqs, P)
            score = reward_fn(seqs).to(old.dtype)
            mask = torch.ones_like(old)
            rewards = kl_shaped_rewards(old, ref_lp, score, mask, c.beta)
            values = response_values(critic, seqs, P)
            next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], 1)
            done = torch.zeros_like(old, dtype=torch.bool)
            done[:, -1] = True
            adv, ret = gae(rewards.T, values.T, next_values.T, done.T, done.T, 1.0, c.lam)
            adv, ret = adv.T, ret.T
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            kl = (old - ref_lp).sum(-1).mean().item()
        hist.score.append(score.mean().item())
        hist.kl.append(kl)
        hist.objective.append(hist.score[-1] - c.beta * kl)
        if track is not None:
            hist.extra.append(float(track(seqs)))
        for _ in range(c.epochs):
            new = response_logprobs(policy, seqs, P)
            loss = ppo_clip_loss(new.reshape(-1), old.reshape(-1), adv.reshape(-1), c.clip)
            p_opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), c.max_grad_norm)
            p_opt.step()
            v_loss = ((response_values(critic, seqs, P) - ret) ** 2).mean()
            v_opt.zero_grad()
            v_loss.backward()
            nn.utils.clip_grad_norm_(critic.parameters(), c.max_grad_norm)
            v_opt.step()
        if bar is not None:
            bar.set_postfix(score=f"{hist.score[-1]:.3f}", kl=f"{kl:.2f}")
            bar.update()
    if bar is not None:
        bar.close()
    return hist
