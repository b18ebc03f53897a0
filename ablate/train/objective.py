"""The consistency-training objective.

``consistency_loss``: per-sample weighted distances between online and target outputs (iCT/ECT/VCT).
``particle_l2_loss`` and ``time_aware_mmd_loss``: the Guide's losses for the velocity parametrisation
g(x_t, t, s) = x_t + (s - t) F(x_t, t, s) (Guide eq. 3), written with the network outputs F.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .distances import distance
from .kernels import Kernel, expand_as
from .registry import Registry
from .weighting import weight

GUIDE_LOSSES: Registry = Registry("guide loss")


def consistency_loss(cfg, f_t: Tensor, f_r: Tensor, t: Tensor, r: Tensor, kernel: Kernel,
                     scale: Tensor | None = None) -> Tensor:
    """mean_i w(t_i, r_i) d(f_theta(x_{t_i}, t_i), sg f_target(x_{r_i}, r_i)) (VCT eq. 60); ``scale``
    multiplies the weight per sample (1/p(t) of the Guide's Sec. 3.3)."""
    w = weight(cfg.weighting, t, r, kernel)
    if scale is not None:
        w = w * scale
    return (w * distance(cfg.distance, f_t.float(), f_r.float())).mean()


@dataclass
class GuideTerms:
    """One batch of the Guide's losses: states, times (s <= r < t), the weight w(t) (times 1/p(t) where
    asked), the velocity target u_t = alpha'_t x + sigma'_t z, the online output F_theta(x_t, t, s) and
    the stop-gradient target outputs F_-(x_t, t, s), F_-(x_r, r, s)."""

    x_t: Tensor
    x_r: Tensor
    t: Tensor
    r: Tensor
    s: Tensor
    weight: Tensor
    u_t: Tensor
    v_t: Tensor
    v_t_target: Tensor
    v_r_target: Tensor


def _row_norm(x: Tensor) -> Tensor:
    """||x||_2 over the non-batch dimensions; the gradient at 0 is 0."""
    return torch.sqrt(x.flatten(1).pow(2).sum(dim=1) + torch.finfo(x.dtype).tiny)


@GUIDE_LOSSES.register("particle_l2")
def particle_l2_loss(cfg, terms: GuideTerms) -> Tensor:
    """mean w(t) ||u_t - F_theta(x_t, t, s) + (s - r) (F_-(x_t, t, s) - F_-(x_r, r, s)) / (t - r)||
    (Guide eq. 39), whose gradient equals that of eq. 5, w(t)/(t - s) ||g_theta(x_t, t, s) -
    g_-(x_r, r, s)|| (App. D.1), and tends to the diffusion loss's as s -> t (App. D.2)."""
    k = terms
    slope = expand_as((k.s - k.r) / (k.t - k.r), k.u_t)
    dtype = k.u_t.dtype  # outputs may be bf16 under autocast: compute in the data's precision
    residual = k.u_t - k.v_t.to(dtype) + slope * (k.v_t_target.to(dtype) - k.v_r_target.to(dtype))
    return (k.weight * _row_norm(residual)).mean()


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


@GUIDE_LOSSES.register("time_aware_mmd")
def time_aware_mmd_loss(cfg, terms: GuideTerms) -> Tensor:
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


def guide_loss(cfg, terms: GuideTerms) -> Tensor:
    return GUIDE_LOSSES.get(cfg.name)(cfg, terms)
