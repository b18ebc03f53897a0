"""Image FID through torch-fidelity's ``calculate_metrics`` (Heusel et al., 2017, as reported by VCT
Sec. 5, Guide Table 4, SCT Sec. 5; design.md Sec. 6). Feature extractors:

- ``inception-v3-compat`` (default): the Inception-v3 port whose numbers papers report. Weights come
  from ``eval.fid_weights`` or torch-hub's cache, else one download; offline without them the call
  fails with :class:`FIDUnavailableError`, which says which file to fetch, from where, and which key
  to set.
- ``ablate-cnn`` (offline, tests): a small CNN classifier trained deterministically on the dataset's
  labelled training split and cached on disk. It registers with torch-fidelity as
  ``ablate-cnn-<dataset>-v1``, and that name goes into the ``fid_extractor`` column, so its numbers are
  never mistaken for Inception FID (numbers from different extractors are not comparable).

Reference statistics are cached by torch-fidelity under ``<eval.cache_dir>/fidelity`` with a
deterministic ``input2_cache_name`` (dataset, split, sample count, data fingerprint, extractor weights);
torch-fidelity writes them with a temp file and a rename, so concurrent trials never see a torn file.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import torch_fidelity
from torch import Tensor, nn
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ablate.metrics import reference_subset
from ablate.train.batches import DataBundle
from ablate.train.config import FID_EXTRACTORS, EvalConfig

logger = logging.getLogger(__name__)

EXTRACTORS = FID_EXTRACTORS  # valid values of eval.extractor
INCEPTION, SMALL_CNN = EXTRACTORS
SMALL_CNN_VERSION = 1


class FIDUnavailableError(RuntimeError):
    """FID cannot be computed here (no Inception weights offline, no labels for the small CNN...)."""


# ------------------------------------------------------------------------------------- image plumbing
def to_uint8_rgb(images: Tensor) -> Tensor:
    """Images in [-1, 1], (N, C, H, W) with C in {1, 3}, to CPU uint8 (N, 3, H, W) for torch-fidelity."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1|3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    return pixels.repeat(1, 3, 1, 1) if pixels.shape[1] == 1 else pixels


class _TensorImages(Dataset):
    """A uint8 image tensor as the Dataset torch-fidelity reads."""

    def __init__(self, images: Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tensor:
        return self.images[index]


def _fingerprint(*tensors: Tensor) -> str:
    """Short content hash of tensors (shape and values), for cache names that change with the data."""
    digest = hashlib.sha1()
    for tensor in tensors:
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def _file_fingerprint(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:8]


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """Write ``obj`` next to ``path`` and rename it into place: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            torch.save(obj, out)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------------------- Inception-v3 weights
def inception_weights_path(cfg: EvalConfig) -> Path:
    """Local Inception-v3 weights: ``eval.fid_weights``, else torch-hub's cache, else one download."""
    file_name = URL_INCEPTION_V3.rsplit("/", 1)[-1]
    if cfg.fid_weights:
        path = Path(cfg.fid_weights).expanduser()
        if not path.is_file():
            raise FIDUnavailableError(f"eval.fid_weights: no file at {path} (expected {file_name} from "
                                      f"{URL_INCEPTION_V3})")
        return path
    path = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(URL_INCEPTION_V3, str(path), progress=False)
    except OSError as err:  # URLError, timeouts, DNS failures: no internet
        raise FIDUnavailableError(
            f"FID with eval.extractor={INCEPTION!r} needs the Inception-v3 weights {file_name}, which could "
            f"not be downloaded ({err}). On a machine with internet, download {URL_INCEPTION_V3}, copy it "
            f"to this machine and set eval.fid_weights to its path (or place it at {path}); or set "
            f"eval.extractor={SMALL_CNN!r} for an offline FID whose numbers are not comparable with "
            f"Inception FID."
        ) from err
    return path


# ------------------------------------------------------------------------------ small CNN extractor
class SmallCNN(nn.Module):
    """Small classifier for uint8 RGB images; its 128-d penultimate activations are the FID features."""

    FEATURE_DIM = 128

    def __init__(self, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(32 * 16, self.FEATURE_DIM), nn.ReLU(),
        )
        self.classifier = nn.Linear(self.FEATURE_DIM, num_classes)

    def features(self, pixels: Tensor) -> Tensor:
        return self.body(pixels.float() / 127.5 - 1.0)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.classifier(self.features(pixels))


class SmallCNNFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity wrapper of a trained :class:`SmallCNN` (weights: ``feature_extractor_weights_path``)."""

    def __init__(self, name: str, features_list: list[str],
                 feature_extractor_weights_path: str | None = None, **kwargs: Any):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise FIDUnavailableError(f"feature extractor {name!r} needs its trained weights file")
        checkpoint = torch.load(feature_extractor_weights_path, map_location="cpu", weights_only=True)
        self.net = SmallCNN(checkpoint["num_classes"])
        self.net.load_state_dict(checkpoint["state_dict"])
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "features"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    def forward(self, pixels: Tensor) -> tuple[Tensor, ...]:
        if pixels.dtype != torch.uint8 or pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"{self.name}: expected uint8 images (N, 3, H, W), got {pixels.dtype} "
                             f"{tuple(pixels.shape)}")
        return (self.net.features(pixels),)


def small_cnn_name(data: DataBundle) -> str:
    """The versioned name of the small extractor of a dataset, e.g. ``ablate-cnn-digits-v1``."""
    return f"{SMALL_CNN}-{_safe_name(data.name)}-v{SMALL_CNN_VERSION}"


CNN_TRAIN_STEPS = 300
CNN_BATCH_SIZE = 64
CNN_LR = 1e-3
CNN_SEED = 0


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_small_cnn(data: DataBundle) -> dict[str, Any]:
    """Train :class:`SmallCNN` on the labelled training split, deterministically, on the CPU.

    Fixed seed, a fixed number of Adam steps (a few epochs of a small set, seconds on a CPU) and one
    intra-op thread (a tiny network gains nothing from more, and the result does not depend on the core
    count), so every trial of a sweep that trains it gets the same weights. Runs inside ``fork_rng``:
    the caller's random state is untouched. Returns the checkpoint dict (``state_dict``, ``num_classes``,
    ``holdout_accuracy``).
    """
    if data.y_train is None:
        raise FIDUnavailableError(
            f"eval.extractor={SMALL_CNN!r} trains a classifier on labelled data, but dataset {data.name!r} "
            f"has no labels; use eval.extractor={INCEPTION!r}")
    images, labels = to_uint8_rgb(data.x_train), data.y_train.detach().cpu().long()
    num_classes = max(int(data.num_classes), int(labels.max()) + 1)
    with torch.random.fork_rng(devices=[]), _one_thread():
        torch.manual_seed(CNN_SEED)
        net = SmallCNN(num_classes)
        optimizer = torch.optim.Adam(net.parameters(), lr=CNN_LR)
        order = torch.Generator().manual_seed(CNN_SEED)
        batch = min(CNN_BATCH_SIZE, len(images))
        for _ in range(CNN_TRAIN_STEPS):
            index = torch.randint(len(images), (batch,), generator=order)
            loss = nn.functional.cross_entropy(net(images[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    accuracy = float("nan")
    if data.y_holdout is not None and len(data.x_holdout):
        with torch.no_grad():
            predicted = net(to_uint8_rgb(data.x_holdout)).argmax(1)
        accuracy = float((predicted == data.y_holdout.cpu().long()).float().mean())
    logger.info("trained %s: held-out accuracy %.3f", small_cnn_name(data), accuracy)
    return {"state_dict": net.state_dict(), "num_classes": num_classes, "holdout_accuracy": accuracy}


def small_cnn_weights(data: DataBundle, cfg: EvalConfig) -> Path:
    """Path of the small CNN's cached weights for this dataset, training them on a cache miss."""
    fingerprint = _fingerprint(data.x_train, data.y_train) if data.y_train is not None else "nolabels"
    path = Path(cfg.cache_dir).expanduser() / "extractors" / f"{small_cnn_name(data)}-{fingerprint}.pt"
    if not path.is_file():
        _atomic_torch_save(train_small_cnn(data), path)
    return path


