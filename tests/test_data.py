"""Datasets: toy mixtures match their papers, splits are deterministic and disjoint, image sets are
scaled to [-1, 1], and missing files fail with an actionable message."""
from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ablate.data import DataUnavailableError, dataset_names, load_dataset
from ablate.train.batches import DataBundle
from ablate.train.config import ConfigError, DataConfig
from ablate.train.registry import UnknownChoiceError

CPU = torch.device("cpu")
TOY_SETS = ["gmm2", "gc_1m2m", "gc_2m2m", "moons", "checkerboard", "8gaussians"]


def load(name: str, seed: int = 0, **fields) -> DataBundle:
    return load_dataset(DataConfig(name=name, **fields), seed=seed)


# ------------------------------------------------------------------------------------------ names
def test_dataset_names_cover_the_documented_sets():
    assert set(dataset_names()) == set(TOY_SETS) | {"digits", "mnist", "fashion_mnist", "cifar10",
                                                    "folder"}


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownChoiceError) as err:
        load("imagenet")
    message = str(err.value)
    assert "imagenet" in message
    assert all(name in message for name in dataset_names())


# --------------------------------------------------------------------------------------- toy sets
@pytest.mark.parametrize("name", TOY_SETS)
def test_toy_sets_shapes_determinism_and_disjoint_draws(name):
    a = load(name, seed=3, n_train=500, n_holdout=200)
    assert a.kind == "points" and a.x_train.dtype == torch.float32
    assert a.x_train.shape == (500, 2) and a.x_holdout.shape == (200, 2)
    assert torch.equal(a.x_train, load(name, seed=3, n_train=500, n_holdout=200).x_train)
    assert not torch.allclose(a.x_train, load(name, seed=4, n_train=500, n_holdout=200).x_train)
    assert not torch.allclose(a.x_train[:200], a.x_holdout)  # independent draws, not one reused
    # the holdout draw does not depend on the training size
    assert torch.equal(a.x_holdout, load(name, seed=3, n_train=100, n_holdout=200).x_holdout)


@pytest.mark.parametrize("name", ["moons", "checkerboard", "8gaussians"])
def test_classic_toy_sets_are_standardised(name):
    x = load(name, n_train=20000).x_train
    assert torch.allclose(x.mean(0), torch.zeros(2), atol=0.05)
    assert torch.allclose(x.std(0), torch.ones(2), atol=0.05)


def _cluster_stats(x: torch.Tensor, labels: torch.Tensor, k: int):
    return ([x[labels == c].mean(0) for c in range(k)], [x[labels == c].std(0) for c in range(k)],
            [(labels == c).float().mean().item() for c in range(k)])


def test_gmm2_matches_vct_appendix_e():
    b = load("gmm2", n_train=20000)
    x = b.x_train
    upper, lower = x[x[:, 1] > 0], x[x[:, 1] <= 0]  # modes 20 stds apart: the sign separates them
    assert torch.allclose(upper.mean(0), torch.tensor([0.0, 0.5]), atol=0.005)
    assert torch.allclose(lower.mean(0), torch.tensor([0.0, -0.5]), atol=0.005)
    assert torch.allclose(upper.std(0), torch.full((2,), 0.05), atol=0.003)
    assert abs(len(upper) / len(x) - 0.5) < 0.02
    means, _, _ = _cluster_stats(x, b.y_train, 2)  # labels name the component
    assert sorted(round(m[1].item(), 1) for m in means) == [-0.5, 0.5]
    assert b.sample_noise is None  # VCT's prior: standard Gaussian
    assert b.num_classes == 2


@pytest.mark.parametrize("name", ["gc_1m2m", "gc_2m2m"])
def test_gc_data_is_two_modes_at_plus_minus_one(name):
    x = load(name, n_train=10000).x_train
    for sign in (1.0, -1.0):
        mode = x[x[:, 1] * sign > 0]
        assert torch.allclose(mode.mean(0), torch.tensor([1.0, sign]), atol=0.005)
        assert torch.allclose(mode.std(0), torch.full((2,), 0.01), atol=0.002)


