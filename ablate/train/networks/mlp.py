"""MLP for low-dimensional data with a sinusoidal time embedding (VCT App. E; GC App. B: depth 4,
width 256, GELU)."""
from __future__ import annotations

import math

import torch
from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from ..registry import Strict
from .base import NETWORKS


class MLPConfig(Strict):
    """MLP with a sinusoidal time embedding (VCT App. E; GC App. B: depth 4, width 256, GELU)."""

    name: Literal["mlp"] = "mlp"
    hidden: int = Field(256, ge=1)
    depth: int = Field(4, ge=1)
    time_dim: int = Field(64, ge=2, multiple_of=2)  # cos and sin halves of the embedding
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    #: width of a Linear + GELU embedding of x before it joins the time embedding (0: x joins as it is).
    #: sony/vct's toy network embeds x to 256 (its checkpoints' first layer is 2 -> 256)
    x_embed: int = Field(0, ge=0)


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style positional embedding of a (B,) time input, shape (B, dim); meant for inputs
    spread over hundreds of units (250 log t, 1000 t), as in the CM/DDPM codebases."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class MLP(nn.Module):
    """F(x, c_noise[, s_noise][, y]): x (or its embedding, ``x_embed``) concatenated with the time
    embedding(s), ``depth`` hidden layers."""

    def __init__(self, cfg: MLPConfig, dim: int, num_classes: int = 0, dual_time: bool = False):
        super().__init__()
        self.time_dim, self.dual_time = cfg.time_dim, dual_time
        n_times = 2 if dual_time else 1
        self.class_embed = nn.Embedding(num_classes, cfg.time_dim) if num_classes else None
        self.x_embed = nn.Sequential(nn.Linear(dim, cfg.x_embed), nn.GELU()) if cfg.x_embed else nn.Identity()
        width_in = (cfg.x_embed or dim) + n_times * cfg.time_dim + (cfg.time_dim if num_classes else 0)
        layers: list[nn.Module] = []
        for i in range(cfg.depth):
            layers += [nn.Linear(width_in if i == 0 else cfg.hidden, cfg.hidden), nn.GELU()]
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
        layers.append(nn.Linear(cfg.hidden, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, c_noise: Tensor, s_noise: Tensor | None = None,
                class_labels: Tensor | None = None) -> Tensor:
        parts = [self.x_embed(x), sinusoidal_embedding(c_noise, self.time_dim)]
        if self.dual_time:
            if s_noise is None:
                raise ValueError("this network takes a second time s (variable upper limit)")
            parts.append(sinusoidal_embedding(s_noise, self.time_dim))
        if self.class_embed is not None:
            parts.append(self.class_embed(class_labels))
        return self.net(torch.cat(parts, dim=1))


@NETWORKS.register(MLPConfig)
def build_mlp(cfg: MLPConfig, shape: tuple[int, ...], num_classes: int, dual_time: bool) -> nn.Module:
    if len(shape) != 1:
        raise ValueError(f"model 'mlp' needs flat points, got data of shape {shape}; use model.name=unet")
    return MLP(cfg, shape[0], num_classes=num_classes, dual_time=dual_time)
