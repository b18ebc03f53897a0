"""The backbone registry: a network's options class -> a builder ``(cfg, data shape, classes,
dual_time) -> nn.Module`` of F(x, c_noise, s_noise, class_labels)."""
from __future__ import annotations

from ..registry import Registry

NETWORKS: Registry = Registry("model")
