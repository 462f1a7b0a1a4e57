"""Generative adversarial networks: toy mixtures, networks, losses, a training loop, metrics.

A GAN trains two networks against each other. The discriminator ``D`` sees real samples and the
generator's samples and learns to tell them apart; the generator ``G`` turns noise ``z`` into
samples and learns to fool ``D``. The module follows the chapter top to bottom:

1. toy data: Gaussian mixtures on a ring and on a grid (:func:`ring`, :func:`grid`);
2. what theory says: the optimal discriminator ``D* = p_data / (p_data + p_g)`` and the
   Jensen-Shannon divergence (:func:`optimal_discriminator`, :func:`js_divergence`);
3. the networks: MLPs for 2-D points (:func:`mlp_generator`, :class:`PackedDiscriminator`) and
   small convolutional nets for images (:class:`ConvGenerator`, :class:`ConvDiscriminator`);
4. the losses, written on the discriminator's *logits* so that they never take ``log(0)``
   (:func:`discriminator_loss`, :func:`generator_loss`);
5. a training loop with a progress bar and snapshots (:func:`train_gan`);
6. how to measure the result on a mixture: modes captured, high-quality rate and the reverse KL
   between the modes' frequencies and the uniform ones (:func:`mode_metrics`).

Conventions: the batch is the leading axis; ``D`` returns logits ``l`` with ``D(x) = sigmoid(l)``.

Derived in: Chapter 4, *GANs*.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvDiscriminator",
    "ConvGenerator",
    "GANRun",
    "Mixture",
    "PackedDiscriminator",
    "discriminator_loss",
    "generator_loss",
    "grid",
    "js_divergence",
    "mlp",
    "mlp_generator",
    "mode_metrics",
    "optimal_discriminator",
    "ring",
    "train_gan",
]

# ----------------------------------------------------------------------------- toy data


@dataclass(frozen=True)
class Mixture:
    """An equal-weight mixture of isotropic 2-D Gaussians.

    Attributes:
        modes: ``(K, 2)`` float32 tensor of the components' means.
        std: the standard deviation of every component (per coordinate).
        name: for titles.
    """

    modes: torch.Tensor
    std: float
    name: str = "mixture"

    def __post_init__(self) -> None:
        if self.modes.ndim != 2 or self.modes.shape[1] != 2 or len(self.modes) == 0:
            raise ValueError(
                f"modes must have shape (K, 2) with K >= 1, got {tuple(self.modes.shape)}"
            )
        if not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std}")

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, 2)`` float32 samples: a uniformly chosen mode plus Gaussian noise of ``std``."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        k = torch.randint(len(self.modes), (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator)
        return self.modes[k] + self.std * noise

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """``(n,)`` the mixture's density at ``x`` of shape ``(n, 2)``."""
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"x must have shape (n, 2), got {tuple(x.shape)}")
        d2 = torch.cdist(x.double(), self.modes.double()) ** 2  # (n, K)
        s2 = self.std**2
        return (torch.exp(-d2 / (2 * s2)) / (2 * math.pi * s2)).mean(dim=1)


def ring(n_modes: int = 8, radius: float = 1.0, std: float = 0.01) -> Mixture:
    """The ring of ``n_modes`` Gaussians on a circle (PacGAN's 2D-ring: 8 modes, radius 1, 0.01).

    Derived in: Chapter 4, *Measuring a generator*.
    """
    if n_modes < 1 or radius <= 0:
        raise ValueError(f"need n_modes >= 1 and radius > 0, got {n_modes} and {radius}")
    angles = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    modes = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return Mixture(modes.float(), std, name=f"{n_modes}-Gaussian ring")


def grid(k: int = 5, spacing: float = 2.0, std: float = 0.05) -> Mixture:
    """The ``k x k`` grid of Gaussians centred on 0 (PacGAN's 2D-grid: 5 x 5, spacing 2, 0.05).

    Derived in: Chapter 4, *Measuring a generator*.
    """
    if k < 1 or spacing <= 0:
        raise ValueError(f"need k >= 1 and spacing > 0, got {k} and {spacing}")
    ticks = spacing * (torch.arange(k, dtype=torch.float32) - (k - 1) / 2)
    modes = torch.cartesian_prod(ticks, ticks)
    return Mixture(modes, std, name=f"{k * k}-Gaussian grid")


