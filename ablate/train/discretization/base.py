"""How far apart the two times (t, r), r < t, of a consistency pair are, and how that shrinks in training.

A discretization draws the pair for a batch given the training step k (curricula depend on k only, so
checkpoints need no extra state) and a time sampler (see ``time_sampling``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..kernels import Kernel
from ..registry import Registry
from ..time_sampling import TimeSampler

DISCRETIZATIONS: Registry[type["Discretization"]] = Registry("discretization")


class Discretization:
    """Base: ``cfg`` is the choice's options, ``kernel`` the forward kernel, ``iterations`` the run length."""

    def __init__(self, cfg, kernel: Kernel, iterations: int):
        self.cfg, self.kernel, self.iterations = cfg, kernel, iterations

    def sample_pair(self, n: int, step: int, sampler: TimeSampler, device: torch.device,
                    lower: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Times (t, r) of shape (n,) with lo <= r < t, lo = t_min or the per-sample ``lower`` bound
        (the upper limit s of the Guide's VU models, Sec. 3.4)."""
        raise NotImplementedError

    def r_above(self, t: Tensor, r: Tensor, s: Tensor, step: int) -> Tensor:
        """The lower time of a pair (t, r) drawn without a bound once the upper limit s < t is known
        (phased models, SCT Sec. 4.3): r clipped to r >= s, so s <= r < t."""
        return torch.maximum(r, s)

    def last_gap(self, step: int) -> float:
        """dt_N: the gap below t_max at step k (VCT Sec. 6.2's adaptive beta uses beta / dt_N)."""
        raise NotImplementedError

    def stage(self, step: int) -> int:
        """The curriculum stage at step k (logged; grid size N(k) for iCT)."""
        raise NotImplementedError
