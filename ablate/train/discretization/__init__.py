"""Discretizations: how far apart the two times (t, r) of a consistency pair are. One module per choice
(options and code), registered in :data:`.base.DISCRETIZATIONS`."""
from __future__ import annotations

from ..kernels import Kernel
from .base import DISCRETIZATIONS, Discretization
from . import ict, ect, guide  # noqa: F401  (register the discretizations, in this order)


def build_discretization(cfg, kernel: Kernel, iterations: int) -> Discretization:
    return DISCRETIZATIONS.get(cfg.name)(cfg, kernel, iterations)


__all__ = ["DISCRETIZATIONS", "Discretization", "build_discretization"]
