"""The shared trainer: learning on toy data, exact resume, shared dropout masks, batch order."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablate.data import load_dataset
from ablate.evaluation import Evaluator
from ablate.train.batches import BatchOrder
from ablate.train.config import Config, build_config, load_config
from ablate.train.discretization import Discretization
from ablate.train.trainer import Trainer

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CPU = torch.device("cpu")


def small_raw(**sections) -> dict:
    raw = {"data": {"name": "gmm2", "n_train": 1024, "n_holdout": 256},
           "model": {"hidden": 32, "depth": 2, "time_dim": 16},
           "kernel": {"name": "li", "sigma_min": 0.002, "sigma_max": 0.1, "sigma_data": 0.5},
           "discretization": {"s0": 10, "s1": 80},
           "train": {"iterations": 12, "batch_size": 64, "device": "cpu", "ema": [0.9, 0.5], "lr": 1e-3},
           "eval": {"every": 10 ** 6, "mid_times": [0.07]}, "log": {"report_every": 4}}
    for key, value in sections.items():
        raw[key] = value if "name" in value else {**raw.get(key, {}), **value}
    return raw


def make_trainer(cfg: Config, evaluator: bool = False) -> Trainer:
    data = load_dataset(cfg.data, cfg.train.seed)
    return Trainer(cfg, data, Evaluator(cfg.eval, data, None, CPU) if evaluator else None, CPU)


# ------------------------------------------------------------------------------------------ learning
def train_w2(config: str, iterations: int, **overrides) -> tuple[float, float]:
    """1-step W2 to held-out data at step 0 (untrained) and after ``iterations`` steps."""
    cfg = load_config(CONFIGS / config, {
        "model.hidden": 128, "model.depth": 3, "train.iterations": iterations, "train.device": "cpu",
        "eval.every": iterations, "eval.steps": [1], "eval.samples": 1000, "eval.grid": False,
        "log.report_every": iterations, **overrides})
    rows: list[dict] = []
    make_trainer(cfg, evaluator=True).run(lambda row, _: rows.append(row))
    assert [r["step"] for r in rows] == [0, iterations]
    assert rows[-1]["status"] == "completed"
    return rows[0]["w2_1step"], rows[-1]["w2_1step"]


@pytest.mark.slow
@pytest.mark.parametrize("config, iterations, overrides", [
    ("toy_li.yaml", 1200, {}),  # iCT-LI, VCT App. E (shorter)
    ("toy_ve.yaml", 1500, {}),  # VE with ECT's r(t)
    ("toy_fm.yaml", 1500, {}),  # FM, velocity parametrisation
])
def test_short_training_beats_untrained_model_on_w2(config, iterations, overrides):
    untrained, trained = train_w2(config, iterations, **overrides)
    assert trained < 0.7 * untrained, (untrained, trained)


# ------------------------------------------------------------------------------------- exact resume
def assert_same_state(a: Trainer, b: Trainer) -> None:
    for mod_a, mod_b in [(a.online, b.online), *zip(a.emas, b.emas), (a.target, b.target)]:
        for (name, pa), (_, pb) in zip(mod_a.state_dict().items(), mod_b.state_dict().items()):
            assert torch.equal(pa, pb), name
    opt_a, opt_b = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert opt_a["param_groups"] == opt_b["param_groups"]
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for key, state in opt_a["state"].items():
        for name, value in state.items():
            other = opt_b["state"][key][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other, (key, name)
    assert a.step == b.step


@pytest.mark.parametrize("sections", [
    {"model": {"dropout": 0.3}, "coupling": {"name": "ot"}},  # shared-mask RNG path + OT
    {"model": {"dropout": 0.2}, "target": {"name": "ema", "rate": 0.9},
     "train": {"optimizer": "lion", "lr_schedule": "inv_sqrt", "lr_ref_steps": 3, "grad_clip": 1.0}},
    {"kernel": {"name": "ve", "sigma_max": 80.0}, "discretization": {"name": "ect"},
     "train": {"optimizer": "adam", "iterations": 12}},
    {"kernel": {"name": "ve", "sigma_max": 80.0, "train_scalings": "unshifted"},
     "discretization": {"name": "ect", "stage_exponent": "floor_plus_one", "r_floor": "zero"},
     "distance": {"per_element": True}},
], ids=["dropout-ot", "ema-target-lion", "ve-ect-adam", "ect-code-readings"])
def test_resume_is_exact(sections, tmp_path):
    cfg = build_config(small_raw(**sections))
    straight = make_trainer(cfg)
    straight.run()
    straight_rng = torch.get_rng_state()

    first = make_trainer(cfg)
    while first.step < 5:
        first.train_step()
    first.save(str(tmp_path / "ckpt.pt"))
    torch.manual_seed(12345)  # a fresh process would start from another RNG state
    resumed = make_trainer(cfg)
    resumed.load(str(tmp_path / "ckpt.pt"))
    assert resumed.step == 5
    resumed.run()
    assert_same_state(straight, resumed)
    assert torch.equal(straight_rng, torch.get_rng_state())


def test_ect_code_readings_train_against_the_clean_data_at_r_zero():
    """ECT's code: r = 0 where 1 - n(t)/q^a < 0, the target there is x0 itself, and the loss is finite."""
    cfg = build_config(small_raw(kernel={"name": "ve", "sigma_max": 80.0},
                                 discretization={"name": "ect", "stage_exponent": "floor_plus_one",
                                                 "r_floor": "zero"}))
    trainer = make_trainer(cfg)
    t, r, _ = trainer.upper_limit.draw(256, 0, trainer.discretization, trainer.time_sampler, CPU)
    zero = r == 0
    assert zero.any() and (~zero).any() and torch.all(r[~zero] > 0) and torch.all(r < t)
    x0, x1 = trainer.data.x_train[:256], torch.randn(256, 2)
    with torch.no_grad():
        target = trainer.target(trainer.kernel.interpolate(x0, x1, r), r)
    assert torch.equal(target[zero], x0[zero]) and torch.isfinite(target).all()
    loss, _ = trainer.loss_terms()
    assert torch.isfinite(loss)


