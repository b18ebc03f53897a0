"""The Evaluator: one row per evaluation, cached reference statistics, reproducible FID, pictures."""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torch import Tensor

from ablate import fid
from ablate.evaluation import Evaluator
from ablate.train.batches import DataBundle
from ablate.train.config import EvalConfig

CPU = torch.device("cpu")


def digits_bundle() -> DataBundle:
    """sklearn's 8x8 digits in [-1, 1], 1437 labelled training images and 360 held out."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    labels = torch.tensor(digits.target)
    return DataBundle("digits", images[:1437], images[1437:], "images", labels[:1437], labels[1437:], 10)


def gaussian_points() -> DataBundle:
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(1200, 2, generator=generator) * torch.tensor([1.0, 0.5]) + torch.tensor([1.0, -1.0])
    return DataBundle("gauss", points[:1000], points[1000:], "points")


def noisy_copies(data: DataBundle, noise: float) -> Callable[[int, int, int], Tensor]:
    """A stand-in for the EMA model: training images plus seeded noise that shrinks with more steps."""

    def sample(steps: int, n: int, seed: int) -> Tensor:
        generator = torch.Generator().manual_seed(seed)
        index = torch.randint(len(data.x_train), (n,), generator=generator)
        jitter = torch.randn((n, *data.shape), generator=generator)
        return (data.x_train[index] + noise / steps * jitter).clamp(-1, 1)

    return sample


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session (test_metrics.py uses the same path): the small CNN trains once."""
    return tmp_path_factory.getbasetemp() / "ablate-eval-cache"


def cnn_config(cache: Path, **fields) -> EvalConfig:
    return EvalConfig(extractor="ablate-cnn", cache_dir=str(cache), **{"samples": 200, **fields})


def test_image_row_has_fid_per_step_count_and_better_samples_score_better(shared_cache: Path, tmp_path: Path):
    data = digits_bundle()
    evaluator = Evaluator(cnn_config(shared_cache), data, str(tmp_path), CPU)
    row = evaluator(noisy_copies(data, noise=0.8), step=100)
    assert set(row) == {"fid_1step", "fid_2step", "fid_extractor", "eval_s", "samples_png"}
    assert row["fid_extractor"] == "ablate-cnn-digits-v1" and row["eval_s"] > 0
    assert row["fid_2step"] < row["fid_1step"]  # half the noise after two steps


def test_reference_statistics_are_computed_once_across_evaluators(shared_cache: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch):
    """Two trials sharing a cache: only the first runs the extractor over the reference images."""
    cache = tmp_path / "cache"
    shutil.copytree(shared_cache / "extractors", cache / "extractors")  # the trained CNN, not statistics
    seen = []
    forward = fid.SmallCNNFeatureExtractor.forward

    def counting_forward(self, pixels: Tensor) -> tuple[Tensor, ...]:
        seen.append(len(pixels))
        return forward(self, pixels)

    monkeypatch.setattr(fid.SmallCNNFeatureExtractor, "forward", counting_forward)
    data = digits_bundle()
    cfg = cnn_config(cache, samples=150, grid=False)
    first = Evaluator(cfg, data, None, CPU)(noisy_copies(data, 0.5), step=10)
    images_first, seen[:] = sum(seen), []
    second = Evaluator(cfg, data, None, CPU)(noisy_copies(data, 0.5), step=10)
    assert images_first == 150 + 2 * 150  # reference subset once, generated once per step count
    assert sum(seen) == 2 * 150
    assert second["fid_1step"] == first["fid_1step"] and second["fid_2step"] == first["fid_2step"]
    assert len(list((cache / "fidelity").glob("*-stat-fid-*.pt"))) == 1
    assert not list((cache / "fidelity").glob("tmp*"))


def test_same_seed_and_model_give_the_same_fid(shared_cache: Path):
    data = digits_bundle()
    model = noisy_copies(data, noise=0.6)
    cfg = cnn_config(shared_cache, grid=False, steps=[1])
    first = Evaluator(cfg, data, None, CPU)(model, step=1)
    again = Evaluator(cfg, data, None, CPU)(model, step=1)
    other_cfg = cnn_config(shared_cache, grid=False, steps=[1], seed=33)
    other_seed = Evaluator(other_cfg, data, None, CPU)(model, step=1)
    assert again["fid_1step"] == first["fid_1step"]
    assert other_seed["fid_1step"] != first["fid_1step"]  # the seed reaches the sampler
    assert "samples_png" not in first


def test_image_grid_has_one_row_per_step_count(shared_cache: Path, tmp_path: Path):
    data = digits_bundle()
    row = Evaluator(cnn_config(shared_cache, steps=[1, 2, 4]), data, str(tmp_path), CPU)(
        noisy_copies(data, 0.5), step=2500)
    assert row["samples_png"] == "samples/step_00002500.png"
    image = Image.open(tmp_path / row["samples_png"])
    cell = 8 * 4 + 2  # 8x8 digits enlarged 4x to 32 px, 2 px padding
    assert image.size == (16 * cell + 2, 3 * cell + 2)  # 16 columns, rows 1, 2 and 4 steps


def test_evaluation_leaves_the_training_rng_alone(shared_cache: Path):
    data = digits_bundle()
    evaluator = Evaluator(cnn_config(shared_cache, grid=False, steps=[1]), data, None, CPU)
    torch.manual_seed(123)
    evaluator(noisy_copies(data, 0.5), step=1)
    after_evaluation = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after_evaluation)


def test_points_row_has_w2_and_frechet_and_a_scatter(tmp_path: Path):
    data = gaussian_points()

    def shifted(steps: int, n: int, seed: int) -> Tensor:
        """Fresh draws of the data distribution, shifted by 1/steps along x."""
        generator = torch.Generator().manual_seed(seed)
        points = torch.randn(n, 2, generator=generator) * torch.tensor([1.0, 0.5]) + torch.tensor([1.0, -1.0])
        return points + torch.tensor([1.0 / steps, 0.0])

    cfg = EvalConfig(samples=200, steps=[1, 4])
    row = Evaluator(cfg, data, str(tmp_path), CPU)(shifted, step=7)
    assert set(row) == {"w2_1step", "frechet_1step", "w2_4step", "frechet_4step", "eval_s", "samples_png"}
    assert row["w2_4step"] < row["w2_1step"]
    assert row["frechet_1step"] == pytest.approx(1.0, abs=0.3)  # mean shift 1 dominates d^2
    assert Image.open(tmp_path / row["samples_png"]).size == (2 * 400, 400)  # 4-inch panels at 100 dpi


def test_non_finite_samples_give_nan_metrics():
    def diverged(steps: int, n: int, seed: int) -> Tensor:
        return torch.full((n, 2), float("nan"))

    row = Evaluator(EvalConfig(samples=50, grid=False, steps=[1]), gaussian_points(), None, CPU)(diverged, 3)
    assert math.isnan(row["w2_1step"]) and math.isnan(row["frechet_1step"])
