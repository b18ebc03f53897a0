"""Variational coupling (VCT Sec. 6, Alg. 1-2): noise x1 drawn from a learned Gaussian q_phi(x1 | x0)."""
from __future__ import annotations

import copy
from typing import Literal, Optional

import torch
from pydantic import Field
from torch import Tensor, nn

from ..networks import build_network
from ..networks.unet import UNetConfig
from ..registry import Strict
from .base import COUPLINGS, Coupling, CouplingContext, Pair


def gaussian_kl_to_standard(mean: Tensor, log_scale: Tensor) -> Tensor:
    """KL(N(mean, diag(scale^2)) || N(0, I)) per sample, summed over dimensions (VCT Alg. 1, L_KL):
    0.5 sum_d (mean_d^2 + scale_d^2 - 1 - 2 log scale_d)."""
    kl = 0.5 * (mean.pow(2) + torch.exp(2.0 * log_scale) - 1.0 - 2.0 * log_scale)
    return kl.flatten(1).sum(dim=1)


class PointEncoder(nn.Module):
    """Encoder for low-dimensional data: a small GELU MLP x0 -> (mean, scale parameter) of x0's shape
    (the scale parameter becomes g_sigma through ``scale_activation``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, 2 * dim))

    def forward(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        mean, scale_param = self.net(x0).chunk(2, dim=1)
        return mean, scale_param


class ImageEncoder(nn.Module):
    """Encoder for images: a smaller copy of the DDPM++ backbone (VCT Table 4: 32 channels, 1 res block,
    mult [2, 2, 2]) without time conditioning (a constant time input). A 1x1 convolution lifts x0 to 2C
    channels so that the UNet's same-shape output holds the mean and the scale parameter."""

    def __init__(self, shape: tuple[int, ...], channels: int):
        super().__init__()
        c = shape[0]
        self.lift = nn.Conv2d(c, 2 * c, kernel_size=1)
        cfg = UNetConfig(channels=channels, channel_mult=[2, 2, 2], num_res_blocks=1, dropout=0.0)
        self.unet = build_network(cfg, (2 * c, *shape[1:]))

    def forward(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        no_time = torch.zeros(x0.shape[0], device=x0.device)
        mean, scale_param = self.unet(self.lift(x0), no_time).chunk(2, dim=1)
        return mean, scale_param


class VCOptions(Strict):
    """Variational coupling (VCT Alg. 1): a Gaussian encoder q(x1 | x0) with KL weight beta (VCT eq. 9);
    beta / dt_N when the loss weight is 1/dt and ``adaptive`` (VCT Sec. 6.2). Defaults: VCT Table 4.

    The paper does not say how the encoder sees x0 or makes its scale g_sigma > 0. ``encoder_input``:
    ``x0`` (default) or ``x0_over_sigma_data`` (sony/vct models/cm_base.py ``posterior_precond``);
    ``scale_activation``: ``exp`` of the output (default) or ``softplus`` (sony/vct, whose KL then uses
    g_sigma + 1e-8)."""

    name: Literal["vc"] = "vc"
    beta: float = Field(30.0, ge=0.0)
    adaptive: bool = True
    encoder_channels: int = Field(32, ge=4)  # image encoder: UNet channels (1 res block, mult [2,2,2])
    encoder_hidden: int = Field(128, ge=1)  # point encoder: MLP width
    ema: float = Field(0.9999, ge=0.0, lt=1.0)  # the encoder's own EMA (used for sampling)
    grad_clip: Optional[float] = Field(200.0, gt=0.0)  # VCT Sec. 7.1
    encoder_input: Literal["x0", "x0_over_sigma_data"] = "x0"
    scale_activation: Literal["exp", "softplus"] = "exp"


@COUPLINGS.register(VCOptions)
class VariationalCoupling(Coupling):
    """x1 = g_mu(x0) + g_sigma(x0) eps (VCT Alg. 1) with the loss term lambda_KL KL(q_phi(x1|x0) || N(0, I))
    averaged over the batch (VCT eq. 9). lambda_KL = beta / dt_N when the loss weight is 1/dt and
    ``adaptive`` (VCT Sec. 6.2: dt_N is the last grid gap for ``ict``, sigma_max - r(sigma_max) for
    ``ect``), else beta. The encoder is trained jointly, clipped at ``grad_clip`` and averaged by its own
    EMA, which multistep sampling uses to re-noise (VCT Alg. 2). The encoder sees x0 or x0 / sigma_data
    (``encoder_input``) and g_sigma is exp or softplus of its scale output (``scale_activation``; the
    sony/vct code's choices are x0 / sigma_data and softplus, with g_sigma + 1e-8 in its KL). Logs
    ``kl``, ``enc_mean_abs`` (mean |g_mu|), ``enc_scale`` (mean g_sigma) and ``kl_weight``."""

    logs = ("kl", "enc_mean_abs", "enc_scale", "kl_weight")

    def __init__(self, cfg, kernel, data_shape, iterations, num_classes=0):
        super().__init__(cfg, kernel, data_shape, iterations, num_classes)
        if len(data_shape) == 1:
            self.encoder: nn.Module = PointEncoder(data_shape[0], cfg.encoder_hidden)
        else:
            self.encoder = ImageEncoder(data_shape, cfg.encoder_channels)
        self.encoder_ema = copy.deepcopy(self.encoder).requires_grad_(False)
        self.grad_clip = cfg.grad_clip
        self._kl_weights: dict[int, float] = {}

    def kl_weight(self, ctx: CouplingContext) -> float:
        """lambda_KL at this step: beta / dt_N (adaptive, 1/dt loss weight) or beta (VCT Sec. 6.2)."""
        if not (self.cfg.adaptive and ctx.weighting.is_inverse_dt):
            return self.cfg.beta
        stage = ctx.discretization.stage(ctx.step)
        if stage not in self._kl_weights:  # dt_N changes only with the curriculum stage
            self._kl_weights[stage] = self.cfg.beta / ctx.discretization.last_gap(ctx.step)
        return self._kl_weights[stage]

    def encode(self, x0: Tensor, use_ema: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(g_mu, g_sigma, log of the scale the KL uses) of q_phi(x1 | x0)."""
        x = x0 / self.kernel.sigma_data if self.cfg.encoder_input == "x0_over_sigma_data" else x0
        mean, scale_param = (self.encoder_ema if use_ema else self.encoder)(x)
        if self.cfg.scale_activation == "softplus":
            scale = nn.functional.softplus(scale_param)
            return mean, scale, torch.log(scale + 1e-8)
        return mean, torch.exp(scale_param), scale_param

    def pair(self, x0: Tensor, x1: Tensor, ctx: CouplingContext) -> Pair:
        mean, scale, log_scale = self.encode(x0)
        coupled = mean + scale * x1  # x1 is the eps ~ N(0, I) of the reparameterisation
        kl = gaussian_kl_to_standard(mean, log_scale).mean()
        weight = self.kl_weight(ctx)
        logs = {"kl": kl.detach(), "enc_mean_abs": mean.detach().abs().mean(),
                "enc_scale": scale.detach().mean(),
                "kl_weight": torch.tensor(weight, device=x0.device)}
        return Pair(x0, coupled, weight * kl, logs)

    @torch.no_grad()
    def sampling_noise(self, x0_hat: Tensor, noise: Tensor, use_ema: bool = True) -> Tensor:
        """x1 = g_mu(x) + g_sigma(x) eps for the generated x (VCT Alg. 2), with the EMA encoder."""
        mean, scale, _ = self.encode(x0_hat, use_ema)
        return mean + scale * noise

    @torch.no_grad()
    def after_step(self) -> None:
        """phi_EMA <- rate phi_EMA + (1 - rate) phi (VCT Alg. 1)."""
        torch._foreach_lerp_(list(self.encoder_ema.parameters()), list(self.encoder.parameters()),
                             1.0 - self.cfg.ema)

