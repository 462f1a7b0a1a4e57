"""Generative adversarial networks: toy mixtures and their exact metrics, networks, losses,
training.

A GAN trains two networks against each other. The discriminator ``D`` sees real samples and the
generator's samples and learns to tell them apart; the generator ``G`` turns noise ``z`` into
samples and learns to fool ``D``. The package follows the chapter in three modules, and a
fourth for images:

- :mod:`dlbook.gan.mixtures`: the toy data (Gaussian mixtures on a ring and on a grid) and what
  can be computed about it exactly: the optimal discriminator ``D* = p_data / (p_data + p_g)``,
  the Jensen-Shannon divergence, and the metrics that score a generator's samples of a mixture
  (modes captured, high-quality rate, reverse KL);
- :mod:`dlbook.gan.nets`: the networks (MLPs for 2-D points, small convolutional nets for
  images) and the two players' losses, written on logits;
- :mod:`dlbook.gan.train`: :func:`train_gan`, which alternates a discriminator step and a
  generator step.
- :mod:`dlbook.gan.fid`, for images: the Fréchet distance between Gaussians fitted to a
  classifier's features (the FID), and that classifier, the book's digit judge.
- :mod:`dlbook.gan.wgan`: the Wasserstein GAN with a gradient penalty (WGAN-GP): the critic's
  loss, the penalty and :func:`train_wgan_gp`.

Why three: the first module uses no network and no training, and is checked against closed
forms (the optimal-discriminator notebook and the exercises need nothing else); the second is
what a reader copies into a GAN of their own; the third ties them to the book's training loop and
trainer conventions (:mod:`dlbook.train`). Each reads top to bottom in a sitting, where the one
module of 500 lines mixed all three. Every name is re-exported here, so ``gan.ring()`` and
``gan.train_gan(...)`` are all a notebook needs.

Conventions: the batch is the leading axis; ``D`` returns logits ``l`` with ``D(x) = sigmoid(l)``.

Derived in: Chapter 4, *Generative adversarial networks*.
"""

from dlbook.gan.fid import (
    digit_judge,
    fid,
    frechet_distance,
    gaussian_stats,
    judge_features,
    sqrtm_psd,
)
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
from dlbook.gan.wgan import critic_loss, gradient_penalty, train_wgan_gp

__all__ = [
    "GENERATOR_LOSSES",
    "ConvDiscriminator",
    "ConvGenerator",
    "Mixture",
    "PackedDiscriminator",
    "critic_loss",
    "digit_judge",
    "discriminator_loss",
    "fid",
    "frechet_distance",
    "fully_connected",
    "gaussian_stats",
    "generator_loss",
    "gradient_penalty",
    "grid",
    "js_divergence",
    "judge_features",
    "mlp_generator",
    "mode_metrics",
    "optimal_discriminator",
    "ring",
    "sqrtm_psd",
    "train_gan",
    "train_wgan_gp",
]
