"""Couplings: how noise x1 is paired with data x0. One module per choice (its options and its code),
registered in :data:`.base.COUPLINGS`; the import line below is all a new coupling adds here."""
from __future__ import annotations

from .base import COUPLINGS, Coupling, CouplingContext, Pair, transport_cost
from . import independent, ot, vc, gc, vr  # noqa: F401  (register the couplings, in this order)


def build_coupling(cfg, kernel, data_shape, iterations: int, num_classes: int = 0) -> Coupling:
    return COUPLINGS.get(cfg.name)(cfg, kernel, data_shape, iterations, num_classes)


__all__ = ["COUPLINGS", "Coupling", "CouplingContext", "Pair", "build_coupling", "transport_cost"]
