"""Backbones F(x, c_noise, s_noise, class_labels): an MLP for points, a UNet for images. One module per
network (options and builder), registered in :data:`.base.NETWORKS`."""
from __future__ import annotations

from torch import nn

from .base import NETWORKS
from . import mlp, unet  # noqa: F401  (register the networks, in this order)


def build_network(cfg, shape: tuple[int, ...], num_classes: int = 0, dual_time: bool = False) -> nn.Module:
    return NETWORKS.get(cfg.name)(cfg, shape, num_classes, dual_time)
