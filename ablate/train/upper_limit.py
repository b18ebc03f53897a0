"""The upper limit s of the consistency function f(x_t, t, s) (Guide Sec. 2.2, 3.4).

``cu`` keeps s = t0 (classic CMs); ``vu`` draws s from the uniform-power distribution and then t on
[s, tT] (Guide App. E.2); ``phased`` cuts [t0, tT] into segments and maps t to the segment edge below it
(SCT Sec. 4.3). Each choice draws the training times (t, r, s) of a batch.
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
    """Segment edges s_k = t0 + k (tT - t0) / n; a t in (s_k, s_{k+1}] targets s = s_k and r is
    clipped to r >= s_k (SCT Sec. 4.3, eq. 17)."""

    def edges(self) -> list[float]:
        k, n = self.kernel, self.cfg.segments
        return [k.t_min + i * (k.t_max - k.t_min) / n for i in range(n + 1)]

    def draw(self, n, step, discretization, sampler, device):
        k, segments = self.kernel, self.cfg.segments
        t, r = discretization.sample_pair(n, step, sampler, device)
        width = (k.t_max - k.t_min) / segments
        index = (torch.ceil((t - k.t_min) / width) - 1).clamp(0, segments - 1)
        s = k.t_min + index * width
        return t, torch.maximum(r, s), s


def build_upper_limit(cfg, kernel: Kernel) -> UpperLimit:
    return UPPER_LIMITS.get(cfg.name)(cfg, kernel)
