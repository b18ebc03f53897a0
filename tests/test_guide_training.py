"""Every Guide / SCT choice trains through the Trainer; the Guide's ladder configs; the full recipe learns."""
import math
from pathlib import Path

import pytest
import torch

from ablate.data import load_dataset
from ablate.metrics import w2_distance
from ablate.train.config import build_config, flatten, load_config
from ablate.train.discretization.guide import STEP_SIZES
from ablate.train.trainer import Trainer

LADDER = Path(__file__).resolve().parents[1] / "configs" / "guide"
BASE = {"data": {"name": "gmm2", "n_train": 512, "n_holdout": 256}, "kernel": {"name": "fm"},
        "model": {"name": "mlp", "hidden": 32, "depth": 2, "time_dim": 16},
        "discretization": {"name": "guide"}, "weighting": {"name": "uniform"},
        "train": {"iterations": 3, "batch_size": 32, "lr": 1e-3},
        "eval": {"mid_times": [0.6]}}

CHOICES = [{"discretization.h": h} for h in STEP_SIZES.names()] + [
    {"discretization.normalize": True, "discretization.h": "edm"},
    {"discretization.curriculum_every": 1},
    {"discretization.name": "ect"},
    {"precond.name": "identity"}, {"precond.name": "linear"}, {"precond.name": "exponential"},
    {"weighting.name": "gamma"}, {"weighting.name": "inv_dt_smooth"},
    {"time_sampling.name": "sine"}, {"time_sampling.name": "cosh"},
    {"upper_limit.name": "vu", "eval.sampler": "pushforward"},
    {"upper_limit.name": "vu", "discretization.name": "ect", "time_sampling.name": "lognormal"},
    {"upper_limit.name": "phased", "eval.sampler": "pushforward", "eval.eta": 0.9},
    {"distance.name": "particle_l2"},
    {"distance.name": "particle_l2", "target.name": "ema", "upper_limit.name": "vu"},
    {"distance.name": "time_aware_mmd"},
    {"distance.name": "time_aware_mmd", "distance.share_time": True, "upper_limit.name": "vu"},
]


@pytest.mark.parametrize("overrides", CHOICES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_choice_trains_and_samples(overrides):
    torch.set_num_threads(1)
    cfg = build_config(BASE, overrides)
    data = load_dataset(cfg.data, seed=0)
    trainer = Trainer(cfg, data)
    before = [p.detach().clone() for p in trainer.online.parameters()]
    row = trainer.run()
    assert row["status"] == "completed" and math.isfinite(row["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.online.parameters()))
    for steps in (1, 2):
        x = trainer.sample(steps, 64, seed=3)
        assert x.shape == (64, 2) and torch.isfinite(x).all()
        assert torch.equal(x, trainer.sample(steps, 64, seed=3))


def test_edge_skipping_changes_pushforward_path():
    cfg = build_config(BASE, {"upper_limit.name": "vu", "eval.sampler": "pushforward"})
    trainer = Trainer(cfg, load_dataset(cfg.data, seed=0))
    plain = trainer.sample(2, 32, seed=1)
    trainer.cfg.eval.eta = 0.5
    assert not torch.allclose(plain, trainer.sample(2, 32, seed=1))
    assert torch.equal(trainer.sample(1, 32, seed=1), trainer.sample(1, 32, seed=1))


def test_ladder_rows_differ_only_in_their_changes():
    rows = {p.stem: flatten(load_config(p)) for p in sorted(LADDER.glob("*.yaml"))}
    assert sorted(rows) == list("ABCDEFGHIJKL")

    def changed(a, b):
        return {k.split(".")[0] for k in set(rows[a]) | set(rows[b]) if rows[a].get(k) != rows[b].get(k)}

    steps = ["discretization", "precond", "weighting", "time_sampling", "distance"]
    for table in ("ABCDEF", "GHIJKL"):
        for (a, b), section in zip(zip(table, table[1:]), steps):
            assert changed(a, b) == {section}, (a, b)
    assert changed("A", "G") == {"upper_limit", "eval"}
    final = rows["L"]
    assert (final["discretization.h"], final["precond.name"], final["weighting.name"],
            final["time_sampling.name"], final["upper_limit.name"], final["distance.name"]) == \
        ("exponential", "exponential", "gamma", "sine", "vu", "time_aware_mmd")


@pytest.mark.slow
def test_guide_full_recipe_learns_gmm2():
    torch.set_num_threads(1)
    cfg = build_config({"data": {"name": "gmm2"}, "kernel": {"name": "fm"},
                        "discretization": {"name": "guide", "h": "exponential"},
                        "precond": {"name": "exponential"}, "weighting": {"name": "gamma"},
                        "time_sampling": {"name": "sine"}, "upper_limit": {"name": "vu"},
                        "distance": {"name": "particle_l2"},
                        "train": {"iterations": 600, "batch_size": 256, "lr": 1e-3, "ema": [0.99]},
                        "eval": {"mid_times": [0.6], "sampler": "pushforward"}})
    data = load_dataset(cfg.data, seed=0)
    trainer = Trainer(cfg, data)
    reference = data.x_holdout[:1000]
    untrained = w2_distance(trainer.sample(1, 1000, 32), reference)
    trainer.run()
    trained = w2_distance(trainer.sample(1, 1000, 32), reference)
    assert trained < 0.6 * untrained, (untrained, trained)