# ----------------------------------------------------------------------------- theory


def optimal_discriminator(
    p_data: np.ndarray | torch.Tensor, p_g: np.ndarray | torch.Tensor
) -> np.ndarray | torch.Tensor:
    """The discriminator that maximises V(D, G) for fixed G: ``p_data / (p_data + p_g)``.

    Args:
        p_data, p_g: densities (non-negative), same shape, at the same points. Where both are
            0 the value is undefined; we return 1/2 there (any value is optimal).

    Returns:
        ``D*(x)`` with the shape and type of the inputs.

    Derived in: Chapter 4, *The optimal discriminator*.
    """
    lib = torch if isinstance(p_data, torch.Tensor) else np
    if tuple(p_data.shape) != tuple(p_g.shape):
        raise ValueError(
            f"p_data and p_g must have the same shape, got {tuple(p_data.shape)} and "
            f"{tuple(p_g.shape)}"
        )
    if bool((p_data < 0).any()) or bool((p_g < 0).any()):
        raise ValueError("densities must be non-negative")
    total = p_data + p_g
    safe = lib.where(total > 0, total, lib.ones_like(total))
    return lib.where(total > 0, p_data / safe, 0.5 * lib.ones_like(total))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (in nats) of two discrete distributions ``p`` and ``q``.

    ``JSD(p || q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``; between 0 and
    ``log 2``. ``p`` and ``q`` are 1-D arrays of the same length, non-negative, each summing to 1.
    (For densities on a grid, pass the densities times the cell size.)

    Derived in: Chapter 4, *The value at the optimum*.
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.ndim != 1 or p.shape != q.shape:
        raise ValueError(f"p and q must be 1-D of the same length, got {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("p and q must be non-negative")
    if not (np.isclose(p.sum(), 1, atol=1e-6) and np.isclose(q.sum(), 1, atol=1e-6)):
        raise ValueError(f"p and q must each sum to 1, got {p.sum():.6g} and {q.sum():.6g}")
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / b[nz])))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


# ----------------------------------------------------------------------------- networks


def mlp(in_dim: int, hidden: int, out_dim: int, depth: int = 3, *, slope: float = 0.0) -> nn.Module:
    """``depth`` hidden layers of width ``hidden`` with ReLU (or LeakyReLU of ``slope``).

    Maps ``(B, in_dim)`` to ``(B, out_dim)``; the output layer is linear.

    Derived in: Chapter 4, *Errata* (why a generator needs hidden layers).
    """
    if min(in_dim, hidden, out_dim) < 1 or depth < 1:
        raise ValueError(
            f"need positive sizes and depth >= 1, got in={in_dim}, hidden={hidden}, "
            f"out={out_dim}, depth={depth}"
        )
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.LeakyReLU(slope) if slope else nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def mlp_generator(z_dim: int = 2, hidden: int = 128, out_dim: int = 2, depth: int = 3) -> nn.Module:
    """An MLP generator ``(B, z_dim) -> (B, out_dim)``, ReLU hidden layers, linear output.

    Derived in: Chapter 4, *Errata* (why a generator needs hidden layers).
    """
    return mlp(z_dim, hidden, out_dim, depth)