def test_gc_2m2m_noise_is_bimodal_and_uses_the_global_rng():
    b = load("gc_2m2m")
    torch.manual_seed(7)
    z = b.noise(20000, CPU)
    assert z.shape == (20000, 2)
    for sign in (1.0, -1.0):
        mode = z[z[:, 1] * sign > 0]
        assert abs(len(mode) / len(z) - 0.5) < 0.02
        assert torch.allclose(mode.mean(0), torch.tensor([-1.0, sign]), atol=0.005)
        assert torch.allclose(mode.std(0), torch.full((2,), 0.01), atol=0.002)
    assert (z[:, 1].abs() < 0.5).sum() == 0  # nothing between the modes
    torch.manual_seed(7)
    assert torch.equal(b.noise(20000, CPU), z)  # same global seed, same noise
    assert not torch.equal(b.noise(20000, CPU), z)  # the global RNG advanced


def test_gc_1m2m_noise_is_one_gaussian_spanning_both_modes():
    torch.manual_seed(0)
    z = load("gc_1m2m").noise(20000, CPU)
    assert torch.allclose(z.mean(0), torch.tensor([-1.0, 0.0]), atol=0.01)
    assert torch.allclose(z.std(0), torch.tensor([0.01, 0.5]), atol=0.01)
    assert (z[:, 1].abs() < 0.1).float().mean() > 0.1  # unimodal: mass at the centre


def test_noise_override():
    torch.manual_seed(0)
    z = load("gmm2", noise="gmm2").noise(4000, CPU)
    assert torch.allclose(z[:, 0].mean(), torch.tensor(-1.0), atol=0.01)
    assert (z[:, 1].abs() < 0.5).sum() == 0
    standard = load("gc_2m2m", noise="gaussian")
    assert standard.sample_noise is None and standard.meta["noise"] == "gaussian"
    assert torch.allclose(standard.noise(20000, CPU).std(0), torch.ones(2), atol=0.03)
    with pytest.raises(ConfigError, match=r"data\.noise.*valid: gaussian, gc_1m, gmm2"):
        load("gmm2", noise="laplace")


def test_options_that_do_not_fit_the_dataset_are_errors():
    with pytest.raises(ConfigError, match="data.class_conditional.*checkerboard"):
        load("checkerboard", class_conditional=True)
    with pytest.raises(ConfigError, match="data.xflip"):
        load("moons", xflip=True)
    with pytest.raises(ConfigError, match="data.noise='gmm2' is not a noise of data.name='digits'.*"
                                          "valid: gaussian$"):
        load("digits", noise="gmm2")


# ----------------------------------------------------------------------------------------- digits
def _row_counts(x: torch.Tensor) -> Counter:
    return Counter(row.tobytes() for row in x.reshape(len(x), -1).numpy())


def test_digits_scaled_labelled_and_split_disjointly():
    from sklearn.datasets import load_digits

    b = load("digits", xflip=True)
    n = len(load_digits().images)
    assert b.kind == "images" and b.xflip
    assert b.x_train.shape[1:] == (1, 8, 8) and b.x_holdout.shape[1:] == (1, 8, 8)
    assert len(b.x_holdout) == round(0.2 * n) and len(b.x_train) + len(b.x_holdout) == n
    assert b.x_train.min() == -1.0 and b.x_train.max() == 1.0
    assert set(b.y_train.tolist()) == set(range(10)) and b.num_classes == 10
    # a partition of the full set: every image lands in exactly one split
    full = torch.from_numpy(load_digits().images).float().unsqueeze(1) / 8 - 1
    assert _row_counts(b.x_train) + _row_counts(b.x_holdout) == _row_counts(full)
    # labels travel with their images
    first = b.x_train[0, 0]
    index = next(i for i in range(n) if torch.equal(full[i, 0], first))
    assert b.y_train[0].item() == load_digits().target[index]
    # the split is fixed (same holdout for every training seed); n_holdout caps it
    assert torch.equal(load("digits", seed=5).x_holdout, b.x_holdout)
    assert len(load("digits", n_holdout=50).x_holdout) == 50


def test_digits_resize():
    x = load("digits", image_size=16).x_train
    assert x.shape[1:] == (1, 16, 16) and x.min() >= -1.0 and x.max() <= 1.0


