"""The Wasserstein GAN with a gradient penalty (WGAN-GP): the critic's loss, the penalty, training.

1. the losses: the critic maximises ``mean f(real) - mean f(fake)``, an estimate of the
   Wasserstein-1 distance when ``f`` is 1-Lipschitz (:func:`critic_loss`); the generator
   minimises ``-mean f(fake)``;
2. the gradient penalty that keeps ``f`` close to 1-Lipschitz, ``(|grad f(x_hat)| - 1)^2`` at
   random points ``x_hat`` between real and generated samples (:func:`gradient_penalty`);
3. :func:`train_wgan_gp`, which takes ``n_critic`` critic steps per generator step and returns the
   same :class:`dlbook.train.Run` as :func:`dlbook.gan.train_gan`.

Conventions: the batch is the leading axis; the critic ``f`` maps ``(B, ...)`` to ``(B,)`` real
scores (no sigmoid: any :class:`dlbook.gan.PackedDiscriminator` with ``pack=1`` serves).

Derived in: Chapter 4, *The Wasserstein distance and WGAN-GP*.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from dlbook.runtime import resolve_device, rng_scope

if TYPE_CHECKING:
    from dlbook.train import Run

__all__ = ["critic_loss", "gradient_penalty", "train_wgan_gp"]


def _check_scores(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> None:
    if real_scores.ndim != 1 or fake_scores.ndim != 1:
        raise ValueError(
            f"expected 1-D critic scores (B,), got {tuple(real_scores.shape)} and "
            f"{tuple(fake_scores.shape)}"
        )


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """``mean f(fake) - mean f(real)``: minus the critic's Wasserstein estimate. Scalar.

    Args:
        real_scores: ``(B,)`` the critic's scores ``f(x)`` on real samples.
        fake_scores: ``(B',)`` its scores ``f(G(z))`` on generated samples.

    Derived in: Chapter 4, *The Wasserstein distance and WGAN-GP*.
    """
    _check_scores(real_scores, fake_scores)
    return fake_scores.mean() - real_scores.mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """``mean_i (|grad f(x_hat_i)| - 1)^2`` at ``x_hat_i = eps_i real_i + (1 - eps_i) fake_i``.

    The gradient is taken with ``create_graph=True``, so the penalty can be backpropagated into
    the critic's parameters (a second derivative).

    Args:
        critic: ``f``, mapping ``(B, ...)`` to ``(B,)`` scores.
        real, fake: ``(B, ...)`` paired real and generated samples, same shape.
        eps: ``(B,)`` the mixing weights in [0, 1]; ``None``: drawn uniformly from torch's global
            generator.

    Returns:
        A scalar tensor.

    Derived in: Chapter 4, *The Wasserstein distance and WGAN-GP*.
    """
    if real.shape != fake.shape or real.ndim < 2:
        raise ValueError(
            f"real and fake must have the same shape (B, ...), got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    b = real.shape[0]
    if eps is None:
        eps = torch.rand(b, device=real.device, dtype=real.dtype)
    if eps.shape != (b,):
        raise ValueError(f"eps must have shape ({b},), got {tuple(eps.shape)}")
    if bool((eps < 0).any()) or bool((eps > 1).any()):
        raise ValueError("eps must lie in [0, 1]")
    w = eps.to(real.dtype).reshape(b, *([1] * (real.ndim - 1)))
    x_hat = (w * real.detach() + (1 - w) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    if scores.shape != (b,):
        raise ValueError(f"the critic must return ({b},) scores, got {tuple(scores.shape)}")
    return _penalty_at(scores, x_hat)


def _penalty_at(scores: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """``mean (|d scores_i / d x_hat_i| - 1)^2`` for per-sample scores ``(B,)`` of ``x_hat``."""
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.reshape(len(x_hat), -1).norm(dim=1) - 1) ** 2).mean()


def train_wgan_gp(
    generator: nn.Module,
    critic: nn.Module,
    sample_real: Callable[[int], torch.Tensor],
    *,
    z_dim: int,
    steps: int,
    n_critic: int = 5,
    gp_weight: float = 10.0,
    batch_size: int = 256,
    lr: float = 1e-4,
    critic_lr: float | None = None,
    betas: tuple[float, float] = (0.5, 0.9),
    lr_decay: bool = True,
    snapshot_every: int = 0,
    n_snapshot: int = 1000,
    device: torch.device | str | None = None,
    seed: int = 0,
    desc: str = "WGAN-GP",
    progress: str = "plot",
) -> Run:
    """``steps`` generator steps, each after ``n_critic`` critic steps, with Adam (WGAN-GP).

    Critic step: minimise :func:`critic_loss` ``+ gp_weight *`` :func:`gradient_penalty` on a
    fresh real batch and a fresh generated batch. Generator step: minimise ``-mean f(G(z))``.
    ``n_critic = 5``, ``lambda = 10``, ``lr = 1e-4`` and ``beta_2 = 0.9`` are the defaults of
    Gulrajani et al.'s Algorithm 1, which takes ``beta_1 = 0``; we keep the chapter's 0.5.

    Args:
        generator: ``(B, z_dim) -> (B, ...)``; trained in place.
        critic: ``(B, ...) -> (B,)`` scores; trained in place. It must score each sample on its
            own (no batch normalisation, which the WGAN-GP paper also leaves out of the critic):
            one call scores the real batch, the generated one and the interpolates together.
        sample_real: ``sample_real(n) -> (n, ...)`` real samples (on any device).
        z_dim: the noise dimension; the noise is standard normal.
        steps: number of generator steps.
        n_critic: critic steps per generator step.
        gp_weight: ``lambda``, the penalty's weight.
        batch_size, lr, betas: as in :func:`dlbook.gan.train_gan`, for both networks.
        critic_lr: the critic's learning rate if it differs from the generator's ``lr``.
        lr_decay: decay both learning rates linearly to 0 over the run.
        snapshot_every, n_snapshot, device, seed, desc, progress: as in
            :func:`dlbook.gan.train_gan`.

    Returns:
        A :class:`dlbook.train.Run`: ``model`` is the generator, in eval mode; ``history`` has,
        every 10 generator steps, ``"w_estimate"`` (the last critic step's
        ``mean f(real) - mean f(fake)``), ``"gp"`` (its penalty) and ``"g_loss"``; ``snapshots``
        is ``{step: (n_snapshot, ...) samples on the CPU}``.

    Derived in: Chapter 4, *The Wasserstein distance and WGAN-GP*.
    """
    from dlbook.train import Run, check_progress, eval_mode, train_loop

    if min(steps, n_critic, batch_size, z_dim, n_snapshot) < 1 or snapshot_every < 0:
        raise ValueError(
            "need steps, n_critic, batch_size, z_dim, n_snapshot >= 1 and snapshot_every >= 0; "
            f"got {steps}, {n_critic}, {batch_size}, {z_dim}, {n_snapshot}, {snapshot_every}"
        )
    if not gp_weight >= 0:
        raise ValueError(f"gp_weight must be >= 0, got {gp_weight}")
    check_progress(progress)
    device = resolve_device(device)
    with rng_scope(seed, device):
        generator.to(device).train()
        critic.to(device).train()
        opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
        opt_c = torch.optim.Adam(critic.parameters(), lr=critic_lr or lr, betas=betas)
        schedules = []
        if lr_decay:
            # the critic's rate follows the generator's steps: n_critic critic steps share one
            schedules = [
                torch.optim.lr_scheduler.LambdaLR(opt_g, lambda s: 1 - s / steps),
                torch.optim.lr_scheduler.LambdaLR(opt_c, lambda s: 1 - s // n_critic / steps),
            ]
        z_fixed = torch.randn(n_snapshot, z_dim).to(device)
        snapshots: dict[int, torch.Tensor] = {}

        def snapshot(step: int) -> None:
            with eval_mode(generator), torch.no_grad():
                snapshots[step] = generator(z_fixed).cpu()

        def step_fn(step: int) -> dict[str, torch.Tensor]:
            with torch.no_grad():  # the n_critic generated batches, in one call
                fakes = generator(torch.randn(n_critic * batch_size, z_dim, device=device))
            for fake in fakes.split(batch_size):
                real = sample_real(batch_size).to(device)
                # one critic call scores the real batch, the generated one and the interpolates
                w = torch.rand(batch_size, device=device).reshape(-1, *[1] * (real.ndim - 1))
                x_hat = (w * real + (1 - w) * fake).requires_grad_(True)
                scores = critic(torch.cat([real, fake, x_hat]))
                real_s, fake_s, hat_s = scores.split(batch_size)
                gp = _penalty_at(hat_s, x_hat)
                loss = critic_loss(real_s, fake_s)
                opt_c.zero_grad(set_to_none=True)
                (loss + gp_weight * gp).backward()
                opt_c.step()
                if lr_decay:
                    schedules[1].step()
            critic.requires_grad_(False)  # the generator's step needs no critic gradients
            g_loss = -critic(generator(torch.randn(batch_size, z_dim, device=device))).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            critic.requires_grad_(True)
            if lr_decay:
                schedules[0].step()
            done = step + 1
            if snapshot_every and done % snapshot_every == 0:
                snapshot(done)
            return {"w_estimate": -loss.detach(), "gp": gp.detach(), "g_loss": g_loss.detach()}

        snapshot(0)
        history = train_loop(
            step_fn,
            steps,
            log_every=10,
            desc=desc,
            progress=progress,
            plot={"title": "WGAN-GP: critic's estimate and penalty"},
        )
        if steps not in snapshots:
            snapshot(steps)
    return Run(model=generator.eval(), history=history, snapshots=snapshots)
