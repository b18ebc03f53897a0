"""ECT's continuous-time discretization (VCT eq. 62; SCT eqs. 15, 17)."""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from ..registry import Strict
from .base import DISCRETIZATIONS, Discretization


#: the exponent a(k) of q^a in ECT's mapping, by reading (``discretization.stage_exponent``)
STAGE_EXPONENTS = {
    "ceil": lambda step, d: -(-step // d),  # VCT eq. 62
    "floor": lambda step, d: step // d,  # SCT eqs. 15, 17
    "floor_plus_one": lambda step, d: step // d + 1,  # ECT's and VCT's ECM code
}


class ECTOptions(Strict):
    """ECT mapping r = t (1 - n(t) / q^a), n(t) = 1 + k_n sigmoid(-b t) (VCT eq. 62; SCT eq. 15), and
    r = ReLU(1 - n(t) / q^a) (t - s) + s below an upper limit s (SCT eq. 17).

    ``stage_exponent`` a at step k, d = ceil(iterations / stages): ``ceil`` = ceil(k/d) (default, VCT
    eq. 62), ``floor`` = floor(k/d) (SCT eqs. 15, 17), ``floor_plus_one`` = floor(k/d) + 1 (the code of
    ECT, locuslab/ect training/loss.py, and of VCT's ECM, sony/vct models/ecm.py).
    ``r_floor``: where 1 - n(t)/q^a < 0, r = ``sigma_min`` (default: the bottom of the kernel's time
    range, target f(x_{sigma_min}, sigma_min) = x_{sigma_min}) or ``zero`` (r = 0 with the clean data x0
    as target, as both codes do; SCT eq. 15's ReLU also gives r = 0)."""

    name: Literal["ect"] = "ect"
    q: float = Field(2.0, gt=1.0)
    k: float = Field(8.0, ge=0.0)
    b: float = 1.0
    stages: int = Field(8, ge=1)  # d = ceil(iterations / stages): "made smaller eight times"
    stage_exponent: Literal[tuple(STAGE_EXPONENTS)] = "ceil"
    r_floor: Literal["sigma_min", "zero"] = "sigma_min"


@DISCRETIZATIONS.register(ECTOptions)
class ECTDiscretization(Discretization):
    """ECT: t from the time sampler, r = t (1 - n(t) / q^a), n(t) = 1 + k_n / (1 + e^{b t})
    (VCT eq. 62; SCT eq. 15), a = ``stage_exponent`` of k and d = ceil(K / stages). Where
    1 - n(t)/q^a < 0, r is clamped to t_min (so ceil's stage 0, k = 0, trains the boundary target) or,
    with ``r_floor`` ``zero``, to 0 (the model returns x at t = 0, so the target is the clean data, as
    ECT's code does). Below an upper limit s, r = ReLU(1 - n(t)/q^a) (t - s) + s (SCT eq. 17)."""

    @property
    def d(self) -> int:
        return max(1, math.ceil(self.iterations / self.cfg.stages))

    def shrink(self, t: Tensor, step: int) -> Tensor:
        """n(t) / q^a: one minus the ratio r/t of eq. 15 (and (r - s)/(t - s) of eq. 17)."""
        n_t = 1.0 + self.cfg.k / (1.0 + torch.exp(self.cfg.b * t))
        return n_t / self.cfg.q ** self.stage(step)

    def r_of(self, t: Tensor, step: int) -> Tensor:
        r = t * (1.0 - self.shrink(t, step))
        return r.clamp_min(0.0 if self.cfg.r_floor == "zero" else self.kernel.t_min)

    def r_in_segment(self, t: Tensor, s: Tensor, step: int) -> Tensor:
        """SCT eq. 17: r = ReLU(1 - n(t)/q^a) (t - s) + s, the gap shrinking towards s, so s <= r < t.
        r < t is kept in floating point too: for t a few ulps above s, (t - s) ratio + s rounds to t."""
        ratio = (1.0 - self.shrink(t, step)).clamp_min(0.0)
        return torch.minimum(ratio * (t - s) + s, torch.nextafter(t, s))

    def r_above(self, t, r, s, step):
        return self.r_in_segment(t, s, step)

    def sample_pair(self, n, step, sampler, device, lower=None):
        hi = math.inf if self.kernel.unbounded_above else self.kernel.t_max
        if lower is not None:  # a model with upper limit s: t on [s, hi], r by SCT eq. 17
            t = sampler.sample(n, lower, hi, device)
            t = torch.maximum(t, lower + self.kernel.t_min * 1e-4)
            return t, self.r_in_segment(t, lower, step)
        t = sampler.sample(n, self.kernel.t_min, hi, device)
        # a t on the boundary has no r below it: move it just above (measure zero for continuous t)
        t = torch.maximum(t, torch.full_like(t, self.kernel.t_min * (1 + 1e-4)))
        return t, self.r_of(t, step)

    def last_gap(self, step: int) -> float:
        t = torch.tensor([self.kernel.t_max], dtype=torch.float64)
        return float(t - self.r_of(t, step))

    def stage(self, step: int) -> int:
        """The exponent a of q^a at step k."""
        return STAGE_EXPONENTS[self.cfg.stage_exponent](step, self.d)
