"""The coupling interface: how a batch of noise x1 is paired with data x0.

A coupling is an ``nn.Module``: learned couplings (VC) own parameters that the trainer puts in their
own optimiser group (with the coupling's own clipping), save in checkpoints and average with their own
EMA; model-based couplings (GC) read the online or EMA consistency function from the context. A
coupling may add a loss term (the KL of VC), logs scalar tensors (averaged per report) and may change how
the two training points are built (VR) or how multistep sampling re-noises (VCT Alg. 2).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from torch import Tensor, nn

from ..kernels import Kernel
from ..registry import Registry


COUPLINGS: Registry[type["Coupling"]] = Registry("coupling")


@dataclass
class CouplingContext:
    """What a coupling may use at one training step."""

    step: int
    t: Tensor
    r: Tensor
    online: nn.Module  # ConsistencyFunction being trained
    ema: nn.Module  # the first EMA copy (the evaluated model)
    discretization: object
    weighting: object  # the loss weighting (``ablate.train.weightings``)
    s: Optional[Tensor] = None
    class_labels: Optional[Tensor] = None


@dataclass
class Pair:
    """Paired endpoints to train on, an extra loss term and scalar logs (tensors, no host sync)."""

    x0: Tensor
    x1: Tensor
    loss: Tensor | float = 0.0
    logs: dict[str, Tensor] = field(default_factory=dict)


class Coupling(nn.Module):
    """Base class; the default is the independent coupling q(x0) p(x1)."""

    #: gradient-norm clipping of the coupling's own parameters (None: no clipping)
    grad_clip: Optional[float] = None
    #: the scalar logs its pairs carry (report columns a sweep may tune on; see ``ablate.train.checks``)
    logs: tuple[str, ...] = ()

    def __init__(self, cfg, kernel: Kernel, data_shape: tuple[int, ...], iterations: int,
                 num_classes: int = 0):
        super().__init__()
        self.cfg, self.kernel, self.data_shape, self.iterations = cfg, kernel, data_shape, iterations
        self.num_classes = num_classes

    def pair(self, x0: Tensor, x1: Tensor, ctx: CouplingContext) -> Pair:
        return Pair(x0, x1)

    def points(self, pair: Pair, ctx: CouplingContext) -> tuple[Tensor, Tensor]:
        """The two training points (x_t, x_r) on the kernel's path between the paired endpoints."""
        return (self.kernel.interpolate(pair.x0, pair.x1, ctx.t),
                self.kernel.interpolate(pair.x0, pair.x1, ctx.r))

    def sampling_noise(self, x0_hat: Tensor, noise: Tensor, use_ema: bool = True) -> Tensor:
        """The noise used to re-noise a generated x0_hat in multistep sampling (VCT Alg. 2 hook):
        fresh Gaussian noise unless the coupling knows better."""
        return noise

    def after_step(self) -> None:
        """Called after each optimiser step (e.g. to update the coupling's own EMA)."""

    def has_parameters(self) -> bool:
        return any(p.requires_grad for p in self.parameters())


def transport_cost(x0: Tensor, x1: Tensor) -> Tensor:
    """Mean squared distance ||x0 - x1||^2 of the pairs trained on (GC Sec. 4.2 (ii))."""
    return (x0 - x1).flatten(1).pow(2).sum(dim=1).mean()

