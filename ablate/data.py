"""Datasets the trainer consumes: 2-D toy sets, sklearn digits, torchvision sets and image folders.

Every loader turns a :class:`~ablate.train.config.DataConfig` into a :class:`DataBundle` held in CPU
memory: points have shape (N, 2); images (N, C, H, W) scaled to [-1, 1]. Toy sets are generated from
``seed`` (train and holdout are independent draws); image sets use a fixed split so that every seed of
a sweep is evaluated against the same held-out images.

The noise distribution p_z is the standard Gaussian unless the dataset (GC Sec. 4.2) or ``data.noise``
names another one; non-Gaussian noise is drawn from the *global* torch RNG (on the CPU, then moved) so
that a trainer checkpoint of ``torch.get_rng_state()`` reproduces it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import socket
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ablate.train.batches import DataBundle, NoiseSampler
from ablate.train.checks import DatasetInfo, data_problems
from ablate.train.config import ConfigError, DataConfig
from ablate.train.registry import Registry

log = logging.getLogger(__name__)

DatasetLoader = Callable[[DataConfig, int], DataBundle]
DatasetDescriber = Callable[[DataConfig], DatasetInfo]
NoiseFactory = Callable[[], Optional[NoiseSampler]]

DATASETS: Registry[DatasetLoader] = Registry("dataset")
#: per dataset, what it is without loading it (kind, labels, training size): validation reads these
DESCRIPTIONS: Registry[DatasetDescriber] = Registry("dataset")
NOISES: Registry[NoiseFactory] = Registry("noise")
IMAGE_NOISES = ("gaussian",)  # the other noises are 2-D mixtures (GC Sec. 4.2)

HOLDOUT_FRACTION = 0.2  # digits / folder: holdout = min(20 %, n_holdout) of the images
SPLIT_SEED = 0  # fixed image split: the same holdout for every training seed
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation, so an offline machine fails instead of hanging
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DataUnavailableError(RuntimeError):
    """A dataset's files are missing or cannot be fetched; the message says where and how to fix it."""


def dataset_names() -> list[str]:
    """The valid values of ``data.name``."""
    return DATASETS.names()


def describe_dataset(cfg: DataConfig) -> DatasetInfo:
    """What ``cfg.name`` is, without reading or downloading anything (``UnknownChoiceError`` lists the
    valid names of an unknown dataset)."""
    return DESCRIPTIONS.get(cfg.name)(cfg)


def load_dataset(cfg: DataConfig, seed: int = 0) -> DataBundle:
    """Load ``cfg.name``, attach its noise distribution p_z and check the options apply to it.

    Raises ``UnknownChoiceError`` (lists the valid names) for an unknown dataset, ``ConfigError`` for
    options that do not fit the dataset (:func:`ablate.train.checks.data_problems`, before reading and
    again on what was read), and ``DataUnavailableError`` when files are missing.
    """
    loader = DATASETS.get(cfg.name)
    _check(cfg, describe_dataset(cfg))
    bundle = loader(cfg, seed)
    _check(cfg, DatasetInfo.of_bundle(bundle))
    noise_name = cfg.noise or bundle.meta.get("noise", "gaussian")
    bundle.sample_noise = NOISES.get(noise_name)()
    bundle.xflip = cfg.xflip
    bundle.meta["noise"] = noise_name
    log.info("dataset %s: %d train / %d holdout, shape %s, noise %s", cfg.name,
             len(bundle.x_train), len(bundle.x_holdout), bundle.shape, noise_name)
    return bundle


def _check(cfg: DataConfig, dataset: DatasetInfo) -> None:
    found = data_problems(cfg, dataset)
    if found:
        raise _config_error("; ".join(map(str, found)))


def _config_error(problem: str) -> ConfigError:
    return ConfigError("dataset config", [problem])


