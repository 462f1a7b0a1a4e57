"""A language small enough to enumerate, where every claim of Chapter 6 can be checked exactly.

:class:`TinyLanguage` holds every sequence of ``length`` symbols over ``vocab`` symbols (3 and 4
give 81 sequences). A policy is autoregressive, as a GPT is: :class:`TabularPolicy` keeps one row
of logits per prefix, so it can represent *every* distribution over the sequences, and the
closed-form optimum of the KL-regularised objective is within its reach. On this language:

- :func:`kl_optimum` is ``pi*(y) = pi_ref(y) exp(r(y) / beta) / Z``, the maximiser of
  :func:`regularised_objective` ``E_pi[r] - beta KL(pi || pi_ref)``;
- :func:`best_of_n` is the exact distribution of best-of-``n`` sampling from a reference, and
  :func:`best_of_n_kl_bound` the ``log n - (n - 1) / n`` its KL approaches;
- :func:`sample_preferences` labels pairs with Bradley-Terry noise and :func:`fit_rewards` recovers
  the rewards from them; :func:`expected_pair_loss` is the same loss under infinitely many pairs;
- :func:`rlhf_ppo` runs RLHF with PPO, token by token, reusing Chapter 5's GAE and clipped loss.

Everything works on a vector of ``N`` log-probabilities, one per sequence in the language's order.

Derived in: Chapter 6, *From GPT to an assistant*.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from dlbook.rl.pg import gae
from dlbook.rl.ppo import ppo_clip_loss
from dlbook.rlhf.losses import bradley_terry_loss, kl_shaped_rewards

__all__ = [
    "PPOHistory",
    "TabularPolicy",
    "TinyLanguage",
    "best_of_n",
    "best_of_n_kl_bound",
    "expected_pair_loss",
    "fit_rewards",
    "kl",
    "kl_optimum",
    "regularised_objective",
    "rlhf_ppo",
    "sample_preferences",
]


class TinyLanguage:
    """Every sequence of ``length`` symbols from ``range(vocab)``, in lexicographic order.

    Attributes:
        sequences: ``(N, length)`` long tensor, ``N = vocab ** length``.
        prefix_rows: ``(N, length)``: entry ``(i, t)`` is the row, in a table of
            :attr:`n_prefixes` rows, of sequence ``i``'s prefix ``y_<t`` (row 0 is the empty one).
    """

    def __init__(self, vocab: int = 3, length: int = 4) -> None:
        if vocab < 2 or length < 1 or vocab**length > 100_000:
            raise ValueError(
                "expected vocab >= 2, length >= 1 and at most 100000 sequences, got "
                f"vocab={vocab}, "
                f"length={length}"
            )
        self.vocab, self.length = vocab, length
        digits = torch.arange(vocab**length).unsqueeze(1) // vocab ** torch.arange(
            length - 1, -1, -1
        )
        self.sequences = digits % vocab
        offsets = [(vocab**t - 1) // (vocab - 1) for t in range(length)]  # rows before length t
        rows = torch.zeros_like(self.sequences)
        for t in range(1, length):
            value = (self.sequences[:, :t] * vocab ** torch.arange(t - 1, -1, -1)).sum(1)
            rows[:, t] = offsets[t] + value
        self.prefix_rows = rows
        self.n_prefixes = (vocab**length - 1) // (vocab - 1)

    def __len__(self) -> int:
        return self.sequences.shape[0]

    def index(self, seqs: torch.Tensor) -> torch.Tensor:
        """The position of each row of ``seqs`` ``(B, length)`` in :attr:`sequences`: ``(B,)``."""
        if seqs.dim() != 2 or seqs.shape[1] != self.length:
            raise ValueError(f"expected (B, {self.length}) sequences, got {tuple(seqs.shape)}")
        return (seqs * self.vocab ** torch.arange(self.length - 1, -1, -1)).sum(1)

    def text(self, i: int, symbols: str = "abcdefghij") -> str:
        """Sequence ``i`` written with letters: ``'abca'``."""
        return "".join(symbols[int(s)] for s in self.sequences[i])


class TabularPolicy(nn.Module):
    """An autoregressive policy with one row of logits per prefix: ``pi(y_t | y_<t)``.

    ``logits`` is ``(n_prefixes, vocab)``; zeros are the uniform distribution.
    """

    def __init__(self, lang: TinyLanguage, logits: torch.Tensor | None = None) -> None:
        super().__init__()
        shape = (lang.n_prefixes, lang.vocab)
        if logits is None:
            logits = torch.zeros(shape, dtype=torch.float64)
        if tuple(logits.shape) != shape:
            raise ValueError(f"expected logits of shape {shape}, got {tuple(logits.shape)}")
        self.lang = lang
        self.logits = nn.Parameter(logits.clone())

    def token_logprobs(self, seqs: torch.Tensor) -> torch.Tensor:
        """``(B, length)`` sequences -> ``(B, length)`` ``log pi(y_t | y_<t)``."""
        rows = self.lang.prefix_rows[self.lang.index(seqs)]
        logp = torch.log_softmax(self.logits, -1)[rows]  # (B, length, vocab)
        return logp.gather(-1, seqs.unsqueeze(-1)).squeeze(-1)

    def logprobs(self) -> torch.Tensor:
        """``(N,)``: ``log pi(y)`` of every sequence of the language."""
        return self.token_logprobs(self.lang.sequences).sum(-1)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` sequences drawn token by token: ``(n, length)``."""
        lang = self.lang
        seqs = torch.zeros(n, lang.length, dtype=torch.long)
        row = torch.zeros(n, dtype=torch.long)
        with torch.no_grad():
            p = torch.softmax(self.logits, -1)
            for t in range(lang.length):
                seqs[:, t] = torch.multinomial(p[row], 1, generator=generator).squeeze(1)
                row = row * lang.vocab + seqs[:, t] + 1  # the child's row in the prefix table
        return seqs