def test_resume_from_different_trainer_does_not_match_straight_run(tmp_path):
    """Control for the test above: the states it compares do differ when the checkpoint is not used."""
    cfg = build_config(small_raw(model={"dropout": 0.3}))
    straight = make_trainer(cfg)
    straight.run()
    other = make_trainer(cfg)
    while other.step < 5:
        other.train_step()
    torch.manual_seed(12345)
    other.run()
    with pytest.raises(AssertionError):
        assert_same_state(straight, other)


# ------------------------------------------------------------------------------ shared dropout mask
class SameTimes(Discretization):
    """(t, r) with r = t, so that x_t == x_r: the online and target calls see identical inputs."""

    def sample_pair(self, n, step, sampler, device, lower=None):
        t = sampler.sample(n, self.kernel.t_min, self.kernel.t_max, device)
        return t, t.clone()

    def stage(self, step: int) -> int:
        return 0


def test_dropout_mask_is_shared_between_online_and_target_forward():
    """With a stop-gradient target and dropout, the loss at x_t == x_r, t == r is exactly 0 only when
    the target forward replays the online forward's dropout masks."""
    cfg = build_config(small_raw(model={"dropout": 0.5}, weighting={"name": "uniform"}))
    trainer = make_trainer(cfg)
    trainer.discretization = SameTimes(cfg.discretization, trainer.kernel, cfg.train.iterations)
    assert trainer.online.training
    loss, _ = trainer.loss_terms()
    assert loss.item() == 0.0
    # control: the masks matter here, two forwards with fresh masks differ
    x = torch.randn(64, 2)
    t = torch.full((64,), 0.05)
    assert not torch.equal(trainer.online(x, t), trainer.online(x, t))
    # and a training step at a nonzero loss still changes the parameters (the grad path is live)
    before = [p.detach().clone() for p in trainer.online.parameters()]
    trainer.discretization = make_trainer(cfg).discretization  # the config's iCT pairs, t > r
    trainer.train_step()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.online.parameters()))


# --------------------------------------------------------------------------------------- batch order
def test_batch_order_is_a_pure_function_of_the_step():
    order = BatchOrder(100, 16, seed=7, device=CPU)
    forward = [order.indices(k).tolist() for k in range(20)]
    fresh = BatchOrder(100, 16, seed=7, device=CPU)
    backward = {k: fresh.indices(k).tolist() for k in reversed(range(20))}
    assert forward == [backward[k] for k in range(20)]
    per_epoch = 100 // 16  # 6 batches; the 4-sample tail is dropped
    for epoch in range(3):
        seen = sum(forward[epoch * per_epoch:(epoch + 1) * per_epoch], [])
        assert len(seen) == len(set(seen)) == 96
    assert forward[:per_epoch] != forward[per_epoch:2 * per_epoch]
    assert BatchOrder(100, 16, seed=8, device=CPU).indices(0).tolist() != forward[0]


def test_trainer_batches_follow_the_step_not_the_history():
    cfg = build_config(small_raw())
    a, b = make_trainer(cfg), make_trainer(cfg)
    for _ in range(3):
        a.train_step()
    b.step = 3
    assert torch.equal(a._batch()[0], b._batch()[0])


class _Payload:
    """Stands for anything a checkpoint should not carry: unpickling it would construct (or run) code."""

    def __reduce__(self):
        return (print, ("a checkpoint ran code while loading",))


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path, capsys):
    from ablate.train.trainer import CheckpointError

    cfg = build_config(small_raw())
    trainer = make_trainer(cfg)
    trainer.train_step()
    trainer.save(str(tmp_path / "ok.pt"))
    make_trainer(cfg).load(str(tmp_path / "ok.pt"))  # what ablate writes loads as data
    state = trainer.state_dict()
    state["coupling"] = {"extra": _Payload()}
    torch.save(state, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match=r"tampered\.pt: refused to load.*names print"):
        make_trainer(cfg).load(str(tmp_path / "tampered.pt"))
    assert "ran code" not in capsys.readouterr().out
