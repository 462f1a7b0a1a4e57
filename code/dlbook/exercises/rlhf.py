"""Checkers for Chapter 6's exercises: the Bradley-Terry loss, the DPO loss, RLHF's KL-shaped
per-token rewards and the exact best-of-n distribution.

The references are not the formulas the student writes: both losses are PyTorch's
``binary_cross_entropy_with_logits`` with target 1 on the difference (of rewards, of implied
rewards), the per-token rewards are built one token at a time by explicit loops over the batch and
the mask, and the best-of-n distribution is found by enumerating every ``n``-tuple of draws.
Inputs are float64 tensors, so that the comparisons can be tight. Each checker names the plausible
mistakes it recognises; ``EXERCISES`` maps each exercise's name to its
:class:`~dlbook.exercises.checker.Exercise`.

Derived in: Chapter 6, *From GPT to an assistant*.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from dlbook.exercises.checker import Case, CheckReport, Exercise, Mistake

__all__ = [
    "BEST_OF_N_MISTAKES",
    "BRADLEY_TERRY_MISTAKES",
    "DPO_MISTAKES",
    "EXERCISES",
    "KL_SHAPED_MISTAKES",
    "best_of_n_by_enumeration",
    "best_of_n_cases",
    "bradley_terry_cases",
    "check_best_of_n_probs",
    "check_bradley_terry_loss",
    "check_dpo_loss",
    "check_kl_shaped_rewards",
    "dpo_cases",
    "kl_shaped_cases",
]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, g: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=g, dtype=torch.float64)


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _bce_target_one(logits: torch.Tensor) -> float:
    """``-mean log sigmoid(logits)``, as PyTorch's binary cross-entropy with every label 1."""
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)).item()


def _naive_neg_log_sigmoid(x: torch.Tensor) -> float:
    """``-mean log(sigmoid(x))`` as written: ``sigmoid(-800)`` rounds to 0 and its log to -inf."""
    return -torch.log(torch.sigmoid(x)).mean().item()


# ----------------------------------------------------------------------------- Bradley-Terry


def bradley_terry_cases(seed: int = 0) -> list[Case]:
    """``(r_chosen, r_rejected)``: float64 ``(B,)`` rewards of preference pairs, one extreme."""
    g = _gen(seed)
    return [
        Case(args=(_randn(8, g=g), _randn(8, g=g)), name="8 pairs"),
        Case(args=(_randn(16, g=g, scale=4.0), _randn(16, g=g, scale=4.0)), name="16 spread-out"),
        Case(args=(_t([2.0, 1.5, 3.0]), _t([-1.0, 0.5, 1.0])), name="the chosen always ahead"),
        Case(
            args=(_t([-400.0, 3.0, 0.5]), _t([400.0, -1.0, 0.5])),
            name="a difference of -800 (no overflow!)",
        ),
        Case(args=(_t([0.3]), _t([1.2])), name="a single pair"),
    ]


