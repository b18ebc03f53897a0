"""Distributions of the training time t. One module per choice (options and sampler), registered in
:data:`.base.TIME_SAMPLERS`."""
from __future__ import annotations

from .base import TIME_SAMPLERS, TimeSampler
from . import lognormal, uniform, sine, cosh  # noqa: F401  (register the samplers, in this order)


def build_time_sampler(cfg) -> TimeSampler:
    return TIME_SAMPLERS.get(cfg.name)(cfg)


__all__ = ["TIME_SAMPLERS", "TimeSampler", "build_time_sampler"]
