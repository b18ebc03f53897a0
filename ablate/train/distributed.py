"""Data-parallel trials and gradient accumulation: one optimizer step over ``train.batch_size`` samples
split into ``W x k`` equal slices, k micro-batches (``train.accumulate``) on each of W workers
(``train.distributed.workers``). Pure PyTorch (``torch.distributed``); who starts the workers is the
caller's business (Ray Train in ``ablate.sweep_workers``, ``torch.multiprocessing`` in the tests).

The step is the full-batch step, cut into slices:

    g = (1 / (W k)) sum_{w, j} grad L(slice_{w, j}),   L(slice) = mean over the slice's samples,

which is grad of the mean over the global batch because the slices are equal (mean of means). Each
worker sums its k micro-batch gradients (each scaled 1/k) locally, then one all-reduce (sum / W)
averages across workers; gradient clipping, the optimizer, the EMAs and the coupling's own update run on
the averaged gradient, identically on every worker, so parameters never drift apart.

Per-sample randomness is drawn for the global batch and sliced: every worker, for every micro-batch,
restores the RNG state the step began with and draws the global batch's indices, flips, noise x1 and
times (t, r, s) exactly as the single-process trainer does, then keeps rows ``[a, b)`` of them
(:class:`SliceView`). Dropout masks likewise (:class:`SlicedDropout`): a mask of the global batch's
shape drawn from the shared stream as ``torch.nn.functional.dropout`` draws it on CPU, and sliced, so
the target forward (which replays the online forward's RNG state) sees the same masks. Hence for
per-sample couplings (``independent``, ``vc``: its x1 is the reparameterisation noise) the update does
not depend on W or k, up to floating-point summation order; on CPU it matches the plain trainer's, on
CUDA the plain trainer's fused dropout kernel draws other masks of the same law. Batch-level couplings
(``ot``'s assignment, ``vr``'s in-batch score, ``gc``'s mixing draw) act on each slice alone, as they do
per device in the papers' multi-GPU runs (VCT Sec. 7 on CIFAR-10: OT's benefit shrinks with the
per-device batch).

Writers (rows, samples, checkpoints) and evaluation are the caller's to confine to rank 0; nothing here
writes. Every rank must load the same checkpoint on resume: the RNG state in it is the shared stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .config import Config



@dataclass(frozen=True)
class BatchSlice:
    """Rows ``[start, stop)`` of a global batch of ``global_n`` samples."""

    global_n: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


class SliceView:
    """The slice the current micro-batch trains on (None outside a data-parallel step: no slicing)."""

    def __init__(self) -> None:
        self.current: Optional[BatchSlice] = None

    def global_n(self, n: int) -> int:
        """How many samples to draw where the plain trainer draws ``n`` (its batch)."""
        return n if self.current is None else self.current.global_n

    def part(self, x: Tensor) -> Tensor:
        """This micro-batch's rows of a tensor drawn for the global batch."""
        return x if self.current is None else x[self.current.start:self.current.stop]


class SlicedDropout(nn.Module):
    """``nn.Dropout`` whose mask is this slice's rows of the global batch's mask, drawn from the shared
    RNG stream the way ATen's CPU dropout draws it (``empty_like(x).bernoulli_(1 - p)``, scaled by
    1 / (1 - p)), so the masks do not depend on how the batch is split. Outside a sliced step, or on a
    batch that is not the slice (a forward on another batch size), it is plain dropout."""

    def __init__(self, p: float, view: SliceView):
        super().__init__()
        self.p, self.view = p, view

    def forward(self, x: Tensor) -> Tensor:
        sl = self.view.current
        if not self.training or self.p == 0.0 or x.numel() == 0:
            return x
        if sl is None or x.shape[0] != sl.size:
            return nn.functional.dropout(x, self.p, True)
        keep = x.new_empty((sl.global_n, *x.shape[1:])).bernoulli_(1.0 - self.p)[sl.start:sl.stop]
        return x * keep.div_(1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def slice_dropout(module: nn.Module, view: SliceView) -> int:
    """Replace every ``nn.Dropout`` under ``module`` by a :class:`SlicedDropout`; returns how many."""
    swapped = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, SlicedDropout(child.p, view))
                swapped += 1
    return swapped


