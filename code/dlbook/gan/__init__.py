"""Generative adversarial networks: toy mixtures and their exact metrics, networks, losses,
training.

A GAN trains two networks against each other. The discriminator ``D`` sees real samples and the
generator's samples and learns to tell them apart; the generator ``G`` turns noise ``z`` into
samples and learns to fool ``D``. The package follows the chapter in three modules:

- :mod:`dlbook.gan.mixtures`: the toy data (Gaussian mixtures on a ring and on a grid) and what
  can be computed about it exactly: the optimal discriminator ``D* = p_data / (p_data + p_g)``,
  the Jensen-Shannon divergence, and the metrics that score a generator's samples of a mixture
  (modes captured, high-quality rate, reverse KL);
- :mod:`dlbook.gan.nets`: the networks (MLPs for 2-D points, small convolutional nets for
  images) and the two players' losses, written on logits;
- :mod:`dlbook.gan.train`: :func:`train_gan`, which alternates a discriminator step and a
  generator step.

Why three: the first module uses no network and no training, and is checked against closed
forms (the optimal-discriminator notebook and the exercises need nothing else); the second is
what a reader copies into a GAN of their own; the third ties them to the book's training loop and
trainer conventions (:mod:`dlbook.train`). Each reads top to bottom in a sitting, where the one
module of 500 lines mixed all three. Every name is re-exported here, so ``gan.ring()`` and
``gan.train_gan(...)`` are all a notebook needs.

Conventions: the batch is the leading axis; ``D`` returns logits ``l`` with ``D(x) = sigmoid(l)``.

Derived in: Chapter 4, *Generative adversarial networks*.
"""

from dlbook.gan.mixtures import (
    Mixture,
    grid,
    js_divergence,
    mode_metrics,
    optimal_discriminator,
    ring,
)
from dlbook.gan.nets import (
    GENERATOR_LOSSES,
    ConvDiscriminator,
    ConvGenerator,
    PackedDiscriminator,
    discriminator_loss,
    fully_connected,
    generator_loss,
    mlp_generator,
)
from dlbook.gan.train import train_gan

__all__ = [
    "GENERATOR_LOSSES",
    "ConvDiscriminator",
    "ConvGenerator",
    "Mixture",
    "PackedDiscriminator",
    "discriminator_loss",
    "fully_connected",
    "generator_loss",
    "grid",
    "js_divergence",
    "mlp_generator",
    "mode_metrics",
    "optimal_discriminator",
    "ring",
    "train_gan",
]
