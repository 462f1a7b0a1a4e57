"""Training a GAN: one discriminator step, then one generator step, with Adam (:func:`train_gan`).

Derived in: Chapter 4, *The minimax game* (trained in the notebook *GANs on 2-D mixtures*).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from dlbook.gan.nets import GENERATOR_LOSSES, discriminator_loss, generator_loss
from dlbook.runtime import resolve_device, rng_scope

if TYPE_CHECKING:
    from dlbook.train import Run

__all__ = ["train_gan"]


def train_gan(
    generator: nn.Module,
    discriminator: nn.Module,
    sample_real: Callable[[int], torch.Tensor],
    *,
    z_dim: int,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.5, 0.999),
    loss: str = "nonsaturating",
    lr_decay: bool = True,
    ema: float = 0.0,
    snapshot_every: int = 0,
    n_snapshot: int = 1000,
    device: torch.device | str | None = None,
    seed: int = 0,
    desc: str = "GAN",
    progress: str = "plot",
) -> Run:
    """Alternate one discriminator step and one generator step, ``steps`` times, with Adam.

    Args:
        generator: ``(B, z_dim) -> (B, ...)``; trained in place.
        discriminator: ``(B, ...) -> (B / pack,)`` logits; trained in place.
        sample_real: ``sample_real(n) -> (n, ...)`` real samples (on any device).
        z_dim: the noise dimension; the noise is standard normal.
        steps: number of (D, G) step pairs.
        batch_size: samples per step for each of real and fake (a multiple of the pack size).
        lr, betas: Adam's, for both networks.
        loss: the generator loss, ``"nonsaturating"`` or ``"saturating"``.
        lr_decay: decay both learning rates linearly to 0 over the run (the generator's samples
            settle instead of orbiting the modes).
        ema: if > 0, also keep an exponential moving average of the generator's weights,
            ``avg <- ema * avg + (1 - ema) * weights`` after every step; snapshots and
            ``Run.model`` then use the average, which smooths out the generator's
            oscillations around the modes.
        snapshot_every: every this many steps (and at steps 0 and ``steps``) keep the generator's
            output on one fixed noise batch of ``n_snapshot`` (0: only at steps 0 and ``steps``).
        device: where to train; ``None``: :func:`dlbook.device`.
        seed: seeds everything the call draws: the snapshots' noise (the stream's first draw),
            the training noise and whatever ``sample_real`` draws from torch's global generator.
            The caller's generators are left as they were (:func:`dlbook.runtime.rng_scope`).
        desc: the progress bar's label.
        progress: ``"plot"`` (bar and live loss curves), ``"bar"`` or ``"off"``.

    Returns:
        A :class:`dlbook.train.Run`: ``model`` is the generator to sample from (the average when
        ``ema > 0``), in eval mode; ``history`` has ``"d_loss"`` and ``"g_loss"`` every 10 steps;
        ``snapshots`` is ``{step: (n_snapshot, ...) samples on the CPU}``.

    Derived in: Chapter 4, *The minimax game* (trained in the notebook *GANs on 2-D mixtures*).
    """
    from dlbook.train import Run, check_progress, eval_mode, train_loop

    if loss not in GENERATOR_LOSSES:
        raise ValueError(f"loss must be one of {GENERATOR_LOSSES}, got {loss!r}")
    if not 0.0 <= ema < 1.0:
        raise ValueError(f"ema must be in [0, 1), got {ema}")
    if steps < 1 or batch_size < 1 or z_dim < 1 or n_snapshot < 1 or snapshot_every < 0:
        raise ValueError(
            "need steps, batch_size, z_dim, n_snapshot >= 1 and snapshot_every >= 0; got "
            f"{steps}, {batch_size}, {z_dim}, {n_snapshot}, {snapshot_every}"
        )
    check_progress(progress)
    device = resolve_device(device)
    with rng_scope(seed, device):
        generator.to(device).train()
        discriminator.to(device).train()
        opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)
        schedules = []
        if lr_decay:
            for opt in (opt_g, opt_d):
                schedules.append(torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps))
        average = copy.deepcopy(generator).requires_grad_(False) if ema else None
        sampler = average if average is not None else generator  # what the snapshots show
        z_fixed = torch.randn(n_snapshot, z_dim).to(device)  # one noise batch for all snapshots
        snapshots: dict[int, torch.Tensor] = {}

        def snapshot(step: int) -> None:
            with eval_mode(sampler), torch.no_grad():
                snapshots[step] = sampler(z_fixed).cpu()

        def step_fn(step: int) -> dict[str, torch.Tensor]:
            real = sample_real(batch_size).to(device)
            fake = generator(torch.randn(batch_size, z_dim, device=device))
            d_loss = discriminator_loss(discriminator(real), discriminator(fake.detach()))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            g_loss = generator_loss(discriminator(fake), loss)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            for schedule in schedules:
                schedule.step()
            if average is not None:
                _update_average(average, generator, ema)
            done = step + 1
            if snapshot_every and done % snapshot_every == 0:
                snapshot(done)
            return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

        snapshot(0)
        history = train_loop(
            step_fn,
            steps,
            log_every=10,
            desc=desc,
            progress=progress,
            plot={"title": "GAN losses"},
        )
        if steps not in snapshots:
            snapshot(steps)
    return Run(model=sampler.eval(), history=history, snapshots=snapshots)


@torch.no_grad()
def _update_average(average: nn.Module, model: nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * model``, weights and float buffers alike;
    other buffers (BatchNorm's step counter) are copied."""
    for p_avg, p in zip(average.state_dict().values(), model.state_dict().values()):
        if p_avg.dtype.is_floating_point:
            p_avg.lerp_(p, 1 - decay)
        else:
            p_avg.copy_(p)
