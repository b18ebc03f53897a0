"""The upper limit s of the consistency function f(x_t, t, s) (Guide Sec. 2.2, 3.4).

``cu`` keeps s = t0 (classic CMs); ``vu`` draws s from the uniform-power distribution and then t on
[s, tT] (Guide App. E.2); ``phased`` cuts [t0, tT] into segments and maps t to the segment edge below it
(SCT Sec. 4.3, eq. 17). Each choice draws the training times (t, r, s) of a batch.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..discretization import Discretization
from ..kernels import Kernel
from ..registry import Registry
from ..time_sampling import TimeSampler

UPPER_LIMITS: Registry[type["UpperLimit"]] = Registry("upper limit")


class UpperLimit:
    """Base: ``cfg`` is the choice's options. ``dual_time``: the model takes s as a second time input."""

    dual_time = True

    def __init__(self, cfg, kernel: Kernel):
        self.cfg, self.kernel = cfg, kernel

    def draw(self, n: int, step: int, discretization: Discretization, sampler: TimeSampler,
             device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
        """Times (t, r, s) of shape (n,) with s <= r < t; s is None for the classic s = t0."""
        raise NotImplementedError
