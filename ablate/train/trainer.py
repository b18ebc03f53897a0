"""The shared consistency-training loop: one step is

    x0 ~ data, x1 ~ p_z, (t, r) ~ discretization, (x0, x1) <- coupling,
    loss = mean_i w(t_i, r_i) d(f_theta(x_t, t), sg f_target(x_r, r)) + coupling loss

with the iCT/ECT building blocks chosen by the config. The trainer knows nothing of Ray, pandas or
files other than its own checkpoints: reports go to a callback as flat dicts.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import pickle
import random
import re
import tempfile
import time
from contextlib import nullcontext
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from .batches import BatchOrder, DataBundle
from .checks import DatasetInfo, check_runnable
from .columns import trainer_columns
from .config import Config
from .couplings import CouplingContext, build_coupling, transport_cost
from .diagnostics import MicrobatchOrder, gradient_diagnostics
from .distributed import DataParallel
from .discretization import build_discretization
from .kernels import build_kernel
from .model import ConsistencyFunction
from .networks import build_network
from .objectives import LossBatch, build_objective
from .optim import build_optimizer, lr_factor
from .sampling import sample_with
from .time_sampling import build_time_sampler
from .upper_limit import build_upper_limit
from .weighting import build_weighting

log = logging.getLogger(__name__)

ReportCallback = Callable[[dict[str, Any], "Trainer"], None]
Evaluator = Callable[[Callable[[int, int, int], Tensor], int], dict[str, Any]]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


class Trainer:
    """Consistency training of one config on one dataset. ``run()`` trains to ``train.iterations``."""

    def __init__(self, cfg: Config, data: DataBundle, evaluator: Optional[Evaluator] = None,
                 device: Optional[torch.device] = None):
        check_runnable(cfg, DatasetInfo.of_bundle(data))  # every start-up rule, as validation checks them
        self.cfg = cfg
        self.device = device or resolve_device(cfg.train.device)
        seed_everything(cfg.train.seed)
        self.data = data.to(self.device)
        self.evaluator = evaluator
        self.kernel = build_kernel(cfg.kernel)
        num_classes = data.num_classes if cfg.data.class_conditional else 0
        self.upper_limit = build_upper_limit(cfg.upper_limit, self.kernel)
        self.dual_time = self.upper_limit.dual_time
        backbone = build_network(cfg.model, data.shape, num_classes, self.dual_time)
        if cfg.train.compile:
            backbone = torch.compile(backbone)
        self.online = ConsistencyFunction(backbone, self.kernel, cfg.precond, self.dual_time).to(self.device)
        self.emas = [self._frozen_copy(self.online) for _ in cfg.train.ema]
        self.target = self.online if cfg.target.name == "stopgrad" else self._frozen_copy(self.online)
        self.coupling = build_coupling(cfg.coupling, self.kernel, data.shape, cfg.train.iterations,
                                       num_classes).to(self.device)
        self.discretization = build_discretization(cfg.discretization, self.kernel, cfg.train.iterations)
        self.time_sampler = build_time_sampler(cfg.time_sampling)
        self.weighting = build_weighting(cfg.weighting, self.kernel)
        self.objective = build_objective(cfg.distance, self.kernel, self._autocast)
        groups = [{"params": list(self.online.parameters())}]
        if self.coupling.has_parameters():
            groups.append({"params": [p for p in self.coupling.parameters() if p.requires_grad]})
        self.optimizer = build_optimizer(cfg.train.optimizer, groups, cfg.train.lr, cfg.train.betas)
        self.batches = BatchOrder(len(self.data.x_train), cfg.train.batch_size, cfg.train.seed, self.device)
        self.num_classes = num_classes
        self.step = 0
        self.wall_s = 0.0
        self.status = "running"
        # parameter lists built once: checkpoints load in place, so they stay valid
        self._online_params = list(self.online.parameters())
        self._ema_params = [list(ema.parameters()) for ema in self.emas]
        self._target_params = None if self.target is self.online else list(self.target.parameters())
        self._coupling_params = [p for p in self.coupling.parameters() if p.requires_grad]
        self.columns = trainer_columns(cfg)  # every report row carries these, from step 0 on
        self._reset_accumulators()
        # data-parallel workers / gradient accumulation (ablate.train.distributed); None: the plain step
        self.parallel = DataParallel.of(self)

    # ----------------------------------------------------------------------------------- set-up
    def _frozen_copy(self, module: torch.nn.Module) -> torch.nn.Module:
        clone = copy.deepcopy(module)
        clone.requires_grad_(False)
        return clone

    def _reset_accumulators(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._log_sums: dict[str, Tensor] = {}
        self._n_steps = 0

    @property
    def ema(self) -> torch.nn.Module:
        """The evaluated EMA model (first rate of ``train.ema``)."""
        return self.emas[0]

    # ------------------------------------------------------------------------------------- step
    def _batch(self, order: Optional[BatchOrder] = None) -> tuple[Tensor, Optional[Tensor]]:
        idx = (order or self.batches).indices(self.step)
        x0 = self.data.x_train[idx]
        if self.data.xflip:
            flip = torch.rand(x0.shape[0], device=self.device) < 0.5
            x0 = torch.where(flip.view(-1, *([1] * (x0.dim() - 1))), x0.flip(-1), x0)
        y = self.data.y_train[idx] if self.num_classes and self.data.y_train is not None else None
        return self._part(x0), None if y is None else self._part(y)  # data-parallel: this slice's rows

    # data-parallel steps (ablate.train.distributed) draw for the global batch and keep their slice
    def _part(self, x: Tensor) -> Tensor:
        return x if self.parallel is None else self.parallel.view.part(x)

    def _draw_n(self, n: int) -> int:
        return n if self.parallel is None else self.parallel.view.global_n(n)

    def _autocast(self):
        if self.cfg.train.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def loss_terms(self, order: Optional[BatchOrder] = None) -> tuple[Tensor, dict[str, Tensor]]:
        """One batch's training loss and its logs (of ``order``'s batch, the trainer's by default);
        consumes RNG exactly as a training step does."""
        x0, y = self._batch(order)
        n = self._draw_n(x0.shape[0])  # data-parallel: the global batch's draws, then this slice's rows
        x1 = self._part(self.data.noise(n, self.device))
        group = self.objective.time_group  # consecutive samples sharing one (t, r, s)
        times = self.upper_limit.draw(n // group, self.step, self.discretization, self.time_sampler, self.device)
        times = times if group == 1 else tuple(None if v is None else v.repeat_interleave(group) for v in times)
        t, r, s = (None if v is None else self._part(v) for v in times)  # data-parallel slice
        scale = self.time_sampler.loss_scale(t, self.kernel.t_min if s is None else s, self.kernel.t_max)
        ctx = CouplingContext(self.step, t, r, self.online, self.ema, self.discretization, self.weighting,
                              class_labels=y)
        pair = self.coupling.pair(x0, x1, ctx)
        x_t, x_r = self.coupling.points(pair, ctx)
        weight = self.weighting(t, r)
        batch = LossBatch(pair.x0, pair.x1, x_t, x_r, t, r, s, weight if scale is None else weight * scale, y)
        loss = self.objective(self.online, self.target, batch) + pair.loss
        logs = dict(pair.logs)
        logs["transport_cost"] = transport_cost(pair.x0, pair.x1).detach()
        return loss, logs

    def train_step(self) -> None:
        factor = lr_factor(self.cfg.train.lr_schedule, self.step, self.cfg.train.lr_ref_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.train.lr * factor
        if self.parallel is None:
            loss, logs = self.loss_terms()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        else:  # micro-batches and the gradient all-reduce (ablate.train.distributed)
            loss, logs = self.parallel.backward()
        if self.cfg.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self._online_params, self.cfg.train.grad_clip)
        if self.coupling.grad_clip is not None and self._coupling_params:
            torch.nn.utils.clip_grad_norm_(self._coupling_params, self.coupling.grad_clip)
        self.optimizer.step()
        self._update_emas()
        self.coupling.after_step()
        self.step += 1
        self._loss_sum += loss.detach()
        for key, value in logs.items():
            self._log_sums[key] = self._log_sums.get(key, 0.0) + value.detach().float()
        self._n_steps += 1

    @torch.no_grad()
    def _update_emas(self) -> None:
        for rate, params in zip(self.cfg.train.ema, self._ema_params):
            torch._foreach_lerp_(params, self._online_params, 1.0 - rate)
        if self._target_params is not None:
            torch._foreach_lerp_(self._target_params, self._online_params, 1.0 - self.cfg.target.rate)

    # --------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, steps: int, n: int, seed: int, chunk: int = 2048) -> Tensor:
        """n samples with ``steps`` sampling steps from the EMA model; deterministic in ``seed`` and
        without touching the training RNG stream."""
        if steps < 1:
            raise ValueError("steps must be >= 1")
        mid = self.cfg.eval.mid_times[: steps - 1]
        cuda = self.device.type == "cuda"
        outs = []
        was_training = self.ema.training
        self.ema.eval()
        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            torch.manual_seed(seed)
            for start in range(0, n, chunk):
                m = min(chunk, n - start)
                y = (torch.randint(self.num_classes, (m,), device=self.device)
                     if self.num_classes else None)
                x1 = self.data.noise(m, self.device)
                outs.append(sample_with(self.cfg.eval.sampler, self.ema, x1, mid, self.coupling,
                                        lambda x: self.data.noise(x.shape[0], self.device), y,
                                        self.cfg.eval.eta))
        self.ema.train(was_training)
        return torch.cat(outs)

    # ---------------------------------------------------------------------------------- running
    def _is_report_step(self) -> bool:
        k, log_cfg = self.step, self.cfg.log
        return k % log_cfg.report_every == 0 or k % self.cfg.eval.every == 0 or k == self.cfg.train.iterations

    def _report_row(self) -> dict[str, Any]:
        """Every trainer column (:func:`.columns.trainer_columns`); averages over the steps since the last
        report, null where nothing was measured (the step-0 row precedes any training step)."""
        n = max(self._n_steps, 1)
        values = [self._loss_sum / n] + [v / n for v in self._log_sums.values()]
        host = torch.stack(values).tolist() if self._n_steps else [None] * len(values)
        row: dict[str, Any] = dict.fromkeys(self.columns)
        row.update(step=self.step, images_seen=self.step * self.cfg.train.batch_size, wall_s=self.wall_s,
                   loss=host[0], lr=self.optimizer.param_groups[0]["lr"],
                   stage=self.discretization.stage(self.step))
        row.update(zip(self._log_sums.keys(), host[1:]))
        if self._n_steps and not math.isfinite(row["loss"]):
            self.status = "diverged"
        row["status"] = self.status
        if self.cfg.log.diag_every and self.status == "running" and self._diagnostics_due():
            row.update(self.diagnostics())
        return row

    def diagnostics(self) -> dict[str, float]:
        """Gradient diagnostics (:mod:`.diagnostics`) of this step's batch, split into
        ``log.diag_microbatches`` microbatches, each a full :meth:`loss_terms`."""
        parts = self.cfg.log.diag_microbatches
        if self.cfg.train.batch_size < 2 * parts:
            raise ValueError(f"log.diag_microbatches={parts} needs train.batch_size >= {2 * parts} "
                             f"(got {self.cfg.train.batch_size})")
        params = [p for p in self.online.parameters() if p.requires_grad]
        return gradient_diagnostics(lambda part: self.loss_terms(MicrobatchOrder(self.batches, part, parts))[0],
                                    params, parts, self.device)

    def _diagnostics_due(self) -> bool:
        """Diagnostics run at a report when a multiple of ``log.diag_every`` fell since the last report
        (and at step 0): at most once per report, on the batch of the report's step."""
        every, previous = self.cfg.log.diag_every, self.step - self._n_steps
        return self.step == 0 or self.step // every > previous // every

    def _evaluate(self, row: dict[str, Any]) -> None:
        if self.evaluator is None:
            return
        if self.step % self.cfg.eval.every == 0 or self.step == self.cfg.train.iterations:
            row.update(self.evaluator(self.sample, self.step))

    def run(self, on_report: Optional[ReportCallback] = None) -> dict[str, Any]:
        """Train from the current step to ``train.iterations``; report at step 0 (untrained baseline,
        unless resuming), every ``log.report_every`` and ``eval.every`` steps and at the end.
        Returns the last report row; a non-finite loss ends the run with status ``diverged``."""
        total = self.cfg.train.iterations
        row: dict[str, Any] = {}
        tick = time.perf_counter()
        if self.step == 0:
            row = self._report_row()
            self._evaluate(row)
            self.wall_s += time.perf_counter() - tick
            row["wall_s"] = self.wall_s
            if on_report:
                on_report(row, self)
            tick = time.perf_counter()
        while self.step < total and self.status == "running":
            self.train_step()
            if not self._is_report_step():
                continue
            row = self._report_row()
            if self.status == "running":
                if self.step == total:
                    self.status = row["status"] = "completed"
                self._evaluate(row)
            now = time.perf_counter()
            self.wall_s += now - tick
            tick = now
            row["wall_s"] = self.wall_s
            self._reset_accumulators()
            if on_report:
                on_report(row, self)
        return row

    # ------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        return {
            "step": self.step,
            "wall_s": self.wall_s,
            "status": self.status,
            "online": self.online.state_dict(),
            "emas": [ema.state_dict() for ema in self.emas],
            "target": None if self.target is self.online else self.target.state_dict(),
            "coupling": self.coupling.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if cuda else None,
                "numpy": _numpy_state_as_data(np.random.get_state()),
                "python": random.getstate(),
            },
            "config": self.cfg.model_dump(mode="json"),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.wall_s, self.status = state["step"], state["wall_s"], state["status"]
        self.online.load_state_dict(state["online"])
        for ema, sd in zip(self.emas, state["emas"]):
            ema.load_state_dict(sd)
        if state["target"] is not None:
            self.target.load_state_dict(state["target"])
        self.coupling.load_state_dict(state["coupling"])
        self.optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(_numpy_state_from_data(rng["numpy"]))
        random.setstate(rng["python"])
        self._reset_accumulators()

    def save(self, path: str) -> None:
        """Write a checkpoint atomically (temp file in the same directory, then rename)."""
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ckpt-", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(self.state_dict(), tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def load(self, path: str) -> None:
        """Load a checkpoint as data only (``weights_only``): a checkpoint in shared storage that carries
        pickled objects would be code run by every node that resumes from it, so it is refused."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except pickle.UnpicklingError as err:
            found = re.search(r"GLOBAL (\S+)", str(err))
            detail = f"it names {found.group(1)}" if found else "not plain data"
            raise CheckpointError(f"{path}: refused to load: the checkpoint holds objects other than "
                                  f"tensors and plain data ({detail}); ablate loads checkpoints as data "
                                  "only. A checkpoint written by ablate never does: was it replaced?") from None
        self.load_state_dict(state)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded as data (tensors, numbers, strings, lists, dicts)."""


def _numpy_state_as_data(state: tuple) -> dict[str, Any]:
    """numpy's legacy RNG state (name, uint32 keys, pos, has_gauss, cached) without numpy objects, so
    that checkpoints load with ``torch.load(weights_only=True)``."""
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state_from_data(data: dict[str, Any]) -> tuple:
    return (data["name"], data["keys"].cpu().numpy().astype(np.uint32), data["pos"], data["has_gauss"],
            data["cached_gaussian"])