# ------------------------------------------------------------------------------- Gaussian mixtures
@dataclass(frozen=True)
class GaussianMixture2D:
    """Equal-weight mixture of axis-aligned 2-D Gaussians: ``means[k]``, per-axis ``stds[k]``."""

    means: tuple[tuple[float, float], ...]
    stds: tuple[tuple[float, float], ...]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """n points and their component labels from a seeded numpy generator (dataset draws)."""
        labels = rng.integers(len(self.means), size=n)
        points = np.asarray(self.means)[labels] + np.asarray(self.stds)[labels] * \
            rng.standard_normal((n, 2))
        return torch.from_numpy(points).float(), torch.from_numpy(labels).long()

    def sample_global(self, n: int, device: torch.device) -> Tensor:
        """n points from the global torch RNG (noise draws that trainer checkpoints capture)."""
        labels = torch.randint(len(self.means), (n,))
        points = torch.tensor(self.means)[labels] + torch.tensor(self.stds)[labels] * torch.randn(n, 2)
        return points.to(device)


# VCT App. E: "mixture of two Gaussians, with means (0, 0.5) and (0, -0.5), and standard deviation
# 0.05" (weights not stated: equal).
VCT_TOY = GaussianMixture2D(means=((0.0, 0.5), (0.0, -0.5)), stds=((0.05, 0.05),) * 2)

# GC Sec. 4.2: data is "a mixture of 2 Gaussians with equal weight", noise "a single Gaussian or a
# mixture of 2 Gaussians with equal weight". The paper gives no means or stds; these follow the
# authors' released notebooks: data modes at (1, -1) and (1, 1), 2m noise modes at (-1, -1) and
# (-1, 1), all with std 0.01; the 1m noise is centred at (-1, 0) with stds (0.01, 0.5), so that it
# spans both data modes. Data and noise are on the same scale because the bridge kernel interpolates
# x_i = alpha_i x + (1 - alpha_i) z (GC App. B).
GC_DATA = GaussianMixture2D(means=((1.0, -1.0), (1.0, 1.0)), stds=((0.01, 0.01),) * 2)
GC_NOISE_2M = GaussianMixture2D(means=((-1.0, -1.0), (-1.0, 1.0)), stds=((0.01, 0.01),) * 2)
GC_NOISE_1M = GaussianMixture2D(means=((-1.0, 0.0),), stds=((0.01, 0.5),))

# 8 Gaussians on a circle of radius sqrt(2) with std 0.1: per-axis variance r^2/2 + s^2 = 1.01.
EIGHT_GAUSSIANS = GaussianMixture2D(
    means=tuple((math.sqrt(2) * math.cos(2 * math.pi * k / 8), math.sqrt(2) * math.sin(2 * math.pi * k / 8))
                for k in range(8)),
    stds=((0.1, 0.1),) * 8,
)


@NOISES.register("gaussian")
def _standard_gaussian_noise() -> Optional[NoiseSampler]:
    """Standard Gaussian N(0, I) of the data's shape (the trainer's default)."""
    return None


@NOISES.register("gmm2")
def _gc_two_mode_noise() -> NoiseSampler:
    """GC 2m-2m noise: two equal-weight Gaussians at (-1, -1) and (-1, 1), std 0.01."""
    return GC_NOISE_2M.sample_global


@NOISES.register("gc_1m")
def _gc_one_mode_noise() -> NoiseSampler:
    """GC 1m-2m noise: one Gaussian at (-1, 0) with stds (0.01, 0.5)."""
    return GC_NOISE_1M.sample_global


# --------------------------------------------------------------------------------------- toy sets
PointSampler = Callable[[int, np.random.Generator], tuple[Tensor, Optional[Tensor]]]


