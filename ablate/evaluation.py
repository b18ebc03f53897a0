"""Periodic evaluation of a trial: metrics after each listed number of sampling steps, and a picture.

The trainer calls an :class:`Evaluator` every ``eval.every`` steps with ``sample(steps, n, seed)``, which
returns n samples of the EMA model drawn with ``steps`` sampling steps from the fixed seed ``eval.seed``
(32, as VCT App. C.2). The Evaluator returns one flat row:

* images: ``fid_{k}step`` for each k in ``eval.steps``, ``fid_extractor``;
* points: ``w2_{k}step`` (exact W2 to held-out data) and ``frechet_{k}step``;
* both: ``eval_s`` (seconds spent, sampling included) and, when ``eval.grid`` and an output location
  are set, ``samples_png``: the PNG's path relative to that location (``<pictures_under>/step_*.png``).
  The location is a local path or a pyarrow filesystem URI (``ablate.storage``), so the pictures of a
  sweep on an object store land next to its results.

Image FID is measured against the training split, as the papers' CIFAR-10 numbers are (50k training
images); with fewer than ``eval.samples`` images the whole split is the reference. Evaluation runs in a
forked RNG, so evaluating never changes the training run's random stream.
"""
from __future__ import annotations

import io
import logging
import math
import time
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ablate import metrics, storage
from ablate.train.batches import DataBundle
from ablate.train.config import EvalConfig
from ablate.train.metric_table import step_column

logger = logging.getLogger(__name__)

Sampler = Callable[[int, int, int], Tensor]  # (sampling steps, n, seed) -> n samples on the device

FID_REFERENCE_SPLIT = "train"
W2_REFERENCE_SPLIT = "holdout"
GRID_COLUMNS = 16  # images per step count in the grid (the first ones: the same noise per column)
GRID_MIN_CELL_PX = 32  # small images (8x8 digits) are enlarged, nearest neighbour, to at least this
GRID_PADDING = 2
SCATTER_PANEL_INCHES, SCATTER_DPI = 4, 100


class Evaluator:
    """Computes one evaluation row for a trial (see the module docstring for its columns)."""

    def __init__(self, cfg: EvalConfig, data: DataBundle, out_dir: str | None, device: torch.device,
                 pictures_under: str = "samples"):
        """Pictures go to ``out_dir/pictures_under/`` (``out_dir`` a path or URI; None: no pictures)."""
        if data.kind not in ("images", "points"):
            raise ValueError(f"data {data.name!r}: kind must be 'images' or 'points', got {data.kind!r}")
        self.cfg, self.data, self.device = cfg, data, device
        self.out_dir, self.pictures_under = out_dir, pictures_under
        self.fid_extractor = None
        if data.kind == "images":
            from ablate import fid  # torch-fidelity (and torchvision): only trials on images import it

            # Resolve now: a missing extractor stops the trial before training, not at its first evaluation.
            self.fid_extractor, _ = fid.resolve_extractor(data, cfg)
            self._fid = fid.compute
        else:
            self.holdout = metrics.reference_subset(data, W2_REFERENCE_SPLIT, cfg.samples)

    def __call__(self, sample: Sampler, step: int) -> dict[str, Any]:
        start = time.perf_counter()
        row: dict[str, Any] = {}
        shown: dict[int, Tensor] = {}
        devices = [self.device.index or torch.cuda.current_device()] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            for steps in self.cfg.steps:
                generated = sample(steps, self.cfg.samples, self.cfg.seed)
                row.update(self._metrics(generated, steps))
                keep = GRID_COLUMNS if self.data.kind == "images" else len(generated)
                shown[steps] = generated[:keep].detach().float().cpu()
                del generated
        if self.cfg.grid and self.out_dir is not None:
            row["samples_png"] = self._save_picture(shown, step, row)
        row["eval_s"] = time.perf_counter() - start
        return row

    def _metrics(self, generated: Tensor, steps: int) -> dict[str, Any]:
        finite = bool(torch.isfinite(generated).all())
        if not finite:
            logger.warning("evaluation: non-finite samples after %d sampling steps; metrics are NaN", steps)
        if self.data.kind == "images":
            value = self._fid(generated, self.data, self.cfg, FID_REFERENCE_SPLIT)["fid"] if finite \
                else math.nan
            return {step_column("fid", steps): value, "fid_extractor": self.fid_extractor}
        if not finite:
            return {step_column("w2", steps): math.nan, step_column("frechet", steps): math.nan}
        return {step_column("w2", steps): metrics.w2_distance(generated, self.holdout),
                step_column("frechet", steps): metrics.frechet_distance(generated, self.holdout)}

    def _save_picture(self, shown: dict[int, Tensor], step: int, row: dict[str, Any]) -> str:
        relative = f"{self.pictures_under}/step_{step:08d}.png"
        if self.data.kind == "images":
            png = image_grid_png(shown)
        else:
            png = scatter_png(shown, self.holdout.detach().float().cpu(), row)
        storage.write_file(storage.join(self.out_dir, relative), png)
        return relative


def image_grid_png(shown: dict[int, Tensor]) -> bytes:
    """PNG of one row of images per step count; column j comes from the same noise in every row."""
    import torchvision  # imported here: its import costs a trial on points ~2 s (torch._dynamo)

    columns = min(len(images) for images in shown.values())
    cells = torch.cat([images[:columns] for images in shown.values()])
    scale = max(1, math.ceil(GRID_MIN_CELL_PX / min(cells.shape[-2:])))
    cells = torch.nn.functional.interpolate(cells, scale_factor=scale, mode="nearest")
    grid = torchvision.utils.make_grid((cells.clamp(-1, 1) + 1) / 2, nrow=columns, padding=GRID_PADDING,
                                       pad_value=1.0)
    pixels = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def scatter_png(shown: dict[int, Tensor], holdout: Tensor, row: dict[str, Any]) -> bytes:
    """PNG of generated points over the held-out data, one panel per step count (first 2 coordinates)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # only trials that draw pay the import
    from matplotlib.figure import Figure

    figure = Figure(figsize=(SCATTER_PANEL_INCHES * len(shown), SCATTER_PANEL_INCHES), dpi=SCATTER_DPI)
    FigureCanvasAgg(figure)
    reference = holdout.numpy()
    low, high = reference[:, :2].min(0), reference[:, :2].max(0)
    margin = 0.25 * (high - low)
    for panel, (steps, points) in enumerate(shown.items(), start=1):
        axes = figure.add_subplot(1, len(shown), panel)
        axes.scatter(reference[:, 0], reference[:, 1], s=2, c="0.7", label="held-out")
        generated = np.nan_to_num(points.numpy())
        axes.scatter(generated[:, 0], generated[:, 1], s=4, c="tab:blue", label="generated")
        axes.set_xlim(low[0] - margin[0], high[0] + margin[0])
        axes.set_ylim(low[1] - margin[1], high[1] + margin[1])
        axes.set_title(f"{steps}-step, W2 = {row.get(f'w2_{steps}step', math.nan):.3g}")
    figure.axes[0].legend(loc="upper right", fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
