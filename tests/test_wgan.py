"""Tests for dlbook.gan.wgan: the critic's loss, the gradient penalty and train_wgan_gp."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlbook import gan


def test_critic_loss_is_fake_mean_minus_real_mean():
    real, fake = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, -0.5])
    assert gan.critic_loss(real, fake).item() == pytest.approx(0.0 - 2.0)


def test_gradient_penalty_matches_a_hand_computation():
    # f(x) = sum(x^2) has gradient 2 x, so the penalty is mean (2 |x_hat| - 1)^2
    def critic(x):
        return (x**2).sum(dim=1)

    real = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    fake = torch.tensor([[0.0, 1.0], [2.0, 0.0], [-3.0, -4.0]], dtype=torch.float64)
    eps = torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)
    x_hat = eps[:, None] * real + (1 - eps[:, None]) * fake
    by_hand = ((2 * x_hat.norm(dim=1) - 1) ** 2).mean()
    got = gan.gradient_penalty(critic, real, fake, eps=eps)
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-12)


def test_gradient_penalty_agrees_with_finite_differences_for_a_network():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()

    def critic(x):
        return net(x).squeeze(-1)

    real, fake = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    eps = torch.rand(5, dtype=torch.float64)
    x_hat = eps[:, None] * real + (1 - eps[:, None]) * fake
    h = 1e-6
    grads = torch.stack(
        [(critic(x_hat + h * e) - critic(x_hat - h * e)) / (2 * h) for e in torch.eye(3).double()],
        dim=1,
    )
    expected = ((grads.norm(dim=1) - 1) ** 2).mean()
    got = gan.gradient_penalty(critic, real, fake, eps=eps)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradient_penalty_is_zero_for_a_linear_critic_with_unit_norm_weight():
    torch.manual_seed(0)
    lin = nn.Linear(4, 1)
    with torch.no_grad():
        lin.weight /= lin.weight.norm()
    real, fake = torch.randn(64, 4), torch.randn(64, 4)
    assert gan.gradient_penalty(lambda x: lin(x).squeeze(-1), real, fake).item() < 1e-10
    with torch.no_grad():
        lin.weight *= 3.0  # gradient norm 3 everywhere: penalty (3 - 1)^2 = 4
    penalty = gan.gradient_penalty(lambda x: lin(x).squeeze(-1), real, fake)
    assert penalty.item() == pytest.approx(4.0, rel=1e-5)


def test_gradient_penalty_backpropagates_into_the_critic_and_handles_images():
    torch.manual_seed(0)
    critic = gan.ConvDiscriminator(image_size=8, width=4)
    real, fake = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    gan.gradient_penalty(critic, real, fake).backward()
    weights = [p for p in critic.parameters() if p.ndim > 1]
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights)
    # the output layer's bias does not change the input gradient: the penalty does not reach it
    assert critic.net[-1].bias.grad is None


@pytest.mark.parametrize(
    "call",
    [
        lambda c: gan.gradient_penalty(c, torch.zeros(4, 2), torch.zeros(3, 2)),
        lambda c: gan.gradient_penalty(c, torch.zeros(4), torch.zeros(4)),
        lambda c: gan.gradient_penalty(c, torch.zeros(4, 2), torch.zeros(4, 2), eps=torch.ones(3)),
        lambda c: gan.gradient_penalty(
            c, torch.zeros(2, 2), torch.zeros(2, 2), eps=torch.tensor([0.5, 1.5])
        ),
        lambda c: gan.gradient_penalty(lambda x: x, torch.zeros(4, 2), torch.zeros(4, 2)),
        lambda c: gan.critic_loss(torch.zeros(4, 1), torch.zeros(4)),
    ],
)
def test_bad_inputs_raise(call):
    with pytest.raises(ValueError):
        call(lambda x: x.sum(dim=1))


def test_train_wgan_gp_runs_is_reproducible_and_validates():
    mix = gan.ring()

    def run(seed):
        torch.manual_seed(0)
        G, C = gan.mlp_generator(2, 16, 2, 2), gan.PackedDiscriminator(2, 16, 2)
        return gan.train_wgan_gp(
            G, C, mix.sample, z_dim=2, steps=4, n_critic=2, batch_size=32, n_snapshot=50,
            snapshot_every=2, progress="off", seed=seed, device="cpu",
        )  # fmt: skip

    a, b = run(0), run(0)
    assert sorted(a.snapshots) == [0, 2, 4]
    assert a.snapshots[4].shape == (50, 2)
    assert torch.equal(a.snapshots[4], b.snapshots[4])
    assert not torch.equal(a.snapshots[4], run(1).snapshots[4])
    assert all(name in a.history for name in ("w_estimate", "gp", "g_loss"))
    G, C = gan.mlp_generator(2, 8, 2, 1), gan.PackedDiscriminator(2, 8, 1)
    for bad in ({"steps": 0}, {"n_critic": 0}, {"gp_weight": -1.0}, {"progress": "loud"}):
        kwargs = {"z_dim": 2, "steps": 2, "progress": "off", **bad}
        with pytest.raises(ValueError):
            gan.train_wgan_gp(G, C, mix.sample, **kwargs)