def _register(name: str) -> None:
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(name, SmallCNNFeatureExtractor)


# ---------------------------------------------------------------------------------------------- FID
def resolve_extractor(data: DataBundle, cfg: EvalConfig) -> tuple[str, Path]:
    """(torch-fidelity extractor name, weights path) for ``eval.extractor`` on this dataset."""
    if cfg.extractor == INCEPTION:
        return INCEPTION, inception_weights_path(cfg)
    if cfg.extractor == SMALL_CNN:
        name = small_cnn_name(data)
        _register(name)
        return name, small_cnn_weights(data, cfg)
    raise ValueError(f"eval.extractor: unknown extractor {cfg.extractor!r}; valid: {', '.join(EXTRACTORS)}")


def compute(generated: Tensor, data: DataBundle, cfg: EvalConfig, split: str = "holdout") -> dict[str, Any]:
    """FID between generated images (in [-1, 1]) and a split of the data, with ``eval.extractor``.

    The reference set is the split, or a fixed random subset of ``eval.samples`` images of it; its
    statistics are computed once and cached under ``<eval.cache_dir>/fidelity``.
    Returns ``{"fid": float, "fid_extractor": name}``.
    """
    extractor, weights = resolve_extractor(data, cfg)
    reference = to_uint8_rgb(reference_subset(data, split, cfg.samples))
    cache_name = "-".join([
        "ablate", _safe_name(data.name), split, f"n{len(reference)}", _fingerprint(reference),
        f"w{_file_fingerprint(weights)}",
    ])
    metrics = torch_fidelity.calculate_metrics(
        input1=_TensorImages(to_uint8_rgb(generated)),
        input2=_TensorImages(reference),
        input2_cache_name=cache_name,
        cache_root=str(Path(cfg.cache_dir).expanduser() / "fidelity"),
        fid=True,
        feature_extractor=extractor,
        feature_extractor_weights_path=str(weights),
        cuda=generated.is_cuda,
        batch_size=128,
        save_cpu_ram=True,  # no DataLoader worker processes inside a trial
        verbose=False,
    )
    return {"fid": float(metrics[torch_fidelity.KEY_METRIC_FID]), "fid_extractor": extractor}