def is_parallel(cfg: Config) -> bool:
    """Whether a config trains with sliced steps (several workers or micro-batches)."""
    return cfg.train.distributed.workers > 1 or cfg.train.accumulate > 1


def resolve_backend(cfg: Config, device: torch.device) -> str:
    """``train.distributed.backend``: auto = NCCL on CUDA, gloo on CPU."""
    backend = cfg.train.distributed.backend
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    return backend


class DataParallel:
    """The sliced step of one worker (rank ``rank`` of ``world``) of a :class:`Trainer`."""

    def __init__(self, trainer, rank: int, world: int, accumulate: int):
        self.trainer, self.rank, self.world, self.accumulate = trainer, rank, world, accumulate
        self.micro = trainer.cfg.train.batch_size // (world * accumulate)
        self.view = SliceView()
        for model in [trainer.online, *trainer.emas, trainer.target, trainer.coupling]:
            slice_dropout(model, self.view)
        if world > 1:
            self._broadcast_state()

    @classmethod
    def of(cls, trainer) -> Optional["DataParallel"]:
        """None for the plain trainer (one worker, no accumulation); else this process's worker, whose
        rank and world size come from the initialised ``torch.distributed`` process group."""
        cfg = trainer.cfg
        if not is_parallel(cfg):
            return None
        workers = cfg.train.distributed.workers
        if workers == 1:
            return cls(trainer, 0, 1, cfg.train.accumulate)
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(f"train.distributed.workers={workers} needs a torch.distributed process group "
                               "of that size: multi-worker trials run under `ablate run` (Ray Train); "
                               "`ablate train` runs one worker (set train.distributed.workers=1, and "
                               "train.accumulate to keep the batch in memory)")
        if dist.get_world_size() != workers:
            raise RuntimeError(f"train.distributed.workers={workers} but the process group has "
                               f"{dist.get_world_size()} processes")
        return cls(trainer, dist.get_rank(), workers, cfg.train.accumulate)

    def _broadcast_state(self) -> None:
        """Rank 0's initial weights to every rank (all seed alike; this makes it a guarantee)."""
        tr = self.trainer
        with torch.no_grad():
            for model in [tr.online, *tr.emas, tr.target, tr.coupling]:
                for tensor in model.state_dict().values():
                    dist.broadcast(tensor, 0)

    def slice(self, micro: int) -> BatchSlice:
        start = (self.rank * self.accumulate + micro) * self.micro
        return BatchSlice(self.trainer.cfg.train.batch_size, start, start + self.micro)

    def backward(self) -> tuple[Tensor, dict[str, Tensor]]:
        """Gradients of the global batch's mean loss in ``.grad`` (module doc), and the step's loss and
        logs averaged over all slices (identical on every rank)."""
        tr = self.trainer
        cuda = tr.device.type == "cuda"
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state(tr.device) if cuda else None
        tr.optimizer.zero_grad(set_to_none=True)
        loss_sum: Tensor = torch.zeros((), device=tr.device)
        log_sums: dict[str, Tensor] = {}
        for micro in range(self.accumulate):
            if micro:  # every micro-batch draws the global batch from the step's starting state
                torch.set_rng_state(cpu_rng)
                if cuda:
                    torch.cuda.set_rng_state(cuda_rng, tr.device)
            self.view.current = self.slice(micro)
            try:
                loss, logs = tr.loss_terms()
            finally:
                self.view.current = None
            (loss / self.accumulate).backward()
            loss_sum = loss_sum + loss.detach().float()
            for key, value in logs.items():
                log_sums[key] = log_sums.get(key, 0.0) + value.detach().float()
        values = [loss_sum / self.accumulate] + [v / self.accumulate for v in log_sums.values()]
        if self.world > 1:
            values = self._all_reduce_mean(values)
        return values[0], dict(zip(log_sums, values[1:]))

    def _all_reduce_mean(self, values: list[Tensor]) -> list[Tensor]:
        """One all-reduce of every gradient and the step's scalars, divided by the world size. Parameters
        without a gradient are left out; every rank runs the same code path, so the same ones."""
        params = [p for group in self.trainer.optimizer.param_groups for p in group["params"]
                  if p.grad is not None]
        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads] + [v.reshape(1) for v in values])
        dist.all_reduce(flat)
        flat.div_(self.world)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()
        return list(flat[offset:].unbind())
