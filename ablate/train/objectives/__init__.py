"""The objective axis (config section ``distance``): one module per choice (options and loss),
registered in :data:`.base.OBJECTIVES`; all are called as ``objective(online, target, batch)``."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

from ..kernels import Kernel
from .base import OBJECTIVES, LossBatch, Objective
from . import pseudo_huber, l2, l2_squared, particle_l2, time_aware_mmd  # noqa: F401  (register, in order)


def build_objective(cfg, kernel: Kernel,
                    autocast: Callable[[], AbstractContextManager] = nullcontext) -> Objective:
    return OBJECTIVES.get(cfg.name)(cfg, kernel, autocast)


__all__ = ["OBJECTIVES", "LossBatch", "Objective", "build_objective"]
