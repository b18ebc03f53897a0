"""Learned and model-based couplings: VC (VCT Alg. 1), GC (GC Alg. 1), VR (SCT eq. 14)."""
from __future__ import annotations

import math

import pytest
import torch

from ablate.data import load_dataset
from ablate.train.config import build_config
from ablate.train.couplings import CouplingContext, build_coupling
from ablate.train.couplings.vc import gaussian_kl_to_standard
from ablate.train.couplings.vr import posterior_weights
from ablate.train.trainer import Trainer

torch.set_num_threads(1)


def make_trainer(coupling: dict, dataset: str = "gmm2", steps: int = 20, **sections) -> Trainer:
    raw = {"data": {"name": dataset, "n_train": 1024, "n_holdout": 64},
           "model": {"hidden": 32, "depth": 2},
           "coupling": coupling,
           "discretization": {"s0": 10, "s1": 80},
           "train": {"iterations": steps, "batch_size": 64, "device": "cpu", "ema": [0.9], "lr": 1e-3},
           "log": {"report_every": steps}, "eval": {"every": 10 ** 6}}
    for key, value in sections.items():
        raw[key] = value if "name" in value else {**raw.get(key, {}), **value}
    cfg = build_config(raw)
    return Trainer(cfg, load_dataset(cfg.data, cfg.train.seed))


def context(trainer: Trainer, n: int, step: int = 0) -> CouplingContext:
    t, r = trainer.discretization.sample_pair(n, step, trainer.time_sampler, trainer.device)
    return CouplingContext(step, t, r, trainer.online, trainer.ema, trainer.discretization,
                           trainer.weighting)


