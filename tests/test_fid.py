"""Tests for dlbook.gan.fid: the Fréchet distance between Gaussians, against closed forms and
SciPy's general matrix square root."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.stats import ortho_group

from dlbook.gan import fid, frechet_distance, gaussian_stats, sqrtm_psd


def random_spd(d: int, rng: np.random.Generator, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d + (0 if rank else 0.1 * np.eye(d))


def reference_frechet(mu1, s1, mu2, s2) -> float:
    """The textbook formula with SciPy's general (non-symmetric) matrix square root."""
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_sqrtm_psd_squares_back_and_matches_scipy():
    rng = np.random.default_rng(0)
    for rank in (None, 3):  # full rank, and a singular matrix
        a = random_spd(6, rng, rank)
        r = sqrtm_psd(a)
        np.testing.assert_allclose(r @ r, a, atol=1e-10)
        np.testing.assert_allclose(r, r.T, atol=1e-12)
        assert np.linalg.eigvalsh(r).min() > -1e-7
        if rank is None:
            np.testing.assert_allclose(r, scipy.linalg.sqrtm(a).real, atol=1e-10)


def test_one_dimensional_closed_form():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
    for m1, s1, m2, s2 in [(0, 1, 0, 1), (1.5, 2.0, -0.5, 0.5), (3, 0.1, 3, 4)]:
        got = frechet_distance(np.array([m1]), np.array([[s1**2]]), np.array([m2]), [[s2**2]])
        assert got == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-12, abs=1e-12)


def test_known_covariances():
    # Commuting (diagonal) covariances: sum over coordinates of the 1-D form.
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 2.0])
    want = 9 + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(want, rel=1e-12)
    # Non-commuting full covariances: SciPy's general square root of S1 S2.
    rng = np.random.default_rng(1)
    for _ in range(5):
        a, b = random_spd(8, rng), random_spd(8, rng)
        m1, m2 = rng.normal(size=8), rng.normal(size=8)
        assert frechet_distance(m1, a, m2, b) == pytest.approx(
            reference_frechet(m1, a, m2, b), rel=1e-9
        )
        # symmetric in its two arguments, though the formula is not written symmetrically
        assert frechet_distance(m1, a, m2, b) == pytest.approx(
            frechet_distance(m2, b, m1, a), rel=1e-9
        )


def test_singular_covariance_and_a_point_mass():
    # A point mass (zero covariance) against N(0, S): ||mu||^2 + Tr S.
    rng = np.random.default_rng(2)
    s = random_spd(5, rng)
    mu = rng.normal(size=5)
    assert frechet_distance(mu, np.zeros((5, 5)), np.zeros(5), s) == pytest.approx(
        mu @ mu + np.trace(s), rel=1e-12
    )


def test_fid_of_a_sample_with_itself_and_of_two_samples_of_one_gaussian():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 10)) @ rng.normal(size=(10, 10))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-8)
    # two independent samples of one Gaussian: small, and smaller with more samples
    cov = random_spd(10, rng)
    root = sqrtm_psd(cov)

    def draw(n: int) -> np.ndarray:
        return rng.normal(size=(n, 10)) @ root

    small = np.mean([fid(draw(200), draw(200)) for _ in range(10)])
    large = np.mean([fid(draw(5000), draw(5000)) for _ in range(10)])
    assert large < small / 5
    assert large < 0.01 * np.trace(cov)
    # and a shifted Gaussian is at the squared shift, up to sampling
    shift = np.full(10, 0.5)
    assert fid(draw(20000), draw(20000) + shift) == pytest.approx(shift @ shift, rel=0.05)


def test_invariant_under_rotations_and_translations_of_the_features():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 12)) * np.linspace(0.2, 3, 12)
    y = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12)) / 3 + 0.3
    q = ortho_group.rvs(12, random_state=5)
    base = fid(x, y)
    assert base > 1.0
    assert fid(x @ q, y @ q) == pytest.approx(base, rel=1e-9)
    assert fid(x + 7.0, y + 7.0) == pytest.approx(base, rel=1e-9)
    # but not under a scaling: it measures distances in feature units
    assert fid(2 * x, 2 * y) == pytest.approx(4 * base, rel=1e-9)


def test_gaussian_stats_match_numpy_and_accept_tensors():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 4))
    mu, s = gaussian_stats(torch.tensor(x, dtype=torch.float64))
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(s, np.cov(x, rowvar=False))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="n >= 2"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="same d"):
        fid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="symmetric"):
        sqrtm_psd(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive semi-definite"):
        sqrtm_psd(np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="finite"):
        fid(np.full((3, 2), np.nan), np.zeros((3, 2)))


def test_digit_judge_is_accurate_reproducible_and_gives_features():
    from dlbook.data import load_digits
    from dlbook.gan import digit_judge, judge_features

    d = load_digits()
    judge = digit_judge(d.X_train, d.y_train, progress="off")
    again = digit_judge(d.X_train.reshape(-1, 1, 8, 8), d.y_train, progress="off")
    for p, q in zip(judge.parameters(), again.parameters()):
        assert torch.equal(p, q)
    with torch.no_grad():
        accuracy = (judge(torch.tensor(d.X_test)).argmax(1).numpy() == d.y_test).mean()
    assert accuracy > 0.95
    f = judge_features(judge, d.X_test)
    assert f.shape == (len(d.X_test), 128) and (f >= 0).all()  # after the ReLU
    # held-out real digits are close to the training set, a shuffled-pixel copy is not
    shuffled = d.X_test[:, np.random.default_rng(0).permutation(64)]
    train_f = judge_features(judge, d.X_train)
    assert fid(f, train_f) * 10 < fid(judge_features(judge, shuffled), train_f)
    with pytest.raises(ValueError, match="labels"):
        digit_judge(d.X_train[:5], d.y_train[:4], progress="off")
