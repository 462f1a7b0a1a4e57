"""The toy data of the GAN chapter and what can be computed about it exactly, with no network.

1. toy data: equal-weight Gaussian mixtures in 2-D, on a ring and on a grid (:class:`Mixture`,
   :func:`ring`, :func:`grid`);
2. what theory says: the optimal discriminator ``D* = p_data / (p_data + p_g)`` and the
   Jensen-Shannon divergence (:func:`optimal_discriminator`, :func:`js_divergence`);
3. how to measure a generator's samples of a mixture: modes captured, high-quality rate and the
   reverse KL between the modes' frequencies and the uniform ones (:func:`mode_metrics`).

Derived in: Chapter 4, *Measuring a generator*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "Mixture",
    "grid",
    "js_divergence",
    "mode_metrics",
    "optimal_discriminator",
    "ring",
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