def _check_logps(**logps: torch.Tensor) -> None:
    for name, lp in logps.items():
        if lp.dim() != 1:
            raise ValueError(
                f"{name} must be a vector of log-probabilities (N,), got {tuple(lp.shape)}"
            )
        if torch.isnan(lp).any():
            raise ValueError(f"{name} holds NaN")
        total = torch.logsumexp(lp.double(), 0).item()
        if not abs(total) <= 1e-6:
            raise ValueError(f"{name} must be normalised: logsumexp is {total:.3g}, not 0")


def kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """``KL(p || q) = sum_y p(y) (log p(y) - log q(y))``, exactly, for ``(N,)`` log-probs."""
    _check_logps(logp=logp, logq=logq)
    p = logp.exp()
    return (p * (logp - logq)).where(p > 0, torch.zeros_like(p)).sum()


def kl_optimum(ref_logp: torch.Tensor, reward: torch.Tensor, beta: float) -> torch.Tensor:
    """``log pi*(y) = log pi_ref(y) + r(y) / beta - log Z``: the maximiser of the KL-regularised
    objective, ``(N,)``."""
    _check_logps(ref_logp=ref_logp)
    if reward.shape != ref_logp.shape or beta <= 0:
        raise ValueError(
            f"expected reward {tuple(ref_logp.shape)} and beta > 0, got "
            f"{tuple(reward.shape)}, {beta}"
        )
    z = ref_logp + reward / beta
    return z - torch.logsumexp(z, 0)


def regularised_objective(
    logp: torch.Tensor, ref_logp: torch.Tensor, reward: torch.Tensor, beta: float
) -> torch.Tensor:
    """``E_pi[r] - beta KL(pi || pi_ref)``, exactly."""
    return (logp.exp() * reward).sum() - beta * kl(logp, ref_logp)


