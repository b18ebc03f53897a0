"""Gradient-variance diagnostics (design.md Sec. 6) and transport cost (GC Sec. 4.2 (ii))."""
from __future__ import annotations

import math

import numpy as np
import torch

from ablate.train.couplings.base import transport_cost
from ablate.train.couplings.ot import ot_permutation
from ablate.train.diagnostics import gradient_statistics
from ablate.train.objectives.pseudo_huber import pseudo_huber
from test_couplings import make_trainer

torch.set_num_threads(1)


def brute_force_statistics(trainer, parts: int) -> dict[str, float]:
    """Per-microbatch losses rebuilt by hand (independent coupling, no dropout), gradients by
    ``backward`` one at a time, per-parameter variances with numpy."""
    idx = trainer.batches.indices(trainer.step)
    size = len(idx) // parts
    grads = []
    with torch.random.fork_rng():
        for k in range(parts):
            x0 = trainer.data.x_train[idx[k * size:(k + 1) * size]]
            x1 = torch.randn(size, 2)
            t, r = trainer.discretization.sample_pair(size, trainer.step, trainer.time_sampler, trainer.device)
            f_t = trainer.online(x0 + t[:, None] * x1, t)
            with torch.no_grad():
                f_r = trainer.online(x0 + r[:, None] * x1, r)
            trainer.online.zero_grad()
            (trainer.weighting(t, r) * pseudo_huber(trainer.cfg.distance, f_t, f_r)).mean().backward()
            grads.append(np.concatenate([p.grad.numpy().ravel() for p in trainer.online.parameters()]))
            trainer.online.zero_grad(set_to_none=True)
    g = np.stack(grads).astype(np.float64)
    mean = g.mean(0)
    return {"grad_var": float(np.mean([np.var(g[:, j], ddof=1) for j in range(g.shape[1])]) / parts),
            "grad_norm": float(np.sqrt((mean ** 2).sum())), "grad_var_pooled": float(np.var(mean, ddof=1))}


def test_grad_var_equals_brute_force_microbatch_computation():
    trainer = make_trainer({"name": "independent"}, steps=10, log={"diag_microbatches": 4})
    for _ in range(3):
        trainer.train_step()
    expected = brute_force_statistics(trainer, 4)
    got = trainer.diagnostics()
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-4), key
    assert got["diag_s"] > 0
    assert all(p.grad is None for p in trainer.online.parameters())


def test_gradient_statistics_by_hand():
    grads = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # K = 2 microbatches, P = 2 parameters
    stats = gradient_statistics(grads)
    assert stats["grad_var"].item() == 1.0  # per-parameter var 2 and 2, mean 2, / K
    assert math.isclose(stats["grad_norm"].item(), math.sqrt(4 + 1), rel_tol=1e-6)
    assert stats["grad_var_pooled"].item() == 0.5  # var of the mean gradient (2, 1)


def test_diagnostics_change_no_training_result_and_appear_at_their_cadence():
    rows_off, rows_on = [], []
    off = make_trainer({"name": "gc", "mu": 0.5}, steps=12, log={"report_every": 2})
    off.run(lambda row, _: rows_off.append(row))
    on = make_trainer({"name": "gc", "mu": 0.5}, steps=12, log={"report_every": 2, "diag_every": 4})
    on.run(lambda row, _: rows_on.append(row))
    for p, q in zip(off.online.parameters(), on.online.parameters()):
        assert torch.equal(p, q)
    assert all(p.grad is not None for p in on.online.parameters())  # the last training step's only
    measured = [row["step"] for row in rows_on if row["grad_var"] is not None]  # null between them
    assert measured == [0, 4, 8, 12]
    assert "grad_var" not in rows_off[-1]
    assert all(row["grad_var"] > 0 and row["grad_norm"] > 0 and row["diag_s"] > 0
               for row in rows_on if row["step"] in measured)


def test_ot_transport_cost_never_above_independent_on_the_same_batch():
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        x0, x1 = torch.randn(64, 2, generator=gen) + 2.0, torch.randn(64, 2, generator=gen)
        assert transport_cost(x0, x1[ot_permutation(x0, x1)]) <= transport_cost(x0, x1) + 1e-6


def test_trainer_logs_a_lower_transport_cost_for_ot_than_independent():
    ind = make_trainer({"name": "independent"}, steps=4)
    row_ind = ind.run()
    ot = make_trainer({"name": "ot"}, steps=4)
    row_ot = ot.run()
    assert row_ot["transport_cost"] < row_ind["transport_cost"]