def _bradley_terry_ref(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> float:
    return _bce_target_one(r_chosen - r_rejected)


BRADLEY_TERRY_MISTAKES = [
    Mistake(
        "the sign flipped (r_rejected - r_chosen)",
        lambda rc, rr: _bce_target_one(rr - rc),
        "the model says P(y_c preferred to y_r) = sigmoid(r(y_c) - r(y_r)): the chosen "
        "response's reward comes first, so the loss falls as the chosen one pulls ahead.",
    ),
    Mistake(
        "a sum instead of a mean",
        lambda rc, rr: _bce_target_one(rc - rr) * len(rc),
        "the loss is an average over the pairs: take the mean, not the sum, so that it does not "
        "grow with the batch size.",
    ),
    Mistake(
        "the sigmoid without the log",
        lambda rc, rr: -torch.sigmoid(rc - rr).mean().item(),
        "the loss is the negative *log*-likelihood: -mean log sigmoid(r_c - r_r), not "
        "-mean sigmoid(r_c - r_r).",
    ),
    Mistake(
        "each response classified on its own",
        lambda rc, rr: -(F.logsigmoid(rc) + F.logsigmoid(-rr)).mean().item() / 2,
        "that is a classifier of good (chosen, label 1) and bad (rejected, label 0) responses; "
        "Bradley-Terry compares the two responses of a pair: one sigmoid of the *difference* "
        "r_c - r_r per pair (only differences of rewards are identified).",
    ),
    Mistake(
        "log of the sigmoid computed directly",
        lambda rc, rr: _naive_neg_log_sigmoid(rc - rr),
        "log(sigmoid(x)) rounds to log(0) = -inf when x is very negative; use "
        "F.logsigmoid(x), or write -log sigmoid(x) as softplus(-x).",
    ),
]


BRADLEY_TERRY_LOSS = Exercise(
    "bradley_terry_loss",
    bradley_terry_cases,
    _bradley_terry_ref,
    BRADLEY_TERRY_MISTAKES,
    title="Bradley-Terry loss",
)


def check_bradley_terry_loss(fn: Callable[..., torch.Tensor]) -> CheckReport:
    """Check ``fn(r_chosen (B,), r_rejected (B,)) -> -mean log sigmoid(r_c - r_r)``, a scalar,
    stable for any rewards."""
    return BRADLEY_TERRY_LOSS.check(fn)


# ----------------------------------------------------------------------------- DPO


def dpo_cases(seed: int = 0) -> list[Case]:
    """``(logp_c, logp_r, ref_logp_c, ref_logp_r, beta)``: float64 ``(B,)`` sequence
    log-probabilities under the policy and the reference, and ``beta`` (never 1)."""
    g = _gen(seed)
    cases = []
    for b, beta, name in [
        (8, 0.1, "8 pairs, beta = 0.1"),
        (16, 0.5, "16 pairs, beta = 0.5"),
        (4, 2.0, "4 pairs, beta = 2"),
    ]:
        logp_c = -20.0 - _randn(b, g=g, scale=6.0).abs()
        logp_r = -20.0 - _randn(b, g=g, scale=6.0).abs()
        ref_c = logp_c + _randn(b, g=g, scale=2.0)
        ref_r = logp_r + _randn(b, g=g, scale=2.0)
        cases.append(Case(args=(logp_c, logp_r, ref_c, ref_r, beta), name=name))
    logp_c, logp_r = _t([-12.0, -30.0, -7.5]), _t([-9.0, -25.0, -40.0])
    cases.append(
        Case(
            args=(logp_c, logp_r, logp_c.clone(), logp_r.clone(), 0.1),
            name="the policy equals the reference (the start of training)",
        )
    )
    cases.append(
        Case(
            args=(
                _t([-900.0, -20.0]),
                _t([-50.0, -22.0]),
                _t([-100.0, -21.0]),
                _t([-850.0, -23.0]),
                0.5,
            ),
            name="a margin of -800 (no overflow!)",
        )
    )
    return cases


def _implied_margin(lc, lr, rc, rr, beta):
    return beta * ((lc - rc) - (lr - rr))


def _dpo_ref(lc, lr, rc, rr, beta) -> float:
    return _bce_target_one(_implied_margin(lc, lr, rc, rr, beta))


DPO_MISTAKES = [
    Mistake(
        "the reference model forgotten",
        lambda lc, lr, rc, rr, beta: _bce_target_one(beta * (lc - lr)),
        "DPO's implied reward is beta log(pi(y) / pi_ref(y)): subtract the reference's "
        "log-probability from the policy's, for the chosen and for the rejected response.",
    ),
    Mistake(
        "the margin's sign flipped (pi_ref over pi, or chosen and rejected swapped)",
        lambda lc, lr, rc, rr, beta: _bce_target_one(-_implied_margin(lc, lr, rc, rr, beta)),
        "the logit is beta [(log pi(y_c) - log pi_ref(y_c)) - (log pi(y_r) - log pi_ref(y_r))]: "
        "policy minus reference, chosen minus rejected.",
    ),
    Mistake(
        "the reference's margin added, not subtracted",
        lambda lc, lr, rc, rr, beta: _bce_target_one(beta * ((lc - lr) + (rc - rr))),
        "each log-ratio is log pi - log pi_ref: the reference's log-probabilities enter with a "
        "minus sign, so its margin log pi_ref(y_c) - log pi_ref(y_r) is subtracted.",
    ),
    Mistake(
        "beta missing",
        lambda lc, lr, rc, rr, beta: _bce_target_one(_implied_margin(lc, lr, rc, rr, 1.0)),
        "the implied reward is beta times the log-ratio: multiply the margin by beta.",
    ),
    Mistake(
        "divided by beta instead of multiplying",
        lambda lc, lr, rc, rr, beta: _bce_target_one(_implied_margin(lc, lr, rc, rr, 1.0) / beta),
        "from pi* = pi_ref exp(r / beta) / Z, the reward is r = beta log(pi* / pi_ref) + beta log "
        "Z: beta multiplies the log-ratio.",
    ),
    Mistake(
        "a ratio of log-probabilities",
        lambda lc, lr, rc, rr, beta: _bce_target_one(beta * (lc / rc - lr / rr)),
        "log(pi / pi_ref) is a difference of log-probabilities, log pi - log pi_ref, not the "
        "quotient log pi / log pi_ref.",
    ),
    Mistake(
        "log of the sigmoid computed directly",
        lambda lc, lr, rc, rr, beta: _naive_neg_log_sigmoid(_implied_margin(lc, lr, rc, rr, beta)),
        "log(sigmoid(x)) rounds to log(0) = -inf when the margin is very negative; use "
        "F.logsigmoid(x), or write -log sigmoid(x) as softplus(-x).",
    ),
]


DPO_LOSS = Exercise("dpo_loss", dpo_cases, _dpo_ref, DPO_MISTAKES, title="DPO loss")


def check_dpo_loss(fn: Callable[..., torch.Tensor]) -> CheckReport:
    """Check ``fn(logp_c, logp_r, ref_logp_c, ref_logp_r (B,) each, beta) -> scalar`` DPO loss."""
    return DPO_LOSS.check(fn)


# ----------------------------------------------------------------------------- KL-shaped rewards


def kl_shaped_cases(seed: int = 0) -> list[Case]:
    """``(logp, ref_logp, score, mask, beta)``: ``(B, T)`` float64 token log-probabilities
    (random everywhere, inside the mask or not), ``(B,)`` scores, a float64 ``(B, T)`` mask with
    1.0 on the response tokens, and ``beta``."""
    g = _gen(seed)
    layouts = [
        ([(0, 4), (0, 4), (0, 4)], 4, 0.1, "3 responses, no padding"),
        ([(2, 7), (2, 5), (2, 3), (2, 6)], 7, 0.05, "a 2-token prompt, responses of 5, 3, 1, 4"),
        ([(0, 6), (0, 2), (0, 4)], 6, 0.5, "padding after responses of 6, 2, 4"),
        ([(1, 2)], 3, 0.2, "one response of one token, mid-sequence"),
    ]
    cases = []
    for spans, T, beta, name in layouts:
        B = len(spans)
        mask = torch.zeros(B, T, dtype=torch.float64)
        for b, (start, end) in enumerate(spans):
            mask[b, start:end] = 1.0
        logp = -_randn(B, T, g=g).abs() - 0.1
        ref_logp = -_randn(B, T, g=g).abs() - 0.1
        score = _randn(B, g=g, scale=2.0)
        cases.append(Case(args=(logp, ref_logp, score, mask, beta), name=name))
    return cases


def _kl_shaped_loops(logp, ref_logp, score, mask, beta) -> torch.Tensor:
    """Token by token: ``-beta (log pi - log pi_ref)`` inside the mask, the score added at each
    row's last masked position, 0 elsewhere."""
    B, T = logp.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        last = max(t for t in range(T) if mask[b, t] > 0)
        for t in range(T):
            if mask[b, t] > 0:
                out[b, t] = -beta * (float(logp[b, t]) - float(ref_logp[b, t]))
        out[b, last] += float(score[b])
    return out


def _last_index(mask: torch.Tensor) -> torch.Tensor:
    t = torch.arange(mask.shape[1])
    return (mask * (t + 1)).argmax(-1)


def _at(index: torch.Tensor, value: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A ``(B, T)`` tensor with ``value[b]`` at ``(b, index[b])`` and 0 elsewhere."""
    out = torch.zeros(shape, dtype=torch.float64)
    out[torch.arange(shape[0]), index] = value
    return out


def _kl_shaped_variant(kind: str):
    def wrong(logp, ref_logp, score, mask, beta):
        log_ratio = logp - ref_logp
        penalty = -beta * log_ratio * mask
        last = _last_index(mask)
        if kind == "score-everywhere":
            return penalty + score[:, None] * mask
        if kind == "score-at-T-1":
            return penalty + _at(torch.full_like(last, logp.shape[1] - 1), score, logp.shape)
        if kind == "score-at-first":
            return penalty + _at(mask.argmax(-1), score, logp.shape)
        if kind == "plus":
            return -penalty + _at(last, score, logp.shape)
        if kind == "no-ref":
            return -beta * logp * mask + _at(last, score, logp.shape)
        if kind == "summed-over-time":
            return _at(last, score + penalty.sum(-1), logp.shape)
        if kind == "summed-over-batch":
            return -beta * (log_ratio * mask).sum(0, keepdim=True) * mask + _at(
                last, score, logp.shape
            )
        if kind == "unmasked":
            return -beta * log_ratio + _at(last, score, logp.shape)
        raise AssertionError(kind)

    return wrong


KL_SHAPED_MISTAKES = [
    Mistake(
        "the score added at every token",
        _kl_shaped_variant("score-everywhere"),
        "the reward model scores the whole response once: add score[b] at the row's last "
        "response token only, so that the rewards of a row sum to score - beta log(pi / pi_ref).",
    ),
    Mistake(
        "the score at position T - 1 whatever the mask",
        _kl_shaped_variant("score-at-T-1"),
        "responses end at different positions: the score goes at each row's *last masked* "
        "token, which is before T - 1 when the row is padded.",
    ),
    Mistake(
        "the score at the first response token",
        _kl_shaped_variant("score-at-first"),
        "mask.argmax(-1) finds the *first* 1 of a row; the score belongs at the last one, e.g. "
        "(mask * (t + 1)).argmax(-1) with t = arange(T).",
    ),
    Mistake(
        "the KL penalty with the wrong sign",
        _kl_shaped_variant("plus"),
        "the penalty pulls the policy back to the reference: -beta (log pi - log pi_ref), "
        "negative where the policy is more likely than the reference.",
    ),
    Mistake(
        "the reference forgotten (-beta log pi)",
        _kl_shaped_variant("no-ref"),
        "the penalty is on the log-ratio log pi - log pi_ref; -beta log pi alone is an entropy "
        "bonus, which pulls towards uniform, not towards the reference.",
    ),
    Mistake(
        "the penalty summed over time and put at one token",
        _kl_shaped_variant("summed-over-time"),
        "the KL penalty is per token: -beta (log pi - log pi_ref) at *every* response token; only "
        "the score sits at the last one.",
    ),
    Mistake(
        "the penalty summed over the batch",
        _kl_shaped_variant("summed-over-batch"),
        "each sequence pays for its own tokens: do not sum the log-ratios over the batch axis "
        "(dim 0); keep the (B, T) shape, one penalty per token of each row.",
    ),
    Mistake(
        "the penalty not zeroed outside the mask",
        _kl_shaped_variant("unmasked"),
        "prompt and padding tokens were not generated by the policy: multiply the penalty by the "
        "mask, so those positions get 0.",
    ),
]


KL_SHAPED_REWARDS = Exercise(
    "kl_shaped_rewards",
    kl_shaped_cases,
    _kl_shaped_loops,
    KL_SHAPED_MISTAKES,
    title="KL-shaped per-token rewards",
)


def check_kl_shaped_rewards(fn: Callable[..., torch.Tensor]) -> CheckReport:
    """Check ``fn(logp (B, T), ref_logp (B, T), score (B,), mask (B, T), beta) -> (B, T)``."""
    return KL_SHAPED_REWARDS.check(fn)


# ----------------------------------------------------------------------------- best-of-n


def best_of_n_cases(seed: int = 0) -> list[Case]:
    """``(ref_probs (N,), reward (N,), n)``: float64 probabilities that sum to 1, distinct
    rewards in no particular order, and ``n``; small enough to enumerate every ``n``-tuple."""
    g = _gen(seed)
    cases = []
    for N, n, name in [
        (4, 1, "n = 1 is the reference"),
        (5, 2, "5 items, n = 2"),
        (5, 3, "5 items, n = 3"),
        (6, 4, "6 items, n = 4"),
    ]:
        p = torch.rand(N, generator=g, dtype=torch.float64) + 0.1
        cases.append(Case(args=(p / p.sum(), _randn(N, g=g), n), name=name))
    likely_bad = _t([0.4, 0.3, 0.15, 0.1, 0.05])
    cases.append(
        Case(
            args=(likely_bad, _t([-1.0, 0.2, -0.5, 2.0, 1.0]), 3),
            name="the likeliest item has the lowest reward",
        )
    )
    return cases


def best_of_n_by_enumeration(ref_probs: torch.Tensor, reward: torch.Tensor, n: int) -> torch.Tensor:
    """Every ``n``-tuple of draws, its probability, and the item with the highest reward in it:
    the exact best-of-``n`` distribution, ``(N,)``. Costs ``N ** n`` steps."""
    p, r = ref_probs.tolist(), reward.tolist()
    out = [0.0] * len(p)
    for draws in itertools.product(range(len(p)), repeat=n):
        prob = 1.0
        for i in draws:
            prob *= p[i]
        best = max(draws, key=lambda i: r[i])
        out[best] += prob
    return torch.tensor(out, dtype=torch.float64)


def _best_of_n_variant(kind: str):
    def wrong(ref_probs, reward, n):
        if kind == "p^n":
            return ref_probs**n / (ref_probs**n).sum()
        if kind == "by-prob":
            order = torch.argsort(ref_probs)
        elif kind == "descending":
            order = torch.argsort(reward, descending=True)
        else:
            order = torch.argsort(reward)
        p = ref_probs[order]
        cdf = p.cumsum(0)
        below = cdf - p  # F(y^-), the probability of a lower reward
        if kind == "cdf":
            sorted_out = cdf**n
        elif kind == "off-by-one":
            sorted_out = below**n - torch.cat([below.new_zeros(1), below[:-1]]) ** n
        elif kind == "one-copy":
            sorted_out = n * p * below ** (n - 1)
        else:
            sorted_out = cdf**n - below**n
        out = torch.empty_like(sorted_out)
        out[order] = sorted_out
        return out

    return wrong


BEST_OF_N_MISTAKES = [
    Mistake(
        "F(y)^n, not its increment",
        _best_of_n_variant("cdf"),
        "F(y)^n is the probability that the best of n draws is *at most* y; the probability "
        "that it *is* y is F(y)^n - F(y^-)^n, with F(y^-) the probability of a lower reward.",
    ),
    Mistake(
        "p^n renormalised",
        _best_of_n_variant("p^n"),
        "best-of-n depends on the rewards only through their order: sort by reward, then "
        "P(best = y) = F(y)^n - F(y^-)^n. p^n is the probability that all n draws are y.",
    ),
    Mistake(
        "sorted by probability, not by reward",
        _best_of_n_variant("by-prob"),
        "the cumulative F(y) = P(r(Y) <= r(y)) adds up the probabilities of the items with "
        "*lower reward*: sort by reward, not by probability.",
    ),
    Mistake(
        "sorted from the best reward down (worst-of-n)",
        _best_of_n_variant("descending"),
        "with the cumulative sum taken from the highest reward down, F(y)^n - F(y^-)^n is the "
        "distribution of the *worst* of n draws: sort by increasing reward.",
    ),
    Mistake(
        "off by one in the cumulative sum (F(y^-) where F(y) belongs)",
        _best_of_n_variant("off-by-one"),
        "F(y) includes y itself: F(y) = F(y^-) + p(y). The best is y with probability "
        "F(y)^n - F(y^-)^n; with F(y^-)^n - F(y^--)^n each item gets its lower neighbour's share.",
    ),
    Mistake(
        "exactly one draw of y (n p F(y^-)^(n-1))",
        _best_of_n_variant("one-copy"),
        "y can be drawn more than once among the n: P(best = y) = F(y)^n - F(y^-)^n counts every "
        "tuple whose best is y; n p(y) F(y^-)^(n-1) only those with y drawn exactly once.",
    ),
]


BEST_OF_N_PROBS = Exercise(
    "best_of_n_probs",
    best_of_n_cases,
    best_of_n_by_enumeration,
    BEST_OF_N_MISTAKES,
    title="best-of-n distribution",
)


def check_best_of_n_probs(fn: Callable[..., torch.Tensor]) -> CheckReport:
    """Check ``fn(ref_probs (N,), reward (N,), n) -> (N,)`` probabilities of best-of-``n``,
    against the enumeration of every ``n``-tuple of draws."""
    return BEST_OF_N_PROBS.check(fn)


EXERCISES = {e.name: e for e in (BRADLEY_TERRY_LOSS, DPO_LOSS, KL_SHAPED_REWARDS, BEST_OF_N_PROBS)}
