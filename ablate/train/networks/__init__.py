"""Backbones F(x, c_noise, s_noise, class_labels): an MLP for points, a UNet for images."""
from __future__ import annotations

from torch import nn

from ..registry import Registry

NETWORKS: Registry = Registry("model")


@NETWORKS.register("mlp")
def _mlp(cfg, shape: tuple[int, ...], num_classes: int, dual_time: bool) -> nn.Module:
    from .mlp import MLP

    if len(shape) != 1:
        raise ValueError(f"model 'mlp' needs flat points, got data of shape {shape}; use model.name=unet")
    return MLP(cfg, shape[0], num_classes=num_classes, dual_time=dual_time)


@NETWORKS.register("unet")
def _unet(cfg, shape: tuple[int, ...], num_classes: int, dual_time: bool) -> nn.Module:
    from .unet import UNet

    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"model 'unet' needs square images (C, H, H), got data of shape {shape}")
    return UNet(cfg, in_channels=shape[0], image_size=shape[1], num_classes=num_classes,
                dual_time=dual_time)


def build_network(cfg, shape: tuple[int, ...], num_classes: int = 0, dual_time: bool = False) -> nn.Module:
    return NETWORKS.get(cfg.name)(cfg, shape, num_classes, dual_time)