def best_of_n(ref_logp: torch.Tensor, reward: torch.Tensor, n: int) -> torch.Tensor:
    """The exact distribution of best-of-``n``: draw ``n`` sequences from the reference, keep the
    one with the highest reward (ties broken uniformly at random). ``(N,)`` log-probabilities.

    With the sequences sorted by reward and ``F`` the reference's cumulative probability, the
    best reward is at most a level ``v`` with probability ``F(v)^n``; the level's share
    ``F(v)^n - F(v^-)^n`` is spread over its sequences in proportion to their reference
    probability.
    """
    _check_logps(ref_logp=ref_logp)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    p = ref_logp.double().exp()
    levels, inverse = torch.unique(reward.double(), return_inverse=True)
    mass = torch.zeros(len(levels), dtype=torch.float64).index_add_(0, inverse, p)
    cdf = mass.cumsum(0).clamp(max=1.0)
    below = torch.cat([cdf.new_zeros(1), cdf[:-1]])
    share = cdf**n - below**n  # P(the best reward is this level)
    # a level the reference never reaches (mass 0) is never the best: probability 0, not 0/0
    per_mass = torch.where(mass > 0, share / mass.clamp(min=1e-300), torch.zeros_like(mass))
    out = p * per_mass[inverse]
    return torch.log(out).to(ref_logp.dtype)


