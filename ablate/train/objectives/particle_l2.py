"""The Guide's particle loss (Guide eq. 5, in the equal-gradient form of eq. 39)."""
from __future__ import annotations

from typing import Literal

from torch import Tensor

from ..kernels import expand_as
from ..registry import Strict
from .base import OBJECTIVES, GuideTerms, VelocityObjective, row_norm


class ParticleL2Distance(Strict):
    """The Guide's particle loss: w/(t - s) ||g_theta(x_t, t, s) - g_target(x_r, r, s)|| (Guide eq. 5),
    computed in the equal-gradient form of eq. 39 (Guide G.1). Needs kernel ``fm``."""

    name: Literal["particle_l2"] = "particle_l2"


def particle_l2_loss(cfg, terms: GuideTerms) -> Tensor:
    """mean w(t) ||u_t - F_theta(x_t, t, s) + (s - r) (F_-(x_t, t, s) - F_-(x_r, r, s)) / (t - r)||
    (Guide eq. 39), whose gradient equals that of eq. 5, w(t)/(t - s) ||g_theta(x_t, t, s) -
    g_-(x_r, r, s)|| (App. D.1), and tends to the diffusion loss's as s -> t (App. D.2)."""
    k = terms
    slope = expand_as((k.s - k.r) / (k.t - k.r), k.u_t)
    dtype = k.u_t.dtype  # outputs may be bf16 under autocast: compute in the data's precision
    residual = k.u_t - k.v_t.to(dtype) + slope * (k.v_t_target.to(dtype) - k.v_r_target.to(dtype))
    return (k.weight * row_norm(residual)).mean()


@OBJECTIVES.register(ParticleL2Distance)
class ParticleL2Objective(VelocityObjective):
    def loss(self, terms: GuideTerms) -> Tensor:
        return particle_l2_loss(self.cfg, terms)
