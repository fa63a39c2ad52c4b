import numpy as np
import pytest

from adegan.runtime.score import abnormality_score, calibrate, pattern_only_score, reconstruction_probability


def probs_with_max(m: np.ndarray, K: int) -> np.ndarray:
    """(N, K) distributions whose max is m (the rest spread evenly)."""
    rest = (1 - m) / (K - 1)
    probs = np.repeat(rest[:, None], K, axis=1)
    probs[:, 0] = m
    return probs


@pytest.mark.parametrize("mode", ["cdf", "two-sided"])
def test_score_range(mode):
    rng = np.random.default_rng(0)
    K = 10
    errors = rng.exponential(1.0, 2000) * rng.choice([0.01, 1, 100], 2000)
    probs = rng.dirichlet(np.full(K, 0.3), 2000)
    scores = abnormality_score(errors, probs, mu_e=1.0, sigma_e=0.5, mode=mode)
    assert scores.min() >= 0.0 and scores.max() <= 1 - 1 / K + 1e-12
    # the extremes are reached: perfect confidence & tiny error -> ~0; huge error -> 1 - 1/K
    assert abnormality_score(np.array([1e6]), probs[:1], 1.0, 0.5, mode)[0] == pytest.approx(1 - 1 / K)


def test_score_is_monotone_in_error_and_in_confidence():
    K = 10
    errors = np.linspace(0, 5, 200)
    for m in (0.3, 0.5, 0.99):
        scores = abnormality_score(errors, probs_with_max(np.full(200, m), K), 1.0, 0.5, "cdf")
        assert np.all(np.diff(scores) >= -1e-15), "A must not decrease as e grows"
        assert scores[-1] > scores[0]
    # at m = 1/K (no pattern confidence at all) A is 1 - 1/K whatever the error
    flat = abnormality_score(errors, probs_with_max(np.full(200, 1 / K), K), 1.0, 0.5, "cdf")
    assert np.allclose(flat, 1 - 1 / K)
    m = np.linspace(1 / K, 1, 200)
    for e in (0.2, 1.0, 3.0):
        scores = abnormality_score(np.full(200, e), probs_with_max(m, K), 1.0, 0.5, "cdf")
        assert np.all(np.diff(scores) <= 1e-15), "A must not increase as m grows"
        assert scores[0] > scores[-1]


def test_two_sided_mode_flags_errors_far_on_either_side():
    p = reconstruction_probability(np.array([1.0 - 1.5, 1.0, 1.0 + 1.5]), 1.0, 0.5, "two-sided")
    assert p[0] == pytest.approx(p[2]) and p[1] == 0.0 and p[0] > 0.99
    one_sided = reconstruction_probability(np.array([-0.5, 1.0, 2.5]), 1.0, 0.5, "cdf")
    assert one_sided[1] == pytest.approx(0.5) and one_sided[0] < 0.01 and one_sided[2] > 0.99


def test_pattern_only_score_and_bad_shapes():
    probs = np.array([[0.7, 0.3], [0.5, 0.5]])
    assert pattern_only_score(probs) == pytest.approx([0.3, 0.5])
    with pytest.raises(ValueError):
        abnormality_score(np.zeros(3), probs, 0, 1)
    with pytest.raises(ValueError):
        reconstruction_probability(np.zeros(2), 0, 1, "nope")


def test_calibrate_sets_threshold_at_target_fpr():
    rng = np.random.default_rng(1)
    errors = rng.normal(1.0, 0.2, 5000)
    probs = rng.dirichlet(np.ones(10), 5000)
    calibration = calibrate(errors, probs, target_fpr=0.05)
    assert calibration.mu_e == pytest.approx(1.0, abs=0.02)
    assert calibration.sigma_e == pytest.approx(0.2, abs=0.01)
    scores = abnormality_score(errors, probs, calibration.mu_e, calibration.sigma_e)
    assert (scores > calibration.threshold).mean() == pytest.approx(0.05, abs=0.002)
    assert type(calibration).from_dict(calibration.to_dict()) == calibration
