"""The Fréchet distance between Gaussians fitted to features: the FID of Heusel et al. (2017).

Fit a Gaussian to the features of real images, ``N(mu_1, S_1)``, and one to the features of
generated images, ``N(mu_2, S_2)``. The Fréchet (2-Wasserstein) distance between them, squared, is

    ``||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})``.

``S_1 S_2`` is not symmetric, but it is similar to the symmetric positive semi-definite matrix
``S_1^{1/2} S_2 S_1^{1/2}``, so the two have the same eigenvalues (all >= 0) and

    ``Tr (S_1 S_2)^{1/2} = Tr (S_1^{1/2} S_2 S_1^{1/2})^{1/2} = sum_i sqrt(lambda_i)``,

which we compute with two symmetric eigen-decompositions (:func:`sqrtm_psd`), with no general
matrix square root and no complex round-off. With Inception-v3 features this is the *Fréchet
inception distance*; the book uses the penultimate layer of its own digit classifier.

1. :func:`gaussian_stats`: mean and covariance of ``(n, d)`` features;
2. :func:`frechet_distance`: the closed form for two Gaussians;
3. :func:`fid`: both, from two feature sets;
4. the features: :func:`digit_judge` trains the book's digit classifier (the judge of the
   digits notebooks), :func:`judge_features` reads its penultimate layer.

Derived in: Chapter 4, *The Fréchet distance and a conditional GAN*.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlbook.runtime import resolve_device, rng_scope

__all__ = [
    "digit_judge",
    "fid",
    "frechet_distance",
    "gaussian_stats",
    "judge_features",
    "sqrtm_psd",
]


def _as_float64(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return a


def sqrtm_psd(a: np.ndarray | torch.Tensor) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite ``(d, d)`` matrix.

    ``a = U diag(lambda) U^T`` gives ``a^{1/2} = U diag(sqrt(lambda)) U^T``; eigenvalues that
    round-off made slightly negative are set to 0. Returns a float64 ``(d, d)`` array.

    Derived in: Chapter 4, *The Fréchet distance and a conditional GAN*.
    """
    m = _as_float64(a, "a")
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square (d, d) matrix, got shape {m.shape}")
    scale = max(float(np.abs(m).max()), 1e-300)
    if not np.allclose(m, m.T, rtol=0, atol=1e-8 * scale):
        raise ValueError("expected a symmetric matrix")
    lam, u = np.linalg.eigh((m + m.T) / 2)
    if lam.min() < -1e-6 * max(float(lam.max()), 0.0) - 1e-12:
        raise ValueError(
            f"expected a positive semi-definite matrix, smallest eigenvalue {lam.min()}"
        )
    return (u * np.sqrt(np.clip(lam, 0, None))) @ u.T


def gaussian_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(d,)`` and covariance ``(d, d)`` (divided by ``n - 1``) of ``(n, d)`` features.

    Derived in: Chapter 4, *The Fréchet distance and a conditional GAN*.
    """
    f = _as_float64(features, "features")
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"expected features of shape (n, d) with n >= 2, got {f.shape}")
    mu = f.mean(axis=0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def frechet_distance(
    mu1: np.ndarray | torch.Tensor,
    sigma1: np.ndarray | torch.Tensor,
    mu2: np.ndarray | torch.Tensor,
    sigma2: np.ndarray | torch.Tensor,
) -> float:
    """The squared Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr (sigma1^{1/2} sigma2 sigma1^{1/2})^{1/2}``.
    Means are ``(d,)``, covariances ``(d, d)`` symmetric positive semi-definite (singular ones
    are fine). In 1-D it is ``(mu1 - mu2)^2 + (s1 - s2)^2`` with standard deviations ``s``.
    Returns a float >= 0 (clipped at 0 against round-off).

    Derived in: Chapter 4, *The Fréchet distance and a conditional GAN*.
    """
    m1, m2 = _as_float64(mu1, "mu1"), _as_float64(mu2, "mu2")
    s1, s2 = _as_float64(sigma1, "sigma1"), _as_float64(sigma2, "sigma2")
    d = m1.shape[0] if m1.ndim == 1 else -1
    if m1.ndim != 1 or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            "expected mu1, mu2 of shape (d,) and sigma1, sigma2 of shape (d, d), got "
            f"{m1.shape}, {m2.shape}, {s1.shape}, {s2.shape}"
        )
    root1 = sqrtm_psd(s1)
    inner = root1 @ s2 @ root1  # similar to sigma1 @ sigma2: the same eigenvalues
    lam = np.linalg.eigvalsh((inner + inner.T) / 2)
    trace_root = float(np.sqrt(np.clip(lam, 0, None)).sum())
    diff = m1 - m2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_root)
    return max(value, 0.0)


def fid(features1: np.ndarray | torch.Tensor, features2: np.ndarray | torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets ``(n1, d)``, ``(n2, d)``.

    With Inception-v3 features of real and generated images this is the FID
    (Heusel et al., 2017). Like any estimate from samples it is biased upwards, more so for
    fewer samples: compare FIDs computed from the same numbers of samples.

    Derived in: Chapter 4, *The Fréchet distance and a conditional GAN*.
    """
    f1, f2 = _as_float64(features1, "features1"), _as_float64(features2, "features2")
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(
            f"expected features (n1, d) and (n2, d) with the same d, got {f1.shape} and {f2.shape}"
        )
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))


