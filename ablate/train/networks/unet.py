"""Compact DDPM++ UNet for consistency training on small images.

The architecture is EDM's ``SongUNet`` in its DDPM++ setting (Karras et al., 2022), which every source
paper trains (VCT Table 4-5, GC App. B, Guide App. G "DDPM++ architecture (Karras et al., 2022)"):
positional time embedding, a 2-layer SiLU mapping to 4x ``channels``, residual blocks with an additive
embedding bias, skip scale sqrt(1/2), 2x2 average-pool down / nearest up with 1x1 projected skips,
single-head self-attention, xavier-uniform init and near-zero residual output layers.

Departures, each for the small images this platform runs on: GroupNorm groups shrink with the channel
count; a level halves the resolution only where that stays meaningful (see :func:`level_resolutions`);
the final conv is exactly zero. As in EDM, the first bottleneck block always attends, whatever
``attn_resolutions`` says: with it the parameter counts match VCT Table 4 (FashionMNIST "no attention"
13.6M, CIFAR-10 55.7M, VC encoders 1.5M / 1.6M), without it they would not (13.56M, 55.47M, 1.54M).
"""
from __future__ import annotations

import logging
import math
from typing import Annotated, Literal

from pydantic import Field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import Strict
from .base import NETWORKS


class UNetConfig(Strict):
    """Compact DDPM++-style UNet (VCT Table 4: channels 64, mult [2,2,2], 4 res blocks, dropout 0.3)."""

    name: Literal["unet"] = "unet"
    channels: int = Field(64, ge=4)
    channel_mult: list[Annotated[int, Field(ge=1)]] = [2, 2, 2]
    num_res_blocks: int = Field(4, ge=1)
    attn_resolutions: list[int] = []
    dropout: float = Field(0.3, ge=0.0, lt=1.0)

logger = logging.getLogger(__name__)

SKIP_SCALE = math.sqrt(0.5)  # EDM SongUNet: residual sums are scaled by sqrt(1/2)
NEAR_ZERO = 1e-5  # EDM ``init_zero``: residual output layers start at 1e-5 x xavier
EMB_MULT = 4  # EDM ``channel_mult_emb``: the embedding width is 4 x channels
Resample = Literal["none", "down", "up"]