class PackedDiscriminator(nn.Module):
    """An MLP discriminator that judges ``pack`` samples at once (PacGAN; ``pack=1``: a plain one).

    Input ``(B, dim)`` with ``B`` a multiple of ``pack``; consecutive groups of ``pack`` samples
    are concatenated into one ``(B / pack, pack * dim)`` input. Output: ``(B / pack,)`` logits.

    Derived in: Chapter 4, *Mode collapse* (packing).
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, pack: int = 1) -> None:
        super().__init__()
        if pack < 1:
            raise ValueError(f"pack must be >= 1, got {pack}")
        self.dim, self.pack = dim, pack
        self.net = mlp(pack * dim, hidden, 1, depth, slope=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim or x.shape[0] % self.pack:
            raise ValueError(
                f"expected (B, {self.dim}) with B a multiple of pack={self.pack}, "
                f"got {tuple(x.shape)}"
            )
        return self.net(x.reshape(-1, self.pack * self.dim)).squeeze(-1)


def _check_image_size(image_size: int) -> None:
    if image_size % 4 or image_size < 4:
        raise ValueError(f"image_size must be a multiple of 4 (e.g. 8 or 28), got {image_size}")


class ConvGenerator(nn.Module):
    """A small DCGAN-style generator: ``(B, z_dim)`` noise to ``(B, 1, S, S)`` images in [0, 1].

    A linear layer makes a ``(2 * width, S/4, S/4)`` feature map; two transposed convolutions
    (kernel 4, stride 2) double its size twice; a sigmoid keeps pixels in [0, 1].

    Derived in: Chapter 4, notebook *A GAN on real digits*.
    """

    def __init__(self, z_dim: int = 16, image_size: int = 8, width: int = 32) -> None:
        super().__init__()
        _check_image_size(image_size)
        self.z_dim, self.start, self.width = z_dim, image_size // 4, width
        self.fc = nn.Linear(z_dim, 2 * width * self.start**2)
        self.net = nn.Sequential(
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected noise of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        h = self.fc(z).view(-1, 2 * self.width, self.start, self.start)
        return self.net(h)


class ConvDiscriminator(nn.Module):
    """A small convolutional discriminator: ``(B, 1, S, S)`` images to ``(B,)`` logits.

    Derived in: Chapter 4, notebook *A GAN on real digits*.
    """

    def __init__(self, image_size: int = 8, width: int = 32) -> None:
        super().__init__()
        _check_image_size(image_size)
        self.image_size = image_size
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * (image_size // 4) ** 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, s, s):
            raise ValueError(f"expected images of shape (B, 1, {s}, {s}), got {tuple(x.shape)}")
        return self.net(x).squeeze(-1)


# ----------------------------------------------------------------------------- losses

GENERATOR_LOSSES = ("nonsaturating", "saturating")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``-[mean log D(x) + mean log(1 - D(G(z)))]``, the negated value function, from logits.

    With ``D = sigmoid(l)``: ``-log D = softplus(-l)`` and ``-log(1 - D) = softplus(l)``, which
    never overflow. Equal to ``F.binary_cross_entropy_with_logits`` with labels 1 (real) and
    0 (fake), each averaged over its own batch. Returns a scalar.

    Derived in: Chapter 4, *The minimax game*.
    """
    if real_logits.ndim != 1 or fake_logits.ndim != 1:
        raise ValueError(
            f"expected 1-D logits (B,), got {tuple(real_logits.shape)} and "
            f"{tuple(fake_logits.shape)}"
        )
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """The generator's loss on the discriminator's logits for generated samples. Scalar.

    - ``"saturating"``: ``mean log(1 - D(G(z))) = -mean softplus(l)``, the minimax game's own
      objective; its gradient vanishes when ``D`` confidently rejects the fakes.
    - ``"nonsaturating"``: ``-mean log D(G(z)) = mean softplus(-l)``, the usual choice.

    Derived in: Chapter 4, *Saturating and non-saturating generator losses*.
    """
    if fake_logits.ndim != 1:
        raise ValueError(f"expected 1-D logits (B,), got {tuple(fake_logits.shape)}")
    if kind == "nonsaturating":
        return F.softplus(-fake_logits).mean()
    if kind == "saturating":
        return -F.softplus(fake_logits).mean()
    raise ValueError(f"kind must be one of {GENERATOR_LOSSES}, got {kind!r}")


# ----------------------------------------------------------------------------- training


