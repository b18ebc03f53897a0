"""The Guide's time-aware MMD loss (Guide App. F, eqs. 44-46)."""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from ..kernels import expand_as
from ..registry import Strict
from .base import OBJECTIVES, GuideTerms, VelocityObjective


class TimeAwareMMDDistance(Strict):
    """Time-aware MMD over groups of ``group_size`` samples with the kernel
    -||x1 - x2|| exp(-(|t1 - t2| + |s1 - s2|) / sigma) (Guide App. F, eqs. 44-46); ``share_time`` draws
    one (t, r, s) per group instead (IMM's form, Guide Table 7i). Needs kernel ``fm``."""

    name: Literal["time_aware_mmd"] = "time_aware_mmd"
    group_size: int = Field(2, ge=1)
    sigma: float = Field(0.1, gt=0.0)
    share_time: bool = False


def _damped_distances(x: Tensor, y: Tensor, time_x: Tensor, time_y: Tensor, s: Tensor,
                      sigma: float) -> Tensor:
    """||x_j - y_k|| exp(-(|t_j - t_k| + |s_j - s_k|) / sigma) within each group, shape (G, M, M):
    minus the time-aware kernel of Guide eq. 44."""
    diff = x.unsqueeze(2) - y.unsqueeze(1)
    dist = torch.sqrt(diff.flatten(3).pow(2).sum(dim=3) + torch.finfo(x.dtype).tiny)
    if math.isinf(sigma):
        return dist
    gap = (time_x.unsqueeze(2) - time_y.unsqueeze(1)).abs() + (s.unsqueeze(2) - s.unsqueeze(1)).abs()
    return dist * torch.exp(-gap / sigma)


def time_aware_mmd_loss(cfg: TimeAwareMMDDistance, terms: GuideTerms) -> Tensor:
    """Guide eq. 46 over B/M groups of M = ``group_size`` consecutive samples:

        1/(B/M) sum_i 1/M^2 sum_j w_j sum_k [-D(g_t^j, g_t^k) - D(g_r^j, g_r^k) + 2 D(g_t^j, g_r^k)]

    with D the damped distance of eq. 44, each output labelled by its own time (t for the online
    outputs, r for the target outputs) and s. As Guide G.1 says, g_t is written in eq. 40's form
    x_t + (r - t) F_theta + (s - r) F_- with weight w/(t - r) (same value as g_theta(x_t, t, s), same
    gradient as eq. 5's w/(t - s)). sigma = inf and shared times give IMM's loss (eq. 43) with the
    negative-distance kernel; M = 1 gives twice the particle loss's gradient (times e^{-(t-r)/sigma}).
    """
    k, m = terms, cfg.group_size
    lag = expand_as(k.r - k.t, k.x_t)
    dtype = k.x_t.dtype  # outputs may be bf16 under autocast: compute in the data's precision
    g_t = k.x_t + lag * k.v_t.to(dtype) + expand_as(k.s - k.r, k.x_t) * k.v_t_target.to(dtype)
    g_r = k.x_r + expand_as(k.s - k.r, k.x_r) * k.v_r_target.to(dtype)
    w = k.weight / (k.t - k.r)

    def grouped(x: Tensor) -> Tensor:
        return x.reshape(-1, m, *x.shape[1:])

    t, r, s = grouped(k.t), grouped(k.r), grouped(k.s)
    d_tt = _damped_distances(grouped(g_t), grouped(g_t), t, t, s, cfg.sigma)
    d_rr = _damped_distances(grouped(g_r), grouped(g_r), r, r, s, cfg.sigma)
    d_tr = _damped_distances(grouped(g_t), grouped(g_r), t, r, s, cfg.sigma)
    per_row = (-d_tt - d_rr + 2.0 * d_tr).sum(dim=2)  # (G, M): sum over k
    return (grouped(w) * per_row).sum(dim=1).mean() / m ** 2


@OBJECTIVES.register(TimeAwareMMDDistance)
class TimeAwareMMDObjective(VelocityObjective):
    @property
    def time_group(self) -> int:
        """``share_time``: one (t, r, s) per MMD group (IMM's form)."""
        return self.cfg.group_size if self.cfg.share_time else 1

    def loss(self, terms: GuideTerms) -> Tensor:
        return time_aware_mmd_loss(self.cfg, terms)