def group_count(channels: int, max_groups: int = 32, min_channels_per_group: int = 4) -> int:
    """GroupNorm groups: EDM's min(32, C // 4), lowered to the nearest divisor of C (at least 1)."""
    groups = max(1, min(max_groups, channels // min_channels_per_group))
    while channels % groups:
        groups -= 1
    return groups


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(group_count(channels), channels, eps=1e-6)


def level_resolutions(image_size: int, levels: int) -> list[int]:
    """Resolution of each UNet level: level k+1 halves level k's resolution r only if r is even and
    r / 2 >= 4, and otherwise keeps r (every level is still built, with its own channel multiplier).

    32x32, 3 levels: [32, 16, 8]; 28x28: [28, 14, 7]; 8x8 (digits): [8, 4, 4], i.e. two resolutions.
    """
    resolutions = [image_size]
    for _ in range(levels - 1):
        r = resolutions[-1]
        resolutions.append(r // 2 if r % 2 == 0 and r // 2 >= 4 else r)
    return resolutions


def _xavier(layer: nn.Conv2d | nn.Linear, gain: float = 1.0) -> nn.Module:
    """EDM init: xavier-uniform weight times ``gain``, zero bias."""
    nn.init.xavier_uniform_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


def conv(cin: int, cout: int, kernel: int, gain: float = 1.0) -> nn.Conv2d:
    return _xavier(nn.Conv2d(cin, cout, kernel, padding=kernel // 2), gain)


def resample(x: Tensor, mode: Resample) -> Tensor:
    """EDM's resample filter [1, 1]: 2x2 average pooling down, nearest-neighbour 2x up."""
    if mode == "down":
        return F.avg_pool2d(x, 2)
    if mode == "up":
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    return x


def positional_embedding(c_noise: Tensor, freqs: Tensor) -> Tensor:
    """EDM ``PositionalEmbedding`` (endpoint=True): [cos(c w_i), sin(c w_i)] with w_i = 10^(-4 i/(n-1)),
    i = 0..n-1. Frequencies from 1 down to 1e-4 resolve c_noise = 0.25 log sigma ([-1.6, 1.1]) and
    t in [0, 1] smoothly (a CM needs f(x_t, t) smooth in t) and 1000 t without aliasing (DDPM)."""
    angles = c_noise.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class ResBlock(nn.Module):
    """EDM ``UNetBlock`` (DDPM++: additive embedding, no adaptive scale):
    h = conv1(dropout(silu(norm1(conv0(resample(silu(norm0(x)))) + A emb)))),
    x' = (h + skip(resample(x))) / sqrt(2), then optionally x' = (proj(attn(norm2(x'))) + x') / sqrt(2)."""

    def __init__(self, cin: int, cout: int, emb_channels: int, dropout: float,
                 resample_mode: Resample = "none", attention: bool = False):
        super().__init__()
        self.resample_mode = resample_mode
        self.norm0 = group_norm(cin)
        self.conv0 = conv(cin, cout, 3)
        self.affine = _xavier(nn.Linear(emb_channels, cout))
        self.norm1 = group_norm(cout)
        self.dropout = nn.Dropout(dropout)  # global torch RNG: the trainer replays masks by RNG state
        self.conv1 = conv(cout, cout, 3, gain=NEAR_ZERO)
        resampled = resample_mode != "none"
        self.skip = conv(cin, cout, 1) if cin != cout or resampled else None
        self.attention = attention
        if attention:
            self.norm2 = group_norm(cout)
            self.qkv = conv(cout, 3 * cout, 1, gain=math.sqrt(0.2))
            self.proj = conv(cout, cout, 1, gain=NEAR_ZERO)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv0(resample(F.silu(self.norm0(x)), self.resample_mode))
        h = F.silu(self.norm1(h + self.affine(emb)[:, :, None, None]))
        h = self.conv1(self.dropout(h))
        x = resample(x, self.resample_mode)
        x = (h + (self.skip(x) if self.skip is not None else x)).mul_(SKIP_SCALE)
        if self.attention:
            x = (self.proj(self._attend(self.norm2(x))) + x).mul_(SKIP_SCALE)
        return x

    def _attend(self, x: Tensor) -> Tensor:
        """Single-head self-attention over the H*W positions, softmax(q^T k / sqrt(C)) v."""
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(b, 3, 1, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, HW, C)
        return out.transpose(-1, -2).reshape(b, c, h, w)


class UNet(nn.Module):
    """F(x, c_noise[, s_noise][, class_labels]) -> same shape as x (EDM SongUNet, DDPM++ setting).

    Levels: one per ``channel_mult`` entry, level k with ``channels * channel_mult[k]`` channels,
    ``num_res_blocks`` blocks on the way down and ``num_res_blocks + 1`` (taking the skips) on the way
    up, at the resolutions of :func:`level_resolutions`: with 8x8 digits and 3 levels, two resolutions
    (8, 4) are used and the third level stays at 4x4. Attention follows ``attn_resolutions``: after every
    encoder block at a listed resolution, after the last decoder block of such a level; the first bottleneck
    block always attends (EDM DDPM++).

    Conditioning: the positional embedding of ``c_noise`` (any real range, see
    :func:`positional_embedding`), plus a learned linear map of the same embedding of ``s_noise`` when
    ``dual_time`` (the Guide's f(x_t, t, s), Sec. 2; the map tells t and s apart), plus a learned class
    embedding when ``num_classes > 0``; the sum goes through a 2-layer SiLU MLP.
    """

    def __init__(self, cfg: UNetConfig, in_channels: int, image_size: int, num_classes: int = 0,
                 dual_time: bool = False):
        super().__init__()
        if in_channels < 1 or image_size < 1 or num_classes < 0:
            raise ValueError(f"UNet needs in_channels >= 1, image_size >= 1, num_classes >= 0; got "
                             f"{in_channels}, {image_size}, {num_classes}")
        self.in_channels, self.image_size = in_channels, image_size
        self.num_classes, self.dual_time = num_classes, dual_time
        resolutions = level_resolutions(image_size, len(cfg.channel_mult))
        unused = sorted(set(cfg.attn_resolutions) - set(resolutions))
        if unused:
            logger.warning("model.attn_resolutions %s: no level at those resolutions for %dx%d images "
                           "(levels run at %s); no attention there", unused, image_size, image_size,
                           resolutions)
        attn = set(cfg.attn_resolutions)
        noise_channels, emb_channels = 2 * (cfg.channels // 2), cfg.channels * EMB_MULT

        # Mapping network: EDM map_noise / map_label / map_layer0 / map_layer1.
        half = noise_channels // 2
        self.register_buffer("freqs", 10000.0 ** -(torch.arange(half) / (half - 1)), persistent=False)
        self.map_upper_time = _xavier(nn.Linear(noise_channels, noise_channels)) if dual_time else None
        self.map_label = nn.Embedding(num_classes, noise_channels) if num_classes else None
        if self.map_label is not None:  # same scale as the positional features (variance 1/2)
            nn.init.normal_(self.map_label.weight, std=math.sqrt(0.5))
        self.map_layer0 = _xavier(nn.Linear(noise_channels, emb_channels))
        self.map_layer1 = _xavier(nn.Linear(emb_channels, emb_channels))

        def block(cin: int, cout: int, mode: Resample = "none", attention: bool = False) -> ResBlock:
            return ResBlock(cin, cout, emb_channels, cfg.dropout, mode, attention)

        # Encoder: input conv, then per level a transition block (halving where allowed) and the blocks.
        self.conv_in = conv(in_channels, cfg.channels, 3)
        self.encoder = nn.ModuleList()
        skip_channels = [cfg.channels]
        cout = cfg.channels
        for level, (mult, res) in enumerate(zip(cfg.channel_mult, resolutions)):
            if level > 0:
                mode: Resample = "down" if res < resolutions[level - 1] else "none"
                self.encoder.append(block(cout, cout, mode))
                skip_channels.append(cout)
            for _ in range(cfg.num_res_blocks):
                self.encoder.append(block(cout, cfg.channels * mult, attention=res in attn))
                cout = cfg.channels * mult
                skip_channels.append(cout)

        # Decoder: bottleneck pair, then per level (deepest first) a transition block and the blocks
        # that concatenate the encoder's skips; ``takes_skip`` marks the latter.
        self.decoder = nn.ModuleList()
        takes_skip: list[bool] = []
        last = len(cfg.channel_mult) - 1
        for level in range(last, -1, -1):
            res, mult = resolutions[level], cfg.channel_mult[level]
            if level == last:
                self.decoder.extend([block(cout, cout, attention=True), block(cout, cout)])
                takes_skip += [False, False]
            else:
                mode = "up" if resolutions[level + 1] < res else "none"
                self.decoder.append(block(cout, cout, mode))
                takes_skip.append(False)
            for idx in range(cfg.num_res_blocks + 1):
                cin = cout + skip_channels.pop()
                cout = cfg.channels * mult
                attention = idx == cfg.num_res_blocks and res in attn
                self.decoder.append(block(cin, cout, attention=attention))
                takes_skip.append(True)
        self.takes_skip = tuple(takes_skip)
        self.norm_out = group_norm(cout)
        self.conv_out = nn.Conv2d(cout, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # output is zero at init, as in CM/diffusion practice
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, c_noise: Tensor, s_noise: Tensor | None = None,
                class_labels: Tensor | None = None) -> Tensor:
        """x: (B, C, H, H) with C = in_channels, H = image_size; c_noise, s_noise: (B,) float;
        class_labels: (B,) integer in [0, num_classes). Returns a tensor shaped like x."""
        self._check_inputs(x, c_noise, s_noise, class_labels)
        emb = positional_embedding(c_noise, self.freqs)
        if self.map_upper_time is not None:
            emb = emb + self.map_upper_time(positional_embedding(s_noise, self.freqs))
        if self.map_label is not None:
            emb = emb + self.map_label(class_labels)
        emb = emb.to(self.map_layer0.weight.dtype)
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))

        h = self.conv_in(x)
        skips = [h]
        for encoder_block in self.encoder:
            h = encoder_block(h, emb)
            skips.append(h)
        for decoder_block, takes_skip in zip(self.decoder, self.takes_skip):
            if takes_skip:
                h = torch.cat([h, skips.pop()], dim=1)
            h = decoder_block(h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))

    def _check_inputs(self, x: Tensor, c_noise: Tensor, s_noise: Tensor | None,
                      class_labels: Tensor | None) -> None:
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"UNet input x must have shape (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}")
        if c_noise.shape != (x.shape[0],):
            raise ValueError(f"c_noise must have shape ({x.shape[0]},), got {tuple(c_noise.shape)}")
        if self.dual_time != (s_noise is not None):
            raise ValueError("s_noise is required with dual_time=True (variable upper limit) and must "
                             f"be None otherwise; this UNet has dual_time={self.dual_time}")
        if s_noise is not None and s_noise.shape != (x.shape[0],):
            raise ValueError(f"s_noise must have shape ({x.shape[0]},), got {tuple(s_noise.shape)}")
        if (self.num_classes > 0) != (class_labels is not None):
            raise ValueError("class_labels are required for a class-conditional UNet and must be None "
                             f"for an unconditional one; this UNet has num_classes={self.num_classes}")


@NETWORKS.register(UNetConfig)
def build_unet(cfg: UNetConfig, shape: tuple[int, ...], num_classes: int, dual_time: bool) -> nn.Module:
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"model 'unet' needs square images (C, H, H), got data of shape {shape}")
    return UNet(cfg, in_channels=shape[0], image_size=shape[1], num_classes=num_classes,
                dual_time=dual_time)
