"""The two players and their losses.

1. the networks: fully connected ones for 2-D points (:func:`fully_connected`,
   :func:`mlp_generator`, :class:`PackedDiscriminator`) and small convolutional ones for images
   (:class:`ConvGenerator`, :class:`ConvDiscriminator`);
2. the losses, written on the discriminator's *logits* so that they never take ``log(0)``
   (:func:`discriminator_loss`, :func:`generator_loss`).

Conventions: the batch is the leading axis; ``D`` returns logits ``l`` with ``D(x) = sigmoid(l)``.

Derived in: Chapter 4, *The minimax game*.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GENERATOR_LOSSES",
    "ConvDiscriminator",
    "ConvGenerator",
    "PackedDiscriminator",
    "discriminator_loss",
    "fully_connected",
    "generator_loss",
    "mlp_generator",
]

# ----------------------------------------------------------------------------- networks


def fully_connected(
    in_dim: int, hidden: int, out_dim: int, depth: int = 3, *, slope: float = 0.0
) -> nn.Sequential:
    """A torch MLP: ``depth`` hidden layers of width ``hidden`` with ReLU (or LeakyReLU of
    ``slope``), then a linear output layer.

    Maps ``(B, in_dim)`` to ``(B, out_dim)``. (Chapter 1's NumPy MLP is
    :func:`dlbook.backprop.mlp`.)

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
    return fully_connected(z_dim, hidden, out_dim, depth)


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
        self.net = fully_connected(pack * dim, hidden, 1, depth, slope=0.2)

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
