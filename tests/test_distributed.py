"""Data-parallel steps and gradient accumulation (ablate.train.distributed): the same update whatever the
split of the batch, for a per-sample coupling with dropout on.

Workers are real ``torch.distributed`` gloo process groups started with ``torch.multiprocessing`` (the
trainer step Ray Train runs in each worker, without Ray); the sweep path is in test_sweep_workers.py.

Tolerance: parameters agree to ATOL = 1e-5 after STEPS steps (observed ~1e-7: only the float summation
order differs); a wrong split or average moves them by far more: without the division by the world
size the 2-worker parameters differ by 1.6e-4 (and the losses double), with every rank on the same slice
by 1.0e-3 (both checked by editing ablate/train/distributed.py, 2026-12-03); the control test below
keeps the tolerance honest against a batch of 32.
"""
from __future__ import annotations

import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ablate.data import load_dataset
from ablate.train.config import ConfigError, build_config
from ablate.train.trainer import Trainer

torch.set_num_threads(1)
STEPS, ATOL = 30, 1e-5
CPU = torch.device("cpu")


def raw_config(coupling: str = "independent", batch: int = 64, **train) -> dict:
    return {"data": {"name": "gmm2", "n_train": 1024, "n_holdout": 256},
            "model": {"name": "mlp", "hidden": 32, "depth": 2, "time_dim": 16, "dropout": 0.2},
            "kernel": {"name": "li", "sigma_min": 0.002, "sigma_max": 0.1, "sigma_data": 0.5},
            "coupling": {"name": coupling},
            "discretization": {"name": "ict", "s0": 10, "s1": 80},
            "train": {"iterations": STEPS, "batch_size": batch, "device": "cpu", "ema": [0.9],
                      "lr": 1e-3, "grad_clip": 1.0, **train},
            "eval": {"every": 10 ** 6, "mid_times": [0.07]}, "log": {"report_every": 10}}


def train(raw: dict) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train in this process; the online, EMA and coupling weights and the reported losses."""
    cfg = build_config(raw)
    trainer = Trainer(cfg, load_dataset(cfg.data, cfg.train.seed), device=CPU)
    losses: list[float] = []
    trainer.run(lambda row, _: losses.append(row["loss"]))
    state = {f"online.{k}": v for k, v in trainer.online.state_dict().items()}
    state.update({f"ema.{k}": v for k, v in trainer.ema.state_dict().items()})
    state.update({f"coupling.{k}": v for k, v in trainer.coupling.state_dict().items()})
    return state, losses


def _worker(rank: int, world: int, init_file: str, raw: dict, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        state, losses = train(raw)
        torch.save({"state": state, "losses": losses}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def train_workers(raw: dict, world: int) -> list[dict]:
    """``raw`` trained by ``world`` gloo processes; what each rank ended with."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result")
        mp.spawn(_worker, args=(world, os.path.join(tmp, "init"), raw, out), nprocs=world, join=True)
        return [torch.load(f"{out}.{rank}") for rank in range(world)]


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.parametrize("coupling", ["independent", "vc"])
def test_accumulation_gives_the_full_batch_update(coupling):
    """1 worker x 64 against 1 worker x 2 micro-batches of 32 (and 4 of 16): dropout on, gradient
    clipping on (it sees the whole step's gradient), per-sample coupling (vc: the encoder trains too,
    its x1 is per-sample noise)."""
    plain, plain_losses = train(raw_config(coupling))
    for k in (2, 4):
        accumulated, losses = train(raw_config(coupling, accumulate=k))
        assert max_diff(plain, accumulated) < ATOL
        assert losses == pytest.approx(plain_losses, abs=1e-5)


@pytest.mark.slow  # two process groups of two spawned processes: ~1 min on 2 loaded cores
@pytest.mark.parametrize("coupling", ["independent", "vc"])
def test_two_workers_give_the_single_worker_parameters(coupling):
    """1 worker x 64 against 2 workers x 32 and 2 workers x 2 micro-batches of 16 (gloo)."""
    plain, plain_losses = train(raw_config(coupling))
    for raw in (raw_config(coupling, distributed={"workers": 2}),
                raw_config(coupling, distributed={"workers": 2}, accumulate=2)):
        ranks = train_workers(raw, 2)
        assert max_diff(ranks[0]["state"], ranks[1]["state"]) == 0.0  # the ranks never drift apart
        assert max_diff(plain, ranks[0]["state"]) < ATOL
        assert ranks[0]["losses"] == pytest.approx(plain_losses, abs=1e-5)  # the global batch's loss


def test_the_tolerance_separates_a_wrong_split():
    """The control: what a wrong slicing or averaging would compute (each worker's half alone, or the
    same half on both) is a batch of 32 instead of 64, and lands far outside ATOL."""
    plain, _ = train(raw_config())
    half, _ = train(raw_config(batch=32))
    assert max_diff(plain, half) > 100 * ATOL


def test_the_batch_must_split_into_equal_slices():
    with pytest.raises(ConfigError, match="train.batch_size .*multiple of train.distributed.workers"):
        cfg = build_config(raw_config(batch=66, accumulate=4))
        Trainer(cfg, load_dataset(cfg.data, cfg.train.seed), device=CPU)


def test_several_workers_need_a_process_group():
    cfg = build_config(raw_config(distributed={"workers": 2}))
    with pytest.raises(RuntimeError, match="workers=2 needs a torch.distributed process group"):
        Trainer(cfg, load_dataset(cfg.data, cfg.train.seed), device=CPU)