# ------------------------------------------------------------------------------------------------ VC
def test_kl_closed_form_matches_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 4, generator=gen)
    log_scale = 0.5 * torch.randn(3, 4, generator=gen)
    scale = log_scale.exp()
    x = mean[None] + scale[None] * torch.randn(100_000, 3, 4, generator=gen)
    log_q = (-0.5 * ((x - mean) / scale) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_p = (-0.5 * x ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    monte_carlo = (log_q - log_p).mean(0)
    torch.testing.assert_close(gaussian_kl_to_standard(mean, log_scale), monte_carlo, atol=0.03, rtol=0.01)
    assert torch.all(gaussian_kl_to_standard(torch.zeros(2, 5), torch.zeros(2, 5)) == 0)


@pytest.mark.parametrize("disc", [{"name": "ict", "s0": 10, "s1": 80}, {"name": "ect"}])
def test_adaptive_beta_follows_last_gap_through_the_curriculum(disc):
    trainer = make_trainer({"name": "vc", "beta": 2.0}, steps=400, discretization=disc)
    coupling, d = trainer.coupling, trainer.discretization
    weights = []
    for step in (0, 150, 399):
        expected = 2.0 / d.last_gap(step)
        got = coupling.kl_weight(context(trainer, 4, step))
        assert got == pytest.approx(expected)
        weights.append(got)
    assert weights[0] < weights[1] < weights[2]  # dt_N shrinks as the curriculum refines


def test_fixed_beta_without_inverse_dt_weighting():
    trainer = make_trainer({"name": "vc", "beta": 2.0}, steps=400, weighting={"name": "edm"})
    assert trainer.coupling.kl_weight(context(trainer, 4, 399)) == 2.0


def test_vc_encoder_gets_gradients_and_is_trained():
    trainer = make_trainer({"name": "vc", "beta": 0.001}, steps=5)
    before = [p.detach().clone() for p in trainer.coupling.encoder.parameters()]
    ema_before = [p.detach().clone() for p in trainer.coupling.encoder_ema.parameters()]
    loss, logs = trainer.loss_terms()
    loss.backward()
    grads = [p.grad for p in trainer.coupling.encoder.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert {"kl", "enc_mean_abs", "enc_scale", "kl_weight"} <= set(logs)
    trainer.run()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.coupling.encoder.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, trainer.coupling.encoder_ema.parameters()))
    assert trainer.coupling.grad_clip == 200.0


@pytest.mark.slow
def test_vc_with_large_beta_reduces_to_standard_normal_noise():
    """VCT Sec. 6.1: as the KL constraint tightens, q(x1 | x0) -> N(0, I) and VC reduces to CT."""
    trainer = make_trainer({"name": "vc", "beta": 100.0, "adaptive": False}, steps=300,
                           weighting={"name": "uniform"})
    x0 = trainer.data.x_train[:512]
    mean, log_scale = trainer.coupling.encoder(x0)
    kl_before = gaussian_kl_to_standard(mean, log_scale).mean().item()
    trainer.run()
    mean, log_scale = trainer.coupling.encoder(x0)
    kl_after = gaussian_kl_to_standard(mean, log_scale).mean().item()
    assert kl_after < 0.05 * kl_before
    assert mean.abs().mean() < 0.05 and (log_scale.exp() - 1).abs().mean() < 0.05


def test_vc_sampling_renoises_with_the_ema_encoder():
    trainer = make_trainer({"name": "vc"}, steps=1)
    with torch.no_grad():
        for p in trainer.coupling.encoder_ema.parameters():
            p.zero_()
    noise = torch.randn(8, 2)
    # a zeroed encoder gives mean 0, scale 1: the noise passes through unchanged
    torch.testing.assert_close(trainer.coupling.sampling_noise(torch.randn(8, 2), noise), noise)
    assert torch.isfinite(trainer.sample(2, 16, seed=3)).all()


def _constant_point_encoder(coupling, mean: float, scale_param: float) -> None:
    """Make the point encoder's output constant: last layer's weights 0, bias (mean, scale parameter)."""
    for encoder in (coupling.encoder, coupling.encoder_ema):
        last = encoder.net[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor([mean, mean, scale_param, scale_param]))


def test_vc_softplus_scale_and_kl_by_hand():
    """sony/vct: g_sigma = softplus(0) = ln 2 = 0.693147 and the KL of N(0.3, (ln 2 + 1e-8)^2) per
    dimension 0.5 (0.09 + (ln 2)^2 - 1 - 2 ln ln 2) = 0.151739; exp (default): g_sigma = e^0 = 1, KL 0.045."""
    softplus_kl = 0.5 * (0.09 + math.log(2) ** 2 - 1 - 2 * math.log(math.log(2)))
    assert softplus_kl == pytest.approx(0.151739, abs=1e-6)
    x0, eps = torch.randn(4, 2), torch.randn(4, 2)
    for activation, scale, kl in [("softplus", math.log(2), 2 * softplus_kl), ("exp", 1.0, 2 * 0.045)]:
        trainer = make_trainer({"name": "vc", "scale_activation": activation, "adaptive": False, "beta": 1.0},
                               steps=1)
        _constant_point_encoder(trainer.coupling, 0.3, 0.0)
        pair = trainer.coupling.pair(x0, eps, context(trainer, 4))
        torch.testing.assert_close(pair.x1, 0.3 + scale * eps)
        assert pair.logs["kl"].item() == pytest.approx(kl, rel=1e-5)
        assert pair.loss.item() == pytest.approx(kl, rel=1e-5)
        torch.testing.assert_close(trainer.coupling.sampling_noise(x0, eps), 0.3 + scale * eps)


def test_vc_encoder_input_over_sigma_data():
    """sony/vct's encoder sees x0 / sigma_data (sigma_data = 0.5 here: 2 x0)."""
    trainer = make_trainer({"name": "vc", "encoder_input": "x0_over_sigma_data"}, steps=1)
    x0 = torch.randn(8, 2)
    mean, scale, _ = trainer.coupling.encode(x0)
    ref_mean, ref_param = trainer.coupling.encoder(2.0 * x0)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(scale, ref_param.exp())
    default = make_trainer({"name": "vc"}, steps=1).coupling
    torch.testing.assert_close(default.encode(x0)[0], default.encoder(x0)[0])


def test_vc_image_encoder_outputs_the_data_shape():
    cfg = build_config({"coupling": {"name": "vc"}})
    coupling = build_coupling(cfg.coupling, None, (1, 8, 8), 100)
    mean, log_scale = coupling.encoder(torch.randn(3, 1, 8, 8))
    assert mean.shape == log_scale.shape == (3, 1, 8, 8)


# ------------------------------------------------------------------------------------------------ GC
def test_gc_with_mu_zero_is_bit_identical_to_independent():
    a = make_trainer({"name": "independent"}, steps=15)
    a.run()  # trainers share the global RNG: build each one after the previous has finished
    b = make_trainer({"name": "gc", "mu": 0.0}, steps=15)
    b.run()
    for p, q in zip(a.online.parameters(), b.online.parameters()):
        assert torch.equal(p, q)


def test_gc_with_mu_one_induces_every_pair_from_the_ema_model():
    trainer = make_trainer({"name": "gc", "mu": 1.0}, steps=1)
    x0, x1 = trainer.data.x_train[:32], torch.randn(32, 2)
    ctx = context(trainer, 32)
    pair = trainer.coupling.pair(x0, x1, ctx)
    expected = trainer.ema(trainer.kernel.interpolate(x0, x1, ctx.r), ctx.r)
    torch.testing.assert_close(pair.x0, expected)
    assert torch.equal(pair.x1, x1) and pair.logs["gc_fraction"].item() == 1.0


def test_gc_realised_fraction_matches_mu_and_schedule():
    trainer = make_trainer({"name": "gc", "mu": 0.3}, steps=1)
    n = 4096
    x0 = trainer.data.x_train[:1024].repeat(4, 1)
    pair = trainer.coupling.pair(x0, torch.randn(n, 2), context(trainer, n))
    fraction = pair.logs["gc_fraction"].item()
    assert abs(fraction - 0.3) < 0.03
    changed = (pair.x0 != x0).any(dim=1).float().mean().item()
    assert changed == pytest.approx(fraction)
    scheduled = make_trainer({"name": "gc", "mu": 0.0, "mu_end": 0.8}, steps=100).coupling
    assert [scheduled.mu_at(k) for k in (0, 50, 100)] == pytest.approx([0.0, 0.4, 0.8])


def test_gc_released_code_induces_one_minus_mu():
    """train_consistency.py: ``rand > mu`` marks the induced pairs, so mu = 0.3 induces ~70%, mu = 1
    none (bit-identical to independent pairs), mu = 0 all."""
    n = 4096
    trainer = make_trainer({"name": "gc", "mu": 0.3, "induced_fraction": "one_minus_mu"}, steps=1)
    x0 = trainer.data.x_train[:1024].repeat(4, 1)
    pair = trainer.coupling.pair(x0, torch.randn(n, 2), context(trainer, n))
    fraction = pair.logs["gc_fraction"].item()
    assert abs(fraction - 0.7) < 0.03
    assert (pair.x0 != x0).any(dim=1).float().mean().item() == pytest.approx(fraction)
    all_induced = make_trainer({"name": "gc", "mu": 0.0, "induced_fraction": "one_minus_mu"}, steps=1)
    assert all_induced.coupling.pair(x0, torch.randn(n, 2), context(all_induced, n)).logs["gc_fraction"].item() == 1.0
    scheduled = make_trainer({"name": "gc", "mu": 0.0, "mu_end": 0.8, "induced_fraction": "one_minus_mu"},
                             steps=100).coupling
    assert [scheduled.induced_probability(k) for k in (0, 50, 100)] == pytest.approx([1.0, 0.6, 0.2])
    a = make_trainer({"name": "independent"}, steps=15)
    a.run()
    b = make_trainer({"name": "gc", "mu": 1.0, "induced_fraction": "one_minus_mu"}, steps=15)
    b.run()
    for p, q in zip(a.online.parameters(), b.online.parameters()):
        assert torch.equal(p, q)


def test_gc_with_bridge_kernel_and_online_generator_trains():
    trainer = make_trainer({"name": "gc", "mu": 0.5, "generator": "online"}, dataset="gc_2m2m", steps=30,
                           kernel={"name": "bridge"})
    row = trainer.run()
    assert row["status"] == "completed" and math.isfinite(row["loss"])
    assert 0.3 < row["gc_fraction"] < 0.7


# ------------------------------------------------------------------------------------------------ VR
def test_vr_weights_sum_to_one_and_respect_masks():
    x_t, refs = torch.randn(6, 3), torch.randn(10, 3)
    a, b = torch.full((6,), 0.7), torch.full((6,), 0.5)
    w = posterior_weights(x_t, a, b, refs)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(6))
    labels, ref_labels = torch.tensor([0, 1, 0, 1, 0, 1]), torch.arange(10) % 2
    valid = torch.arange(10) < 7
    w = posterior_weights(x_t, a, b, refs, labels[:, None] == ref_labels[None], valid)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(6))
    assert torch.all(w[labels[:, None] != ref_labels[None]] == 0) and torch.all(w[:, 7:] == 0)
    # proportional to the Gaussian kernel density N(x_t; a x0_j, b^2 I)
    dens = torch.exp(-((x_t[:, None] - 0.7 * refs[None]) ** 2).sum(-1) / (2 * 0.25))
    torch.testing.assert_close(posterior_weights(x_t, a, b, refs), dens / dens.sum(1, keepdim=True))


