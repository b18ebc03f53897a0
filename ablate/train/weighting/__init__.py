"""Loss weightings w(t, r) of the consistency loss, per sample. One module per choice (options and
code), registered in :data:`.base.WEIGHTINGS`."""
from __future__ import annotations

from ..kernels import Kernel
from .base import WEIGHTINGS, Weighting
from . import inv_dt, edm, uniform, inv_dt_smooth, gamma  # noqa: F401  (register, in this order)


def build_weighting(cfg, kernel: Kernel) -> Weighting:
    return WEIGHTINGS.get(cfg.name)(cfg, kernel)


__all__ = ["WEIGHTINGS", "Weighting", "build_weighting"]
