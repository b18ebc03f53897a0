"""The consistency-training objective: per-sample weighted distances between online and target outputs."""
from __future__ import annotations

from torch import Tensor

from .distances import distance
from .kernels import Kernel
from .weighting import weight


def consistency_loss(cfg, f_t: Tensor, f_r: Tensor, t: Tensor, r: Tensor, kernel: Kernel) -> Tensor:
    """mean_i w(t_i, r_i) d(f_theta(x_{t_i}, t_i), sg f_target(x_{r_i}, r_i)) (VCT eq. 60)."""
    per_sample = weight(cfg.weighting, t, r, kernel) * distance(cfg.distance, f_t.float(), f_r.float())
    return per_sample.mean()