@dataclass
class GANRun:
    """What :func:`train_gan` returns.

    Attributes:
        history: ``dlbook.train.History`` with ``"d_loss"`` and ``"g_loss"`` per step.
        snapshots: ``{step: (n, ...) samples}`` of the generator on a fixed noise batch.
        generator: the generator to sample from: the trained one, or its exponential moving
            average when ``train_gan`` was given ``ema > 0``.
    """

    history: object
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    generator: nn.Module | None = None


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
    device: torch.device | str = "cpu",
    desc: str = "GAN",
    live_plot: bool = False,
    seed: int = 0,
) -> GANRun:
    """Alternate one discriminator step and one generator step, ``steps`` times, with Adam.

    Args:
        generator: ``(B, z_dim) -> (B, ...)``.
        discriminator: ``(B, ...) -> (B / pack,)`` logits.
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
            ``GANRun.generator`` then use the average, which smooths out the generator's
            oscillations around the modes.
        snapshot_every: every this many steps (and at steps 0 and ``steps``) keep the generator's
            output on one fixed noise batch of ``n_snapshot`` (0: only at the end).
        seed: seeds the noise used for snapshots.

    Returns:
        A :class:`GANRun`.

    Derived in: Chapter 4, *The minimax game* (trained in the notebook *GANs on 2-D mixtures*).
    """
    from dlbook.train import train_loop

    if loss not in GENERATOR_LOSSES:
        raise ValueError(f"loss must be one of {GENERATOR_LOSSES}, got {loss!r}")
    if not 0.0 <= ema < 1.0:
        raise ValueError(f"ema must be in [0, 1), got {ema}")
    if steps < 1 or batch_size < 1 or snapshot_every < 0:
        raise ValueError(
            f"need steps >= 1, batch_size >= 1, snapshot_every >= 0; got {steps}, "
            f"{batch_size}, {snapshot_every}"
        )
    device = torch.device(device)
    generator.to(device).train()
    discriminator.to(device).train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)
    schedules = []
    if lr_decay:
        for opt in (opt_g, opt_d):
            schedules.append(torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps))
    z_fixed = torch.randn(n_snapshot, z_dim, generator=torch.Generator().manual_seed(seed))
    average = copy.deepcopy(generator).requires_grad_(False) if ema else None
    run = GANRun(history=None, generator=average if average is not None else generator)

    def snapshot(step: int) -> None:
        net = run.generator
        net.eval()
        with torch.no_grad():
            run.snapshots[step] = net(z_fixed.to(device)).cpu()
        net.train()

    snapshot(0)

    def step_fn(step: int) -> dict[str, float]:
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
            with torch.no_grad():
                for p_avg, p in zip(average.state_dict().values(), generator.state_dict().values()):
                    if p_avg.dtype.is_floating_point:
                        p_avg.lerp_(p, 1 - ema)
                    else:
                        p_avg.copy_(p)
        done = step + 1
        if snapshot_every and done % snapshot_every == 0:
            snapshot(done)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    run.history = train_loop(
        step_fn, steps, desc=desc, live_plot=live_plot, title="GAN losses", log_every=10
    )
    if steps not in run.snapshots:
        snapshot(steps)
    run.generator.eval()
    return run


# ----------------------------------------------------------------------------- metrics


def mode_metrics(
    samples: torch.Tensor | np.ndarray, modes: torch.Tensor | np.ndarray, std: float
) -> dict[str, object]:
    """How well samples cover a Gaussian mixture (PacGAN's and VEEGAN's metrics).

    A sample is **high quality** when it lies within ``3 std`` of its nearest mode; a mode is
    **captured** when at least one high-quality sample has it as nearest mode. The **reverse KL**
    compares the share of high-quality samples at each mode, ``q``, with the uniform weights of
    the mixture: ``sum_k q_k log(q_k K)`` (0 when every mode gets the same share, ``log K`` when
    one mode gets them all; ``inf`` when there is no high-quality sample).

    Args:
        samples: ``(n, 2)`` generated points.
        modes: ``(K, 2)`` the mixture's means.
        std: the components' standard deviation (> 0).

    Returns:
        ``{"modes_captured": int, "high_quality_rate": float, "reverse_kl": float,
        "counts": (K,) int array of high-quality samples per mode}``.

    Derived in: Chapter 4, *Measuring a generator*.
    """
    x = torch.as_tensor(np.asarray(samples) if not torch.is_tensor(samples) else samples)
    m = torch.as_tensor(np.asarray(modes) if not torch.is_tensor(modes) else modes)
    if x.ndim != 2 or m.ndim != 2 or x.shape[1] != m.shape[1] or len(x) == 0 or len(m) == 0:
        raise ValueError(
            f"expected samples (n, d) and modes (K, d) with n, K >= 1, got {tuple(x.shape)} "
            f"and {tuple(m.shape)}"
        )
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    dist = torch.cdist(x.double(), m.double())  # (n, K)
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist <= 3 * std
    counts = torch.bincount(nearest[good], minlength=len(m)).numpy()
    n_good = int(counts.sum())
    if n_good:
        q = counts / n_good
        nz = q > 0
        rkl = float(np.sum(q[nz] * np.log(q[nz] * len(m))))
    else:
        rkl = float("inf")
    return {
        "modes_captured": int((counts > 0).sum()),
        "high_quality_rate": n_good / len(x),
        "reverse_kl": rkl,
        "counts": counts,
    }
