"""The upper limit s of the consistency function f(x_t, t, s) (Guide Sec. 2.2, 3.4). One module per
choice (options and code), registered in :data:`.base.UPPER_LIMITS`."""
from __future__ import annotations

from ..kernels import Kernel
from .base import UPPER_LIMITS, UpperLimit
from . import cu, vu, phased  # noqa: F401  (register the upper limits, in this order)


def build_upper_limit(cfg, kernel: Kernel) -> UpperLimit:
    return UPPER_LIMITS.get(cfg.name)(cfg, kernel)


__all__ = ["UPPER_LIMITS", "UpperLimit", "build_upper_limit"]
