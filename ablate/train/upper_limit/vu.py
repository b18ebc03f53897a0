"""The Guide's variable upper limit (Guide Sec. 3.4, eq. 17, App. E.2)."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from ..registry import Strict
from .base import UPPER_LIMITS, UpperLimit


def sample_uniform_power(n: int, nu: float, device: torch.device) -> Tensor:
    """s = u (1 - (1 - v)^{1/nu}), u, v ~ U(0, 1): the hierarchical sampler of Guide App. E.2, whose
    marginal is p_up(s; nu) = nu int_s^1 (1/tau) (1 - s/tau)^{nu - 1} dtau on [0, 1] (eq. 17)."""
    u = torch.rand(n, device=device)
    v = torch.rand(n, device=device)
    return u * (1.0 - (1.0 - v) ** (1.0 / nu))


class VUOptions(Strict):
    """VU: s ~ uniform-power(nu) on [t0, tT] (Guide eq. 17, sampled as in App. E.2), then t on [s, tT];
    the model takes (x_t, t, s). nu = 4 is the Guide's best trade-off (Fig. 7f). Needs kernel ``fm``."""

    name: Literal["vu"] = "vu"
    nu: float = Field(4.0, gt=0.0)


@UPPER_LIMITS.register(VUOptions)
class VariableUpperLimit(UpperLimit):
    """s = t0 + (tT - t0) x with x ~ p_up(nu) (Guide eq. 17, App. E.2), then t on [s, tT] and
    s <= r < t (Guide Sec. 3.4: sampling s first keeps the CU task as s -> t0)."""

    def draw(self, n, step, discretization, sampler, device):
        k = self.kernel
        s = k.t_min + (k.t_max - k.t_min) * sample_uniform_power(n, self.cfg.nu, device)
        t, r = discretization.sample_pair(n, step, sampler, device, lower=s)
        return t, r, s
