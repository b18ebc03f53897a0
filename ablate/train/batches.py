"""The data a trainer consumes, and a batch order that is a pure function of the step.

Datasets are held as one tensor on the training device (toy sets, digits, MNIST and CIFAR-10 all fit),
so a batch is one index gather: no DataLoader workers, no host-device copies on the hot path. The
batch at step k depends only on (seed, k), which makes exact resume need no data-loader state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor

NoiseSampler = Callable[[int, torch.device], Tensor]


@dataclass
class DataBundle:
    """A dataset ready for training.

    ``x_train``/``x_holdout`` are float tensors in the model's value range (images in [-1, 1], shape
    (N, C, H, W); points shape (N, D)). ``sample_noise(n, device)`` draws n samples of the noise
    distribution p_z from the global torch RNG (None: standard Gaussian of the data's shape).
    """

    name: str
    x_train: Tensor
    x_holdout: Tensor
    kind: str  # "points" or "images"
    y_train: Optional[Tensor] = None
    y_holdout: Optional[Tensor] = None
    num_classes: int = 0
    xflip: bool = False
    sample_noise: Optional[NoiseSampler] = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def dim(self) -> int:
        return int(self.x_train[0].numel())

    def to(self, device: torch.device) -> "DataBundle":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return DataBundle(self.name, move(self.x_train), move(self.x_holdout), self.kind,
                          move(self.y_train), move(self.y_holdout), self.num_classes, self.xflip,
                          self.sample_noise, dict(self.meta))

    def noise(self, n: int, device: torch.device) -> Tensor:
        if self.sample_noise is not None:
            return self.sample_noise(n, device)
        return torch.randn((n, *self.shape), device=device)


class BatchOrder:
    """Epoch-wise random permutations derived from (seed, epoch): batch k is a pure function of k."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device):
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the dataset size {n}")
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=gen).to(self.device)
            self._epoch = epoch
        return self._perm

    def indices(self, step: int) -> Tensor:
        """Indices of batch ``step``; batches never straddle epochs (the tail of an epoch is dropped)."""
        per_epoch = self.n // self.batch_size
        epoch, pos = divmod(step, per_epoch)
        start = pos * self.batch_size
        return self._permutation(epoch)[start:start + self.batch_size]