def test_vr_target_has_lower_variance_than_the_one_sample_target():
    """At a fixed x_t between the two modes of gmm2, over many draws of x0 ~ p(x0 | x_t) and of the
    reference batch, the averaged target x_r varies far less than the one-sample target."""
    gen = torch.Generator().manual_seed(0)
    data = load_dataset(build_config({}).data, 0).x_train
    a_t, b_t, a_r, b_r = 1.0, 0.5, 1.0, 0.45  # VE kernel at t = 0.5, r = 0.45
    x_t = torch.tensor([[0.0, 0.1]])
    log_post = -((x_t - a_t * data) ** 2).sum(1) / (2 * b_t ** 2)
    one_sample, averaged = [], []
    for _ in range(400):
        i = torch.multinomial(log_post.softmax(0), 1, generator=gen)
        batch = torch.cat([data[i], data[torch.randint(len(data), (63,), generator=gen)]])
        own = batch[:1]
        one_sample.append(a_r * own + b_r * (x_t - a_t * own) / b_t)
        w = posterior_weights(x_t, torch.tensor([a_t]), torch.tensor([b_t]), batch)
        x0_bar = w @ batch
        averaged.append(a_r * x0_bar + b_r * (x_t - a_t * x0_bar) / b_t)
    var_one = torch.cat(one_sample).var(0).sum()
    var_avg = torch.cat(averaged).var(0).sum()
    assert var_avg < 0.2 * var_one