def best_of_n_kl_bound(n: int) -> float:
    """``log n - (n - 1) / n``: best-of-``n``'s KL to the reference for a continuous reward, and
    an upper bound when rewards can tie (Beirami et al. 2024)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return math.log(n) - (n - 1) / n


def sample_preferences(
    lang_logp: torch.Tensor, reward: torch.Tensor, n_pairs: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs drawn from a distribution (``(N,)`` log-probabilities) and labelled by Bradley-Terry.

    Both members of a pair come from the distribution independently; the first is preferred with
    probability ``sigmoid(r_1 - r_2)``.

    Returns:
        ``(chosen, rejected)``: ``(n_pairs,)`` indices of sequences.
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    p = lang_logp.double().exp()
    a = torch.multinomial(p, n_pairs, replacement=True, generator=generator)
    b = torch.multinomial(p, n_pairs, replacement=True, generator=generator)
    first = torch.rand(n_pairs, generator=generator, dtype=torch.float64) < torch.sigmoid(
        reward.double()[a] - reward.double()[b]
    )
    return torch.where(first, a, b), torch.where(first, b, a)


def fit_rewards(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    n_items: int,
    *,
    features: torch.Tensor | None = None,
    l2: float = 0.0,
) -> torch.Tensor:
    """A Bradley-Terry reward model fitted by maximum likelihood to pairs: ``(n_items,)`` rewards.

    Without ``features`` the model is a table, one free reward per item. With ``features``
    ``(n_items, k)``, it is linear, ``r = features @ w``: a reward model that can express only what
    the features see. Rewards are identifiable only up to a constant: the result has mean zero.
    ``l2`` adds ``l2 * mean(w^2)``, which keeps items that always win (or were never seen) finite.
    """
    if chosen.shape != rejected.shape or chosen.dim() != 1:
        raise ValueError(
            f"expected two (P,) index vectors, got {tuple(chosen.shape)}, {tuple(rejected.shape)}"
        )
    if features is None:
        features = torch.eye(n_items, dtype=torch.float64)
    if features.dim() != 2 or features.shape[0] != n_items:
        raise ValueError(f"features must be ({n_items}, k), got {tuple(features.shape)}")
    features = features.double()
    w = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w],
        lr=1.0,
        max_iter=500,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        r = features @ w
        loss = bradley_terry_loss(r[chosen], r[rejected]) + l2 * (w**2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        r = features @ w
        return r - r.mean()


def expected_pair_loss(
    implied: torch.Tensor, ref_logp: torch.Tensor, reward: torch.Tensor
) -> torch.Tensor:
    """The Bradley-Terry loss of ``implied`` rewards under infinitely many labelled pairs:

        sum_{y, y'} pi_ref(y) pi_ref(y') sigmoid(r(y) - r(y')) (-log sigmoid(h(y) - h(y')))

    with ``h = implied``. For a reward model, ``h`` is its table of rewards; for DPO, ``h = beta
    (log pi - log pi_ref)``: the same loss, which is the point of DPO.
    """
    _check_logps(ref_logp=ref_logp)
    w = ref_logp.exp()
    weight = w[:, None] * w[None, :] * torch.sigmoid(reward[:, None] - reward[None, :])
    return -(weight * nn.functional.logsigmoid(implied[:, None] - implied[None, :])).sum()


@dataclass
class PPOHistory:
    """What :func:`rlhf_ppo` records at every iteration (exact values on the whole language)."""

    kl_to_optimum: list[float] = field(default_factory=list)  # KL(pi || pi*); nan if beta = 0
    kl_to_ref: list[float] = field(default_factory=list)  # KL(pi || pi_ref)
    reward: list[float] = field(default_factory=list)  # E_pi[r]
    objective: list[float] = field(default_factory=list)  # E_pi[r] - beta KL(pi || pi_ref)
    extra: list[float] = field(default_factory=list)  # what `track` returned, if given


def rlhf_ppo(
    policy: TabularPolicy,
    ref: TabularPolicy,
    reward: torch.Tensor,
    beta: float,
    *,
    iterations: int = 150,
    batch: int = 256,
    epochs: int = 4,
    lr: float = 0.05,
    lam: float = 0.95,
    clip: float = 0.2,
    generator: torch.Generator,
    track: Callable[[torch.Tensor], float] | None = None,
    progress: bool = False,
) -> PPOHistory:
    """RLHF with PPO on the tiny language: tokens are actions, the prefix is the state.

    Each iteration samples ``batch`` sequences from the policy, gives each token the reward
    :func:`~dlbook.rlhf.losses.kl_shaped_rewards` (``-beta`` times the log-ratio at every token,
    ``r(y)`` added at the last), estimates advantages with Chapter 5's GAE (``gamma = 1``; the
    value of a prefix is a table, the "value head"), and takes ``epochs`` full-batch Adam steps
    on the clipped loss plus the value loss. ``policy`` is trained in place. ``track``, given the
    policy's ``(N,)`` log-probabilities, returns a number recorded in ``history.extra`` at every
    iteration (e.g. a score the reward stands in for).
    """
    lang = policy.lang
    if reward.shape != (len(lang),):
        raise ValueError(f"reward must be ({len(lang)},), got {tuple(reward.shape)}")
    values = torch.zeros(lang.n_prefixes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([policy.logits, values], lr=lr)
    ref_all = ref.logprobs().detach()
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    target = (
        kl_optimum(ref_all, reward, beta) if beta > 0 else None
    )  # beta = 0: no optimum to reach
    hist = PPOHistory()
    T = lang.length
    done = torch.zeros(T, batch, dtype=torch.bool)
    done[-1] = True  # a sequence ends after its last token

    @torch.no_grad()
    def record() -> None:
        """The exact values of the policy now, appended to the history."""
        logp_all = policy.logprobs()
        hist.kl_to_optimum.append(math.nan if target is None else kl(logp_all, target).item())
        hist.kl_to_ref.append(kl(logp_all, ref_all).item())
        hist.reward.append((logp_all.exp() * reward).sum().item())
        hist.objective.append(hist.reward[-1] - beta * hist.kl_to_ref[-1])
        if track is not None:
            hist.extra.append(float(track(logp_all)))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=iterations, desc="RLHF-PPO")
    for _ in range(iterations):
        record()
        with torch.no_grad():
            seqs = policy.sample(batch, generator)
            old = policy.token_logprobs(seqs)
            rew = kl_shaped_rewards(
                old,
                ref.token_logprobs(seqs),
                reward[lang.index(seqs)],
                torch.ones_like(old),
                beta,
            )
            rows = lang.prefix_rows[lang.index(seqs)]  # (B, T): the state before each token
            v = values[rows]
            next_v = torch.cat([v[:, 1:], torch.zeros(batch, 1, dtype=v.dtype)], 1)
            adv, ret = gae(rew.T, v.T, next_v.T, done, done, 1.0, lam)
            adv, ret = adv.T, ret.T
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        for _ in range(epochs):
            new = policy.token_logprobs(seqs)
            loss = ppo_clip_loss(new.reshape(-1), old.reshape(-1), adv.reshape(-1), clip)
            loss = loss + 0.5 * ((values[rows] - ret) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if bar is not None:
            bar.set_postfix(kl_to_opt=f"{hist.kl_to_optimum[-1]:.4f}")
            bar.update()
    if bar is not None:
        bar.close()
    record()
    return hist
