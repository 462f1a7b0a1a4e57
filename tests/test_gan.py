"""Tests for dlbook.gan: mixtures, D*, JSD, losses, networks, metrics, train_gan's conventions."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from scipy.spatial.distance import jensenshannon

import dlbook
from dlbook import gan, runtime
from dlbook.train import Run

# ----------------------------------------------------------------------------- mixtures


def test_ring_and_grid_modes():
    r = gan.ring()
    assert r.modes.shape == (8, 2)
    assert torch.allclose(r.modes.norm(dim=1), torch.ones(8))
    assert r.std == 0.01
    g = gan.grid()
    assert g.modes.shape == (25, 2)
    assert sorted(set(g.modes[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert g.std == 0.05


def test_mixture_samples_have_the_right_spread_and_are_reproducible():
    mix = gan.grid()
    x = mix.sample(20000, torch.Generator().manual_seed(0))
    y = mix.sample(20000, torch.Generator().manual_seed(0))
    assert torch.equal(x, y)
    offsets = x - mix.modes[torch.cdist(x, mix.modes).argmin(dim=1)]
    assert abs(offsets.std().item() - 0.05) < 0.002
    counts = torch.bincount(torch.cdist(x, mix.modes).argmin(dim=1), minlength=25)
    assert counts.min() > 0.8 * 20000 / 25  # modes are equally likely


def test_mixture_density_integrates_to_one():
    mix = gan.Mixture(torch.tensor([[0.0, 0.0], [1.0, 0.5]]), std=0.3)
    t = torch.linspace(-2.5, 3.5, 301, dtype=torch.float64)
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    dens = mix.density(torch.stack([xx.ravel(), yy.ravel()], dim=1))
    area = float((t[1] - t[0]) ** 2)
    assert abs(dens.sum().item() * area - 1.0) < 1e-3


@pytest.mark.parametrize(
    "make",
    [
        lambda: gan.ring(n_modes=0),
        lambda: gan.ring(radius=-1.0),
        lambda: gan.grid(k=0),
        lambda: gan.Mixture(torch.zeros(3), std=0.1),
        lambda: gan.Mixture(torch.zeros(3, 2), std=0.0),
        lambda: gan.ring().sample(0),
        lambda: gan.ring().density(torch.zeros(4, 3)),
    ],
)
def test_mixtures_reject_bad_input(make):
    with pytest.raises(ValueError):
        make()


# ----------------------------------------------------------------------------- theory


def test_optimal_discriminator_maximises_the_pointwise_objective():
    # For fixed x, D maximises a log D + b log(1 - D) with a = p_data(x), b = p_g(x); find the
    # maximum numerically with scipy and compare with the formula.
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.01, 3.0, size=20), rng.uniform(0.01, 3.0, size=20)
    formula = gan.optimal_discriminator(a, b)
    for ai, bi, di in zip(a, b, formula):
        res = minimize_scalar(
            lambda d, ai=ai, bi=bi: -(ai * math.log(d) + bi * math.log(1 - d)),
            bounds=(1e-9, 1 - 1e-9),
            method="bounded",
            options={"xatol": 1e-10},
        )
        assert abs(res.x - di) < 1e-6


def test_optimal_discriminator_in_torch_and_where_both_densities_vanish():
    p = torch.tensor([1.0, 0.0, 0.0, 2.0])
    q = torch.tensor([1.0, 1.0, 0.0, 0.0])
    d = gan.optimal_discriminator(p, q)
    assert torch.allclose(d, torch.tensor([0.5, 0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="same shape"):
        gan.optimal_discriminator(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="non-negative"):
        gan.optimal_discriminator(np.array([-1.0]), np.array([1.0]))


def test_js_divergence_matches_scipy():
    rng = np.random.default_rng(1)
    for _ in range(5):
        p, q = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
        assert abs(gan.js_divergence(p, q) - jensenshannon(p, q) ** 2) < 1e-10
    assert gan.js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(
        math.log(2)
    )
    with pytest.raises(ValueError, match="sum to 1"):
        gan.js_divergence(np.array([0.5, 0.2]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="same length"):
        gan.js_divergence(np.ones(2) / 2, np.ones(3) / 3)


def test_value_at_the_optimal_discriminator_is_minus_log4_plus_2_jsd():
    rng = np.random.default_rng(2)
    p, q = rng.dirichlet(np.ones(10)), rng.dirichlet(np.ones(10))
    d = gan.optimal_discriminator(p, q)
    value = float(np.sum(p * np.log(d)) + np.sum(q * np.log(1 - d)))
    assert value == pytest.approx(-math.log(4) + 2 * gan.js_divergence(p, q), abs=1e-12)


# ----------------------------------------------------------------------------- losses


def test_losses_equal_binary_cross_entropy_on_probabilities():
    torch.manual_seed(0)
    real, fake = torch.randn(7, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    expected_d = F.binary_cross_entropy(d_real, torch.ones(7, dtype=torch.float64)) + (
        F.binary_cross_entropy(d_fake, torch.zeros(5, dtype=torch.float64))
    )
    assert torch.allclose(gan.discriminator_loss(real, fake), expected_d)
    assert torch.allclose(gan.generator_loss(fake, "saturating"), torch.log(1 - d_fake).mean())
    assert torch.allclose(gan.generator_loss(fake, "nonsaturating"), -torch.log(d_fake).mean())


def test_losses_stay_finite_for_confident_discriminators():
    logits = torch.tensor([-200.0, 200.0], requires_grad=True)
    for kind in gan.GENERATOR_LOSSES:
        loss = gan.generator_loss(logits, kind)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert torch.isfinite(gan.discriminator_loss(logits, logits))


def test_saturating_gradient_vanishes_where_the_nonsaturating_one_does_not():
    # d/dl of log(1 - sigmoid(l)) is -sigmoid(l); of -log sigmoid(l) it is -(1 - sigmoid(l)).
    logit = torch.tensor([-8.0], requires_grad=True)  # D(G(z)) ~ 3e-4: D rejects the fake
    (g_sat,) = torch.autograd.grad(gan.generator_loss(logit, "saturating"), logit)
    (g_ns,) = torch.autograd.grad(gan.generator_loss(logit, "nonsaturating"), logit)
    assert g_sat.item() == pytest.approx(-torch.sigmoid(logit).item())
    assert g_ns.item() == pytest.approx(-(1 - torch.sigmoid(logit)).item())
    assert abs(g_ns.item()) > 1000 * abs(g_sat.item())


def _generator_loss_gradients_at_dstar(theta0: torch.Tensor, p_data: torch.Tensor):
    """Gradients at theta0 of E_{p_theta}[loss(D*_0)] for both generator losses, D*_0 frozen,
    for the discrete generator p_theta = softmax(theta); the expectation is an exact sum."""
    theta = theta0.clone().requires_grad_(True)
    p_theta = torch.softmax(theta, 0)
    d_star = gan.optimal_discriminator(p_data, torch.softmax(theta0, 0))  # frozen: no graph
    logits = torch.log(d_star) - torch.log1p(-d_star)
    grads = {}
    for kind in gan.GENERATOR_LOSSES:
        # generator_loss averages over a batch; here each point is weighted by p_theta instead
        terms = torch.stack(
            [gan.generator_loss(logits[i : i + 1], kind) for i in range(len(logits))]
        )
        (grads[kind],) = torch.autograd.grad((p_theta * terms).sum(), theta, retain_graph=True)
    return grads


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (p * torch.log(p / q)).sum()


def _jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    m = (p + q) / 2
    return 0.5 * _kl(p, m) + 0.5 * _kl(q, m)


def test_generator_losses_at_dstar_descend_2jsd_and_reverse_kl_minus_2jsd():
    # Chapter 4, eq. gan-ns-kl (Arjovsky & Bottou 2017): with D* of the current generator held
    # fixed, the saturating loss has the gradient of 2 JSD, the non-saturating one that of
    # KL(p_g || p_data) - 2 JSD; checked on a discrete family against autograd of the formulas.
    torch.manual_seed(0)
    p_data = torch.softmax(torch.randn(5, dtype=torch.float64), 0)
    for _ in range(3):
        theta0 = torch.randn(5, dtype=torch.float64)
        grads = _generator_loss_gradients_at_dstar(theta0, p_data)
        theta = theta0.clone().requires_grad_(True)
        p_theta = torch.softmax(theta, 0)
        (g_jsd,) = torch.autograd.grad(2 * _jsd(p_data, p_theta), theta, retain_graph=True)
        (g_ns,) = torch.autograd.grad(_kl(p_theta, p_data) - 2 * _jsd(p_data, p_theta), theta)
        assert torch.allclose(grads["saturating"], g_jsd, atol=1e-12)
        assert torch.allclose(grads["nonsaturating"], g_ns, atol=1e-12)
        assert not torch.allclose(grads["nonsaturating"], g_jsd, atol=1e-3)  # a different criterion


def test_losses_reject_bad_input():
    with pytest.raises(ValueError, match="kind must be one of"):
        gan.generator_loss(torch.zeros(3), "wasserstein")
    with pytest.raises(ValueError, match="1-D logits"):
        gan.generator_loss(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="1-D logits"):
        gan.discriminator_loss(torch.zeros(3, 1), torch.zeros(3))


# ----------------------------------------------------------------------------- networks


def test_network_shapes():
    G = gan.mlp_generator(z_dim=3, hidden=16, out_dim=2, depth=2)
    assert G(torch.randn(10, 3)).shape == (10, 2)
    D = gan.PackedDiscriminator(dim=2, hidden=16, pack=2)
    assert D(torch.randn(10, 2)).shape == (5,)
    for size in (8, 28):
        Gc, Dc = (
            gan.ConvGenerator(z_dim=4, image_size=size, width=8),
            gan.ConvDiscriminator(size, 8),
        )
        img = Gc(torch.randn(6, 4))
        assert img.shape == (6, 1, size, size)
        assert img.min() >= 0 and img.max() <= 1
        assert Dc(img).shape == (6,)


def test_packing_concatenates_consecutive_samples():
    D = gan.PackedDiscriminator(dim=2, hidden=8, pack=3)
    x = torch.randn(6, 2)
    expected = D.net(torch.cat([x[:3].ravel()[None], x[3:].ravel()[None]])).squeeze(-1)
    assert torch.allclose(D(x), expected)


@pytest.mark.parametrize(
    "call",
    [
        lambda: gan.fully_connected(0, 4, 2),
        lambda: gan.PackedDiscriminator(pack=0),
        lambda: gan.PackedDiscriminator(pack=2)(torch.zeros(3, 2)),
        lambda: gan.PackedDiscriminator()(torch.zeros(4, 3)),
        lambda: gan.ConvGenerator(image_size=10),
        lambda: gan.ConvGenerator(z_dim=4)(torch.zeros(2, 5)),
        lambda: gan.ConvDiscriminator(8)(torch.zeros(2, 8, 8)),
    ],
)
def test_networks_reject_bad_input(call):
    with pytest.raises(ValueError):
        call()


# ----------------------------------------------------------------------------- metrics


def test_mode_metrics_on_hand_made_samples():
    modes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    std = 0.01
    samples = torch.tensor(
        [
            [0.0, 0.0],  # mode 0, exact
            [0.02, 0.0],  # mode 0, 2 std away: high quality
            [1.0, 0.029],  # mode 1, 2.9 std: high quality
            [1.0, 0.031],  # mode 1, 3.1 std: not high quality
            [0.5, 0.5],  # between modes: not high quality
            [0.0, 1.0],  # mode 2
        ]
    )
    m = gan.mode_metrics(samples, modes, std)
    assert m["modes_captured"] == 3
    assert m["high_quality_rate"] == pytest.approx(4 / 6)
    np.testing.assert_array_equal(m["counts"], [2, 1, 1, 0])
    q = np.array([0.5, 0.25, 0.25])
    assert m["reverse_kl"] == pytest.approx(float(np.sum(q * np.log(q * 4))))


def test_mode_metrics_extremes():
    mix = gan.ring()
    perfect = gan.mode_metrics(mix.modes.repeat(10, 1), mix.modes, mix.std)
    assert perfect["modes_captured"] == 8 and perfect["high_quality_rate"] == 1.0
    assert perfect["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    collapsed = gan.mode_metrics(mix.modes[:1].repeat(10, 1), mix.modes, mix.std)
    assert collapsed["modes_captured"] == 1
    assert collapsed["reverse_kl"] == pytest.approx(math.log(8))
    nothing = gan.mode_metrics(torch.full((5, 2), 10.0), mix.modes, mix.std)
    assert nothing["modes_captured"] == 0 and nothing["high_quality_rate"] == 0.0
    assert nothing["reverse_kl"] == math.inf
    real = gan.mode_metrics(mix.sample(5000, torch.Generator().manual_seed(0)), mix.modes, mix.std)
    assert real["modes_captured"] == 8
    assert real["high_quality_rate"] > 0.98  # 1 - exp(-9/2) = 98.9% of a 2-D Gaussian


def test_mode_metrics_accepts_numpy_and_rejects_bad_input():
    mix = gan.grid()
    m = gan.mode_metrics(mix.modes.numpy(), mix.modes.numpy(), mix.std)
    assert m["modes_captured"] == 25
    with pytest.raises(ValueError, match="expected samples"):
        gan.mode_metrics(torch.zeros(5, 3), mix.modes, mix.std)
    with pytest.raises(ValueError, match="expected samples"):
        gan.mode_metrics(torch.zeros(0, 2), mix.modes, mix.std)
    with pytest.raises(ValueError, match="std"):
        gan.mode_metrics(torch.zeros(5, 2), mix.modes, 0.0)


# ----------------------------------------------------------------------------- training


TWO_MODES = gan.Mixture(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), std=0.1)


def _nets(init_seed: int = 0, hidden: int = 32) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(init_seed)  # the networks are the caller's: built before train_gan
    return gan.mlp_generator(2, hidden, 2, 2), gan.PackedDiscriminator(2, hidden, 2)


def _short_run(seed: int, steps: int = 300, nets=None, **kw) -> Run:
    G, D = nets if nets is not None else _nets()
    return gan.train_gan(
        G,
        D,
        TWO_MODES.sample,  # draws from torch's global generator: the call's own stream
        z_dim=2,
        steps=steps,
        batch_size=128,
        lr=2e-3,
        snapshot_every=steps // 3,
        n_snapshot=500,
        seed=seed,
        **{"progress": "off", **kw},
    )


def test_train_gan_returns_a_run_and_learns_two_modes(one_thread):
    run = _short_run(0)
    assert isinstance(run, Run) and not run.model.training
    assert sorted(run.snapshots) == [0, 100, 200, 300]
    assert len(run.history.values("d_loss")) == len(run.history.values("g_loss")) == 31
    x = run.snapshots[300]
    # both modes are visited and most samples sit near one of them
    assert (x[:, 0] < 0).float().mean().item() > 0.15
    assert (x[:, 0] > 0).float().mean().item() > 0.15
    near = torch.cdist(x, TWO_MODES.modes).min(dim=1).values < 0.5
    assert near.float().mean().item() > 0.7  # 0.84-0.88 over seeds 0-5


def test_train_gan_same_seed_same_numbers_whatever_the_global_state(one_thread):
    runs = []
    for global_seed, seed in ((1, 5), (2, 5), (1, 6)):
        nets = _nets()  # the same starting networks (torch.manual_seed(0) inside) ...
        dlbook.seed_everything(global_seed)  # ... then the caller's streams differ
        runs.append(_short_run(seed, steps=30, nets=nets))
    (a, b, c) = runs
    for step in a.snapshots:
        assert torch.equal(a.snapshots[step], b.snapshots[step])
    assert a.history.values("d_loss").tolist() == b.history.values("d_loss").tolist()
    assert not torch.equal(a.snapshots[30], c.snapshots[30])  # another seed, other numbers


def test_train_gan_leaves_the_callers_random_streams_alone(one_thread):
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    nets = _nets()
    dlbook.seed_everything(3)
    expected = draw()
    dlbook.seed_everything(3)
    _short_run(0, steps=10, nets=nets)
    assert draw() == expected


def test_train_gan_progress_off_prints_nothing(capsys):
    _short_run(0, steps=3)
    assert capsys.readouterr() == ("", "")
    _short_run(0, steps=3, progress="bar")  # the bar is text on stderr outside a notebook
    assert "GAN" in capsys.readouterr().err
    with pytest.raises(ValueError, match="progress must be one of"):
        _short_run(0, steps=3, progress="quiet")


@pytest.fixture
def setup_on_meta():
    """dlbook.setup on PyTorch's "meta" device, which holds shapes but no data: a device no
    trainer would pick by itself, so that landing on it shows where ``device=None`` points."""
    dlbook.setup(0, device="meta", quiet=True)
    yield
    runtime.reset()


def test_train_gan_trains_on_the_setup_device_by_default(setup_on_meta):
    G, D = gan.mlp_generator(2, 8, 2, 1), gan.PackedDiscriminator(2, 8, 1)
    with pytest.raises(NotImplementedError, match="meta"):  # its first snapshot has no data
        gan.train_gan(G, D, gan.ring().sample, z_dim=2, steps=1, batch_size=8, progress="off")
    assert next(G.parameters()).device.type == "meta"
    assert next(D.parameters()).device.type == "meta"


def test_train_gan_rejects_bad_settings():
    G, D = gan.mlp_generator(2, 8, 2, 1), gan.PackedDiscriminator(2, 8, 1)
    with pytest.raises(ValueError, match="loss must be one of"):
        gan.train_gan(G, D, gan.ring().sample, z_dim=2, steps=1, loss="hinge")
    for bad in ({"steps": 0}, {"z_dim": 0}, {"n_snapshot": 0}, {"snapshot_every": -1}):
        with pytest.raises(ValueError, match="steps"):
            gan.train_gan(G, D, gan.ring().sample, **{"z_dim": 2, "steps": 1, **bad})


def test_train_gan_keeps_an_exponential_moving_average_of_the_generator():
    G, D = _nets(hidden=8)
    run = gan.train_gan(
        G, D, gan.ring().sample, z_dim=2, steps=20, batch_size=16, ema=0.9, progress="off"
    )
    assert run.model is not G
    avg, now = run.model.state_dict(), G.state_dict()
    assert not torch.equal(avg["0.weight"], now["0.weight"])
    # the snapshots show the average; their noise is the first draw of the seed's stream
    z = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(run.snapshots[20], run.model(z))
        assert not torch.allclose(run.snapshots[20], G(z))
    with pytest.raises(ValueError, match="ema"):
        gan.train_gan(G, D, gan.ring().sample, z_dim=2, steps=1, ema=1.0)


@pytest.mark.gpu
def test_train_gan_on_the_gpu_gives_cuda_networks_and_cpu_snapshots():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    torch.manual_seed(0)
    G, D = gan.ConvGenerator(8, 28, 16), gan.ConvDiscriminator(28, 16)
    real = torch.rand(64, 1, 28, 28)
    run = gan.train_gan(
        G,
        D,
        lambda n: real[torch.randint(len(real), (n,))],
        z_dim=8,
        steps=5,
        batch_size=32,
        device="cuda",
        n_snapshot=10,
        progress="off",
    )
    assert next(G.parameters()).device.type == "cuda"
    assert run.snapshots[5].device.type == "cpu" and run.snapshots[5].shape == (10, 1, 28, 28)