def test_vr_buffer_fills_and_class_conditional_training_runs():
    trainer = make_trainer({"name": "vr", "buffer": 100}, steps=3, data={"class_conditional": True})
    row = trainer.run()
    assert math.isfinite(row["loss"]) and row["vr_ess"] >= 1.0
    coupling = trainer.coupling
    assert coupling.ref_batches.item() == 3
    assert (coupling.ref_x.abs().sum(1) > 0).sum() == 100  # 3 x 64 points wrapped into 100 slots


# ----------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("coupling", [{"name": "vc", "beta": 0.01}, {"name": "gc", "mu": 0.5},
                                      {"name": "vr", "buffer": 96}, {"name": "ot"}])
def test_checkpoint_resume_is_exact(coupling, tmp_path):
    total, split = 12, 5
    straight = make_trainer(coupling, steps=total, log={"report_every": 1, "diag_every": 3})
    straight.run()
    first = make_trainer(coupling, steps=total, log={"report_every": 1, "diag_every": 3})
    while first.step < split:
        first.train_step()
    first.save(str(tmp_path / "ckpt.pt"))
    resumed = make_trainer(coupling, steps=total, log={"report_every": 1, "diag_every": 3})
    resumed.load(str(tmp_path / "ckpt.pt"))
    resumed.run()
    for a, b in [(straight.online, resumed.online), (straight.ema, resumed.ema),
                 (straight.coupling, resumed.coupling)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