# ----------------------------------------------------------------------------- the features


def digit_judge(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    hidden: int = 128,
    steps: int = 300,
    lr: float = 1e-2,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: str = "bar",
) -> nn.Sequential:
    """The book's digit classifier, the *judge* of generated digits: an MLP with one hidden layer.

    ``Linear(D, hidden) -> ReLU -> Linear(hidden, K)``, trained with Adam on the cross-entropy,
    full batch (the 8x8 digits are small), for ``steps`` steps.

    Args:
        images: ``(n, D)`` or ``(n, 1, S, S)`` real images, pixels in [0, 1].
        labels: ``(n,)`` integer classes ``0 .. K - 1`` (``K = labels.max() + 1``).
        seed: seeds the initialisation (the caller's random streams are left as they were).
        progress: ``"bar"`` or ``"off"`` (see :func:`dlbook.train.train_loop`).

    Returns:
        The trained classifier in eval mode, on ``device``; ``judge[:-1]`` maps images to the
        ``(n, hidden)`` features of :func:`judge_features`.

    Derived in: Chapter 4, *The Fréchet distance and a conditional GAN*.
    """
    from dlbook.train import check_progress, train_loop

    check_progress(progress)
    x = torch.as_tensor(images, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.int64)
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(y) < 2:
        raise ValueError(
            f"expected images (n, ...) and labels (n,) with n >= 2, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if int(y.min()) < 0:
        raise ValueError(f"labels must be >= 0, got {int(y.min())}")
    if hidden < 1 or steps < 1:
        raise ValueError(f"need hidden >= 1 and steps >= 1, got {hidden} and {steps}")
    device = resolve_device(device)
    x, y = x.reshape(len(x), -1).to(device), y.to(device)
    with rng_scope(seed, device):
        judge = nn.Sequential(
            nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, int(y.max()) + 1)
        ).to(device)
        opt = torch.optim.Adam(judge.parameters(), lr=lr)

        def step(_: int) -> torch.Tensor:
            loss = F.cross_entropy(judge(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()

        train_loop(step, steps, log_every=10, desc="training the judge", progress=progress)
    return judge.eval()


def judge_features(judge: nn.Sequential, images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The judge's penultimate layer (after the hidden ReLU): ``(n, hidden)`` float32 on the CPU.

    ``images`` is ``(n, D)`` or ``(n, 1, S, S)``; they are flattened and moved to the judge's
    device. These are the features whose Gaussians :func:`fid` compares.

    Derived in: Chapter 4, *The Fréchet distance and a conditional GAN*.
    """
    if not isinstance(judge, nn.Sequential) or len(judge) < 2:
        raise ValueError(f"expected the judge, an nn.Sequential of >= 2 layers, got {type(judge)}")
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim < 2:
        raise ValueError(f"expected images (n, D) or (n, 1, S, S), got {tuple(x.shape)}")
    device = next(judge.parameters()).device
    with torch.no_grad():
        return judge[:-1](x.reshape(len(x), -1).to(device)).cpu()