def _register_toy(name: str, sampler: PointSampler, source: str, noise: str = "gaussian",
                  num_classes: int = 0) -> None:
    """Register a toy set whose train and holdout sets are independent draws seeded by (split, seed)."""

    def load(cfg: DataConfig, seed: int) -> DataBundle:
        x_train, y_train = sampler(cfg.n_train, np.random.default_rng([0, seed]))
        x_holdout, y_holdout = sampler(cfg.n_holdout, np.random.default_rng([1, seed]))
        return DataBundle(name, x_train, x_holdout, "points", y_train, y_holdout, num_classes,
                          meta={"source": source, "n_classes": num_classes, "noise": noise})

    DATASETS.register(name)(load)
    DESCRIPTIONS.register(name)(lambda cfg: DatasetInfo(name, "points", num_classes, cfg.n_train,
                                                        tuple(NOISES.names()), size_key="data.n_train"))


def sample_moons(n: int, rng: np.random.Generator, noise_std: float = 0.05) -> tuple[Tensor, Tensor]:
    """Two interleaved half circles (sklearn ``make_moons`` geometry, angle uniform on [0, pi]),
    standardised per axis with the exact moments of the noiseless shape: mean (0.5, 0.25), variance
    (0.75, 0.5625 - 1/pi) plus noise_std^2."""
    labels = rng.integers(2, size=n)
    theta = rng.uniform(0.0, math.pi, size=n)
    x = np.where(labels == 0, np.cos(theta), 1.0 - np.cos(theta))
    y = np.where(labels == 0, np.sin(theta), 0.5 - np.sin(theta))
    points = np.stack([x, y], axis=1) + noise_std * rng.standard_normal((n, 2))
    mean = np.array([0.5, 0.25])
    std = np.sqrt(np.array([0.75, 0.5625 - 1.0 / math.pi]) + noise_std ** 2)
    return torch.from_numpy((points - mean) / std).float(), torch.from_numpy(labels).long()


def sample_checkerboard(n: int, rng: np.random.Generator) -> tuple[Tensor, None]:
    """The 4x4 checkerboard on [-2, 2]^2 (half the cells filled). Both marginals are uniform on
    [-2, 2] (std 2/sqrt(3)), so scaling by sqrt(3)/2 gives unit std per axis."""
    x = rng.uniform(-2.0, 2.0, size=n)
    y = rng.uniform(0.0, 1.0, size=n) - 2.0 * rng.integers(2, size=n) + np.mod(np.floor(x), 2)
    points = np.stack([x, y], axis=1) * (math.sqrt(3) / 2)
    return torch.from_numpy(points).float(), None


_register_toy("gmm2", VCT_TOY.sample, "VCT App. E: 2 Gaussians at (0, +-0.5), std 0.05", num_classes=2)
_register_toy("gc_1m2m", GC_DATA.sample, "GC Sec. 4.2 1m-2m: data at (1, +-1), std 0.01",
              noise="gc_1m", num_classes=2)
_register_toy("gc_2m2m", GC_DATA.sample, "GC Sec. 4.2 2m-2m: data at (1, +-1), std 0.01",
              noise="gmm2", num_classes=2)
_register_toy("moons", sample_moons, "two moons, noise 0.05, unit std per axis", num_classes=2)
_register_toy("checkerboard", sample_checkerboard, "4x4 checkerboard, unit std per axis")
_register_toy("8gaussians", EIGHT_GAUSSIANS.sample, "8 Gaussians on a circle of radius sqrt(2), std 0.1",
              num_classes=8)


# ------------------------------------------------------------------------------------ image helpers
def _uint8_to_unit_range(images: Tensor) -> Tensor:
    """Map uint8 pixels {0..255} to float32 [-1, 1]."""
    return images.float() / 127.5 - 1.0


def _resize(images: Tensor, size: Optional[int]) -> Tensor:
    """Resize (N, C, H, W) images to size x size; 28x28 sets are padded with background to 32 (the
    usual LeNet/UNet convention) instead of being interpolated."""
    height = images.shape[-1]
    if size is None or size == height:
        return images
    if height == 28 and size == 32:
        return F.pad(images, (2, 2, 2, 2), value=-1.0)
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).clamp(-1.0, 1.0)


