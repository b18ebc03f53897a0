"""Sample-quality metrics of low-dimensional data, and the reference samples every metric compares with
(design.md Sec. 6): exact Wasserstein-2 distance with POT and the Frechet distance of the raw
coordinates (a Gaussian fitted to each sample set). Image FID is in :mod:`ablate.fid` (torch-fidelity),
imported only by trials on images.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from ablate.train.batches import DataBundle

logger = logging.getLogger(__name__)

REFERENCE_SUBSET_SEED = 0  # picks the reference subset of a split when it has more than eval.samples


# --------------------------------------------------------------------------------- low-dimensional
def _as_points(x: Tensor | np.ndarray) -> np.ndarray:
    """(n, d) float64 array from a tensor or array of points ((n,) is taken as n points in 1-D)."""
    arr = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, np.float64)
    return arr.reshape(len(arr), -1)


def w2_distance(x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
    """Exact Wasserstein-2 distance between two empirical measures with uniform weights.

    W2(x, y) = sqrt(min_P sum_ij P_ij ||x_i - y_j||^2) over couplings P of the uniform marginals,
    solved exactly by network simplex (``ot.emd2``, squared Euclidean cost), as the exact minibatch OT
    coupling of VCT/GC (GC Sec. 2, App. B) but over whole evaluation sets.
    """
    import ot  # POT loads scikit-learn and scipy.stats (~1 s): only in trials that evaluate W2
    from scipy.spatial.distance import cdist

    xs, ys = _as_points(x), _as_points(y)
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(f"w2_distance: dimensions differ ({xs.shape[1]} vs {ys.shape[1]})")
    cost = cdist(xs, ys, metric="sqeuclidean")  # differences first: exactly 0 where points coincide
    weights_x = np.full(len(xs), 1.0 / len(xs))
    weights_y = np.full(len(ys), 1.0 / len(ys))
    value, log = ot.emd2(weights_x, weights_y, cost, numItermax=10_000_000, log=True)
    if log.get("warning"):
        logger.warning("w2_distance: exact OT did not converge: %s", log["warning"])
    return float(np.sqrt(max(float(value), 0.0)))


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    eigvals, eigvecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def frechet_distance(x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
    """Squared Frechet distance between Gaussians fitted to two point sets (the FID formula, raw coords).

    d^2 = ||mu_x - mu_y||^2 + tr(S_x + S_y - 2 (S_x^{1/2} S_y S_x^{1/2})^{1/2})
    (Dowson & Landau, 1982; Heusel et al., 2017 eq. 6), with unbiased covariances as in torch-fidelity.
    Reported squared, like FID, so ``frechet_{k}step`` and ``fid_{k}step`` read the same way.
    """
    xs, ys = _as_points(x), _as_points(y)
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(f"frechet_distance: dimensions differ ({xs.shape[1]} vs {ys.shape[1]})")
    mean_diff = xs.mean(0) - ys.mean(0)
    cov_x = np.atleast_2d(np.cov(xs, rowvar=False))
    cov_y = np.atleast_2d(np.cov(ys, rowvar=False))
    root_x = _sqrtm_psd(cov_x)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_x @ cov_y @ root_x), 0.0, None)).sum()
    return float(mean_diff @ mean_diff + np.trace(cov_x) + np.trace(cov_y) - 2.0 * cross)


def reference_subset(data: DataBundle, split: str, count: int) -> Tensor:
    """The reference samples of a split: all of it, or a fixed random subset of ``count`` samples."""
    if split not in ("train", "holdout"):
        raise ValueError(f"reference split must be 'train' or 'holdout', got {split!r}")
    samples = data.x_train if split == "train" else data.x_holdout
    if len(samples) <= count:
        return samples
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(REFERENCE_SUBSET_SEED))
    return samples[order[:count].to(samples.device)]
