"""The upper limit s of the consistency function f(x_t, t, s) (Guide Sec. 2.2, 3.4).

``cu`` keeps s = t0 (classic CMs); ``vu`` draws s from the uniform-power distribution and then t on
[s, tT] (Guide App. E.2); ``phased`` cuts [t0, tT] into segments and maps t to the segment edge below it
(SCT Sec. 4.3, eq. 17). Each choice draws the training times (t, r, s) of a batch.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .discretization import Discretization
from .kernels import Kernel
from .registry import Registry
from .time_sampling import TimeSampler

UPPER_LIMITS: Registry[type["UpperLimit"]] = Registry("upper limit")


def sample_uniform_power(n: int, nu: float, device: torch.device) -> Tensor:
    """s = u (1 - (1 - v)^{1/nu}), u, v ~ U(0, 1): the hierarchical sampler of Guide App. E.2, whose
    marginal is p_up(s; nu) = nu int_s^1 (1/tau) (1 - s/tau)^{nu - 1} dtau on [0, 1] (eq. 17)."""
    u = torch.rand(n, device=device)
    v = torch.rand(n, device=device)
    return u * (1.0 - (1.0 - v) ** (1.0 / nu))


class UpperLimit:
    def __init__(self, cfg, kernel: Kernel):
        self.cfg, self.kernel = cfg, kernel

    def draw(self, n: int, step: int, discretization: Discretization, sampler: TimeSampler,
             device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
        """Times (t, r, s) of shape (n,) with s <= r < t; s is None for the classic s = t0."""
        raise NotImplementedError


@UPPER_LIMITS.register("cu")
class ClassicUpperLimit(UpperLimit):
    """s = t0: the model is f(x_t, t) (Song et al. 2023)."""

    def draw(self, n, step, discretization, sampler, device):
        t, r = discretization.sample_pair(n, step, sampler, device)
        return t, r, None


@UPPER_LIMITS.register("vu")
class VariableUpperLimit(UpperLimit):
    """s = t0 + (tT - t0) x with x ~ p_up(nu) (Guide eq. 17, App. E.2), then t on [s, tT] and
    s <= r < t (Guide Sec. 3.4: sampling s first keeps the CU task as s -> t0)."""

    def draw(self, n, step, discretization, sampler, device):
        k = self.kernel
        s = k.t_min + (k.t_max - k.t_min) * sample_uniform_power(n, self.cfg.nu, device)
        t, r = discretization.sample_pair(n, step, sampler, device, lower=s)
        return t, r, s


@UPPER_LIMITS.register("phased")
class PhasedUpperLimit(UpperLimit):
    """Segment edges s_k = t0 + k (tT - t0) / n; a t in (s_k, s_{k+1}] targets s = s_k, so a t exactly on
    an interior edge belongs to the segment below it (as in the phased-CM reference code, whose edges are
    grid indices; G-U-N/Phased-Consistency-Model ``euler_style_multiphase_pred``). The lower time r
    follows the discretization given s: SCT eq. 17 for ``ect``, the pair's own r clipped to r >= s
    otherwise (SCT Sec. 4.3). s <= r < t, so t - r > 0."""

    def __init__(self, cfg, kernel: Kernel):
        super().__init__(cfg, kernel)
        self._edges: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    def edges(self) -> list[float]:
        k, n = self.kernel, self.cfg.segments
        return [k.t_min + i * (k.t_max - k.t_min) / n for i in range(n + 1)]

    def segment_start(self, t: Tensor) -> Tensor:
        """s = the largest edge strictly below t (t > t0), compared in t's own precision: a rounded
        (t - t0) / width would put a t on an edge into the segment above it, with s = t."""
        key = (t.dtype, t.device)
        if key not in self._edges:
            self._edges[key] = torch.tensor(self.edges(), dtype=t.dtype, device=t.device)
        edges = self._edges[key]
        index = torch.searchsorted(edges, t.contiguous()) - 1  # first edge >= t, minus one
        return edges[index.clamp(0, self.cfg.segments - 1)]

    def draw(self, n, step, discretization, sampler, device):
        t, r = discretization.sample_pair(n, step, sampler, device)
        s = self.segment_start(t)
        return t, discretization.r_above(t, r, s, step), s


def build_upper_limit(cfg, kernel: Kernel) -> UpperLimit:
    return UPPER_LIMITS.get(cfg.name)(cfg, kernel)