def _holdout_size(n: int, n_holdout: int) -> int:
    """Images held out of n: min(20 % of n, n_holdout), at least 1."""
    return min(max(1, round(HOLDOUT_FRACTION * n)), n_holdout)


def _fixed_split(n: int, n_holdout: int, what: str) -> tuple[Tensor, Tensor]:
    """Train / holdout indices of a fixed permutation (:func:`_holdout_size` held out)."""
    n_hold = _holdout_size(n, n_holdout)
    if n - n_hold < 1:
        raise DataUnavailableError(f"{what} holds {n} image(s); at least 2 are needed for a train and "
                                   "a holdout split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return perm[n_hold:], perm[:n_hold]


def _image_bundle(name: str, images: Tensor, labels: Optional[Tensor], num_classes: int,
                  cfg: DataConfig, source: str) -> DataBundle:
    """Split images (already in [-1, 1]) with :func:`_fixed_split` into a bundle."""
    train_idx, holdout_idx = _fixed_split(len(images), cfg.n_holdout, source)
    pick = lambda t, idx: None if t is None else t[idx]  # noqa: E731
    return DataBundle(name, images[train_idx], images[holdout_idx], "images", pick(labels, train_idx),
                      pick(labels, holdout_idx), num_classes,
                      meta={"source": source, "n_classes": num_classes})


DIGITS_SIZE = 1797  # sklearn's digits: images shipped with scikit-learn


@DESCRIPTIONS.register("digits")
def _describe_digits(cfg: DataConfig) -> DatasetInfo:
    return DatasetInfo("digits", "images", 10, DIGITS_SIZE - _holdout_size(DIGITS_SIZE, cfg.n_holdout),
                       IMAGE_NOISES, size_key="data.n_holdout")


@DATASETS.register("digits")
def load_digits(cfg: DataConfig, seed: int = 0) -> DataBundle:
    """sklearn's 8x8 handwritten digits (1797 images, 10 classes, shipped offline; pixels 0..16)."""
    from sklearn.datasets import load_digits as sklearn_digits

    raw = sklearn_digits()
    images = torch.from_numpy(raw.images).float().unsqueeze(1) / 8.0 - 1.0
    labels = torch.from_numpy(raw.target).long()
    return _image_bundle("digits", _resize(images, cfg.image_size), labels, 10, cfg,
                         "sklearn.datasets.load_digits")


# -------------------------------------------------------------------------------- torchvision sets
@dataclass(frozen=True)
class TorchvisionSet:
    title: str  # as the error messages name it
    class_name: str  # torchvision.datasets class
    files: str  # where torchvision keeps the files, relative to root
    train_size: int  # images in the train split (10 classes each)


TORCHVISION_SETS = {
    "mnist": TorchvisionSet("MNIST", "MNIST", "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
                            60000),
    "fashion_mnist": TorchvisionSet("Fashion-MNIST", "FashionMNIST",
                                    "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte", 60000),
    "cifar10": TorchvisionSet("CIFAR-10", "CIFAR10", "cifar-10-batches-py/ (data_batch_1..5, test_batch)",
                              50000),
}


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """torchvision downloads with urllib and no timeout; bound each socket operation meanwhile."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _torchvision_split(spec: TorchvisionSet, root: Path, train: bool, download: bool):
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, spec.class_name)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S) if download else contextlib.nullcontext():
            return dataset_class(str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:  # missing files; URLError and timeouts are OSErrors
        if download:
            reason = "the download failed: " + " ".join(str(err).split())[:300]
        else:
            reason = "the files are missing and data.download is false"
        raise DataUnavailableError(
            f"Dataset {spec.title} is not available in {root}: {reason}. To fix it, run once on a "
            f"machine with internet access with data.download: true and data.root: {root}, or copy the "
            f"torchvision files ({spec.files}) into {root}.") from err


def _load_torchvision(name: str, cfg: DataConfig, seed: int = 0) -> DataBundle:
    """Train split -> x_train, test split -> x_holdout, labels kept; images to [-1, 1] (seed unused:
    the split is torchvision's)."""
    spec = TORCHVISION_SETS[name]
    root = Path(cfg.root).expanduser()
    splits = []
    for train in (True, False):
        dataset = _torchvision_split(spec, root, train, cfg.download)
        pixels = torch.as_tensor(dataset.data)
        pixels = pixels.unsqueeze(1) if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)
        images = _resize(_uint8_to_unit_range(pixels), cfg.image_size).contiguous()
        splits.append((images, torch.as_tensor(dataset.targets, dtype=torch.long)))
    (x_train, y_train), (x_holdout, y_holdout) = splits
    return DataBundle(name, x_train, x_holdout, "images", y_train, y_holdout, 10,
                      meta={"source": f"torchvision {spec.class_name} at {root}", "n_classes": 10})


def _describe_torchvision(name: str, cfg: DataConfig) -> DatasetInfo:
    return DatasetInfo(name, "images", 10, TORCHVISION_SETS[name].train_size, IMAGE_NOISES)


for _name in TORCHVISION_SETS:
    DATASETS.register(_name)(partial(_load_torchvision, _name))
    DESCRIPTIONS.register(_name)(partial(_describe_torchvision, _name))


# ------------------------------------------------------------------------------------ image folder
def _is_grayscale(mode: str) -> bool:
    return mode in ("1", "L", "LA", "I", "I;16", "F")


def _image_mode(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:  # reads the header only
        return image.mode


def _read_square(path: Path, mode: str, size: int) -> np.ndarray:
    """The image at ``path`` in ``mode``, centre-cropped to a square and resized to size x size."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return np.asarray(ImageOps.fit(image.convert(mode), (size, size),
                                       method=Image.Resampling.BICUBIC))


@DESCRIPTIONS.register("folder")
def _describe_folder(cfg: DataConfig) -> DatasetInfo:
    """Its labels and size are known once read; it needs its folder and the size to resize to."""
    return DatasetInfo("folder", "images", None, None, IMAGE_NOISES, required=("root", "image_size"))


@DATASETS.register("folder")
def load_folder(cfg: DataConfig, seed: int = 0) -> DataBundle:
    """PNG/JPG images under ``root`` (required, as is ``image_size``): flat (no labels) or one
    subfolder per class (labels in sorted subfolder order). Each image is centre-cropped to a square
    and resized to ``image_size``; the set stays grayscale when every image is, else all become RGB."""
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataUnavailableError(f"Dataset folder is not available: {root} is not a directory. Set "
                                   "data.root to a folder of PNG/JPG images (optionally one subfolder "
                                   "per class).")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataUnavailableError(f"Dataset folder is not available: no PNG/JPG images under {root}.")
    top_level = [p for p in files if p.parent == root]
    if top_level and len(top_level) < len(files):
        raise _config_error(f"data.root: {root} mixes images at the top level ({top_level[0].name}, ...) "
                            "with class subfolders; use one layout")
    classes = sorted({p.relative_to(root).parts[0] for p in files}) if not top_level else []
    mode = "L" if all(_is_grayscale(_image_mode(p)) for p in files) else "RGB"
    pixels = torch.from_numpy(np.stack([_read_square(p, mode, cfg.image_size) for p in files]))
    pixels = pixels.unsqueeze(1) if mode == "L" else pixels.permute(0, 3, 1, 2)
    labels = torch.tensor([classes.index(p.relative_to(root).parts[0]) for p in files]) \
        if classes else None
    bundle = _image_bundle("folder", _uint8_to_unit_range(pixels).contiguous(), labels,
                           len(classes), cfg, f"image folder {root}")
    bundle.meta["classes"] = classes
    return bundle
