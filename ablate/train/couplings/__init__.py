"""Couplings: how noise x1 is paired with data x0. One registry entry per choice."""
from __future__ import annotations

from ..registry import Registry
from .base import Coupling, CouplingContext, Pair, transport_cost

COUPLINGS: Registry[type[Coupling]] = Registry("coupling")
COUPLINGS.register("independent")(Coupling)

from . import ot  # noqa: E402,F401  (registers "ot")
from . import gc, vc, vr  # noqa: E402,F401  (register "gc", "vc", "vr")


def build_coupling(cfg, kernel, data_shape, iterations: int, num_classes: int = 0) -> Coupling:
    return COUPLINGS.get(cfg.name)(cfg, kernel, data_shape, iterations, num_classes)


__all__ = ["COUPLINGS", "Coupling", "CouplingContext", "Pair", "build_coupling", "transport_cost"]