# ----------------------------------------------------------------------------------- image folder
def _write_png(path: Path, color, size=(12, 10), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_folder_with_class_subfolders(tmp_path):
    for i in range(3):
        _write_png(tmp_path / "cats" / f"{i}.png", (255, 0, 0))
        _write_png(tmp_path / "dogs" / f"{i}.PNG", (0, 0, 255))
    b = load("folder", root=str(tmp_path), image_size=8, class_conditional=True)
    assert b.kind == "images" and b.num_classes == 2 and b.meta["classes"] == ["cats", "dogs"]
    assert b.x_train.shape[1:] == (3, 8, 8) and len(b.x_train) + len(b.x_holdout) == 6
    x = torch.cat([b.x_train, b.x_holdout])
    y = torch.cat([b.y_train, b.y_holdout])
    red, blue = torch.tensor([1.0, -1.0, -1.0]), torch.tensor([-1.0, -1.0, 1.0])
    for image, label in zip(x, y):
        expected = red if label == 0 else blue
        assert torch.allclose(image.mean((1, 2)), expected, atol=1e-6)


def test_flat_grayscale_folder_has_no_labels(tmp_path):
    for i in range(5):
        _write_png(tmp_path / f"{i}.png", 255 * (i % 2), mode="L")
    b = load("folder", root=str(tmp_path), image_size=4)
    assert b.x_train.shape[1:] == (1, 4, 4) and b.y_train is None and b.num_classes == 0
    assert set(torch.cat([b.x_train, b.x_holdout]).unique().tolist()) == {-1.0, 1.0}


def test_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.image_size"):
        load("folder", root=str(tmp_path))
    with pytest.raises(DataUnavailableError, match="no PNG/JPG images"):
        load("folder", root=str(tmp_path), image_size=8)
    missing = tmp_path / "nowhere"
    with pytest.raises(DataUnavailableError, match=str(missing)):
        load("folder", root=str(missing), image_size=8)
    _write_png(tmp_path / "a.png", (0, 0, 0))
    _write_png(tmp_path / "cls" / "b.png", (0, 0, 0))
    with pytest.raises(ConfigError, match="mixes"):
        load("folder", root=str(tmp_path), image_size=8)


# ------------------------------------------------------------------------------ torchvision sets
@pytest.mark.parametrize("name,title", [("mnist", "MNIST"), ("fashion_mnist", "Fashion-MNIST"),
                                        ("cifar10", "CIFAR-10")])
def test_torchvision_sets_offline_raise_actionable_error(tmp_path, name, title):
    with pytest.raises(DataUnavailableError) as err:
        load(name, root=str(tmp_path), download=False)
    message = str(err.value)
    assert title in message and str(tmp_path) in message and "download: true" in message


def test_torchvision_root_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataUnavailableError, match=str(tmp_path / "data")):
        load("mnist", root="~/data", download=False)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The MNIST IDX format: magic (0, 0, type 0x08 = uint8, ndim), big-endian dims, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_files_load_scaled_and_padded_to_32(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    images = {"train": rng.integers(0, 256, (6, 28, 28)), "t10k": rng.integers(0, 256, (4, 28, 28))}
    images["train"][0] = 255
    for split, pixels in images.items():
        _write_idx(raw / f"{split}-images-idx3-ubyte", pixels)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", np.arange(len(pixels)) % 10)
    b = load("mnist", root=str(tmp_path), download=False, image_size=32)
    assert b.x_train.shape == (6, 1, 32, 32) and b.x_holdout.shape == (4, 1, 32, 32)
    assert b.y_holdout.tolist() == [0, 1, 2, 3] and b.num_classes == 10
    inner = b.x_holdout[:, 0, 2:30, 2:30]
    assert torch.allclose(inner, torch.from_numpy(images["t10k"]).float() / 127.5 - 1)
    assert (b.x_train[0, 0, :2] == -1).all() and (b.x_train[0, 0, 2:30, 2:30] == 1).all()
    assert load("mnist", root=str(tmp_path), download=False).x_train.shape[1:] == (1, 28, 28)
