"""Phased (multistep) upper limits (SCT Sec. 4.3, eq. 17)."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from ..kernels import Kernel
from ..registry import Strict
from .base import UPPER_LIMITS, UpperLimit


class PhasedOptions(Strict):
    """Phased (multistep) training: [t0, tT] cut into ``segments`` equal segments, s = the segment edge
    below t (SCT Sec. 4.3, eq. 17). Needs kernel ``fm``."""

    name: Literal["phased"] = "phased"
    segments: int = Field(2, ge=1)


@UPPER_LIMITS.register(PhasedOptions)
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
