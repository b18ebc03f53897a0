"""Metrics: exact W2 and Frechet distance against closed forms; FID through torch-fidelity, offline."""
from __future__ import annotations

import math
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch_fidelity import feature_extractor_inceptionv3 as inception_module

from ablate import fid, metrics
from ablate.train.batches import DataBundle
from ablate.train.config import EvalConfig


def digits_bundle() -> DataBundle:
    """sklearn's 8x8 digits in [-1, 1], 1437 labelled training images and 360 held out."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    labels = torch.tensor(digits.target)
    return DataBundle("digits", images[:1437], images[1437:], "images", labels[:1437], labels[1437:], 10)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session (test_evaluation.py uses the same path): the small CNN trains once."""
    return tmp_path_factory.getbasetemp() / "ablate-eval-cache"


# ---------------------------------------------------------------------------------------------- W2
def test_w2_of_a_set_with_itself_is_zero_and_ignores_order():
    points = np.random.default_rng(0).normal(size=(200, 2))
    assert metrics.w2_distance(points, points) == 0.0
    assert metrics.w2_distance(points, points[::-1].copy()) == pytest.approx(0.0, abs=1e-12)


def test_w2_of_a_translation_is_the_shift_length():
    """Translating by c: the identity matching is optimal, so W2 = |c| exactly."""
    points = torch.randn(300, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    shift = torch.tensor([3.0, -4.0], dtype=torch.float64)
    assert metrics.w2_distance(points, points + shift) == pytest.approx(5.0, rel=1e-9)


def test_w2_of_a_scaling_about_the_mean_matches_the_monotone_map():
    """y = m + a (x - m), a > 0, is the gradient of a convex function: W2^2 = (a-1)^2 mean |x - m|^2."""
    points = np.random.default_rng(2).normal(size=(250, 2))
    centred = points - points.mean(0)
    expected = abs(3.0 - 1.0) * math.sqrt((centred ** 2).sum(1).mean())
    assert metrics.w2_distance(points, points.mean(0) + 3.0 * centred) == pytest.approx(expected, rel=1e-9)


def test_w2_of_two_gaussian_samples_in_1d_equals_the_sorted_matching():
    """In 1-D the optimal matching of equal-size sets pairs sorted values (exact, not entropic)."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.0, 1.0, 400), rng.normal(2.0, 0.5, 400)
    expected = math.sqrt(np.mean((np.sort(x) - np.sort(y)) ** 2))
    assert metrics.w2_distance(x, y) == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------------------------- Frechet
def with_moments(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    """n points whose sample mean and (unbiased) sample covariance are exactly ``mean`` and ``cov``."""
    z = np.random.default_rng(seed).normal(size=(n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(z, rowvar=False)))).T
    return mean + z @ np.linalg.cholesky(cov).T


def test_frechet_distance_of_two_gaussians_matches_the_closed_form():
    """d^2 = |m1 - m2|^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2; for a 2x2 PSD matrix M,
    tr M^1/2 = sqrt(tr M + 2 sqrt(det M)), and tr/det of S1^1/2 S2 S1^1/2 equal those of S1 S2."""
    m1, m2 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    s1, s2 = np.array([[2.0, 0.8], [0.8, 1.0]]), np.array([[1.0, -0.3], [-0.3, 3.0]])
    product = s1 @ s2
    tr_sqrt = math.sqrt(np.trace(product) + 2 * math.sqrt(np.linalg.det(product)))
    expected = float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
    x, y = with_moments(500, m1, s1, seed=4), with_moments(700, m2, s2, seed=5)
    assert metrics.frechet_distance(x, y) == pytest.approx(expected, rel=1e-9)
    assert metrics.frechet_distance(torch.tensor(x), torch.tensor(x)) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_1d_gaussians_is_mean_and_std_gap():
    """In 1-D: d^2 = (m1 - m2)^2 + (s1 - s2)^2."""
    x = with_moments(300, np.array([1.0]), np.array([[4.0]]), seed=6)
    y = with_moments(300, np.array([-2.0]), np.array([[0.25]]), seed=7)
    assert metrics.frechet_distance(x[:, 0], y[:, 0]) == pytest.approx(9.0 + 1.5 ** 2, rel=1e-9)


# --------------------------------------------------------------------------------------------- FID
def test_images_become_uint8_rgb_for_torch_fidelity():
    images = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 2, 2)
    pixels = fid.to_uint8_rgb(images)
    assert pixels.dtype == torch.uint8 and pixels.shape == (1, 3, 2, 2)
    assert pixels[0, 2].flatten().tolist() == [0, 128, 255, 255]
    with pytest.raises(ValueError, match="N, 1|3, H, W"):
        fid.to_uint8_rgb(torch.zeros(2, 2, 4, 4))


def test_small_cnn_fid_is_zero_for_the_data_itself_and_large_for_noise(shared_cache: Path):
    data = digits_bundle()
    cfg = EvalConfig(extractor="ablate-cnn", cache_dir=str(shared_cache), samples=2000)
    itself = fid.compute(data.x_train, data, cfg, split="train")
    held_out = fid.compute(data.x_holdout, data, cfg, split="train")
    noise = fid.compute(torch.rand(500, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1,
                        data, cfg, split="train")
    assert itself["fid_extractor"] == noise["fid_extractor"] == "ablate-cnn-digits-v1"
    assert abs(itself["fid"]) < 1e-3
    assert noise["fid"] > 10 * held_out["fid"] > 0


def test_small_cnn_is_trained_cached_and_versioned(shared_cache: Path):
    data = digits_bundle()
    cfg = EvalConfig(extractor="ablate-cnn", cache_dir=str(shared_cache))
    name, weights = fid.resolve_extractor(data, cfg)
    assert name == "ablate-cnn-digits-v1"
    assert weights.parent == shared_cache / "extractors" and weights.name.startswith(name)
    checkpoint = torch.load(weights, weights_only=True)
    assert checkpoint["holdout_accuracy"] > 0.85  # a real classifier, not random features
    assert not list(weights.parent.glob("*.tmp"))


def test_small_cnn_training_is_deterministic_and_keeps_the_callers_rng(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(fid, "CNN_TRAIN_STEPS", 20)  # determinism shows after a few steps
    data = digits_bundle()
    data.x_train, data.y_train = data.x_train[:200], data.y_train[:200]
    state = torch.get_rng_state()
    first, second = fid.train_small_cnn(data), fid.train_small_cnn(data)
    assert torch.equal(torch.get_rng_state(), state)
    for key, value in first["state_dict"].items():
        assert torch.equal(value, second["state_dict"][key]), key


def test_small_cnn_needs_labels(tmp_path: Path):
    data = digits_bundle()
    data.y_train = None
    with pytest.raises(fid.FIDUnavailableError, match="no labels.*inception-v3-compat"):
        fid.resolve_extractor(data, EvalConfig(extractor="ablate-cnn", cache_dir=str(tmp_path)))


def test_unknown_extractor_lists_the_valid_ones(tmp_path: Path):
    with pytest.raises(ValueError, match="eval.extractor.*inception-v3-compat, ablate-cnn"):
        fid.resolve_extractor(digits_bundle(), EvalConfig(extractor="vgg", cache_dir=str(tmp_path)))


def test_offline_without_inception_weights_says_how_to_provide_them(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    def offline(url: str, dst: str, **kwargs) -> None:
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    data = digits_bundle()
    with pytest.raises(fid.FIDUnavailableError) as caught:
        fid.compute(data.x_holdout[:4], data, EvalConfig(cache_dir=str(tmp_path)))
    message = str(caught.value)
    file_name = inception_module.URL_INCEPTION_V3.rsplit("/", 1)[-1]
    for needed in ("eval.fid_weights", inception_module.URL_INCEPTION_V3, file_name, "ablate-cnn"):
        assert needed in message


def test_missing_weights_file_names_the_config_key(tmp_path: Path):
    cfg = EvalConfig(fid_weights=str(tmp_path / "missing.pth"), cache_dir=str(tmp_path))
    with pytest.raises(fid.FIDUnavailableError, match="eval.fid_weights: no file at .*missing.pth"):
        fid.resolve_extractor(digits_bundle(), cfg)


@pytest.fixture
def random_inception_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A randomly initialised torch-fidelity Inception-v3 state dict, built without any download."""
    cls = inception_module.FeatureExtractorInceptionV3
    with monkeypatch.context() as patch:
        patch.setattr(inception_module, "load_state_dict_from_url", lambda *args, **kwargs: None)
        patch.setattr(cls, "load_state_dict", lambda self, state_dict: None)
        torch.manual_seed(0)
        network = cls("inception-v3-compat", ["2048"])
    path = tmp_path / "random-inception.pth"
    torch.save(network.state_dict(), path)
    return path


@pytest.mark.slow
def test_inception_path_runs_offline_from_a_weights_file(tmp_path: Path, random_inception_weights: Path):
    """The real inception-v3-compat code path (the number is meaningless with random weights)."""
    data = digits_bundle()
    cfg = EvalConfig(fid_weights=str(random_inception_weights), cache_dir=str(tmp_path / "cache"), samples=4)
    result = fid.compute(data.x_holdout[:4], data, cfg, split="train")
    assert result["fid_extractor"] == "inception-v3-compat" and math.isfinite(result["fid"])
    cache = tmp_path / "cache" / "fidelity"
    cached = list(cache.glob("ablate-digits-train-n4-*-inception-v3-compat-stat-*"))
    assert len(cached) == 1
