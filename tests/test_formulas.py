"""Each trainer formula against values derived by hand from the papers (VCT = /work/shared/papers/000_*)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats

from ablate.train import config as C
from ablate.train.couplings.base import transport_cost
from ablate.train.couplings.ot import ot_permutation
from ablate.train.discretization.ect import ECTDiscretization, ECTOptions
from ablate.train.discretization.ict import ICTDiscretization, ICTOptions, ict_num_points, karras_grid
from ablate.train.kernels import KERNELS, KernelConfig, build_kernel
from ablate.train.networks.mlp import MLPConfig
from ablate.train.objectives.pseudo_huber import PseudoHuberDistance, default_pseudo_huber_c, pseudo_huber
from ablate.train.networks import build_network
from ablate.train.precond import time_input
from ablate.train.precond.kernel import KernelTimeInput
from ablate.train.optim import Lion, inv_sqrt_factor, lr_factor
from ablate.train.time_sampling.lognormal import LognormalSampler, LognormalSampling
from ablate.train.weighting import build_weighting
from ablate.train.weighting.edm import EDMWeighting
from ablate.train.weighting.inv_dt import InvDtWeighting

torch.set_num_threads(1)
f64 = dict(dtype=torch.float64)


def kernel(name: str, **kw):
    return build_kernel(KernelConfig(name=name, **kw))


# -------------------------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("name", KERNELS.names())
def test_boundary_condition_at_sigma_min(name):
    """f(x, t_min) = x: c_skip(t_min) = 1 and c_out(t_min) = 0 for every registered kernel."""
    k = kernel(name)
    t_min = torch.tensor([k.t_min], **f64)
    assert k.c_skip(t_min).item() == pytest.approx(1.0, abs=1e-12)
    assert k.c_out(t_min).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("sigma", [0.002, 0.05, 1.0, 20.0, 79.0, 80.0])
def test_li_scalings_match_vct_eqs_12_to_14(sigma):
    s_min, s_max, sd = 0.002, 80.0, 0.5
    k = kernel("li", sigma_min=s_min, sigma_max=s_max, sigma_data=sd)
    c_in = 1.0 / math.sqrt(sd ** 2 * (1 - sigma / s_max) ** 2 + sigma ** 2)  # eq. 12
    shifted = 1 - (sigma - s_min) / (s_max - s_min)
    c_skip = sd ** 2 * shifted / ((sigma - s_min) ** 2 + sd ** 2 * shifted ** 2)  # eq. 13
    c_out = (sigma - s_min) * sd * c_in  # eq. 14
    t = torch.tensor([sigma], **f64)
    assert k.c_in(t).item() == pytest.approx(c_in, rel=1e-12)
    assert k.c_skip(t).item() == pytest.approx(c_skip, rel=1e-12, abs=1e-15)
    assert k.c_out(t).item() == pytest.approx(c_out, rel=1e-12, abs=1e-15)


def test_li_scalings_at_sigma_max_by_hand():
    """At sigma_max the LI point is pure noise: c_skip = 0, c_in = 1/sigma_max, c_out = (80 - 0.002) 0.5 / 80."""
    k = kernel("li", sigma_min=0.002, sigma_max=80.0, sigma_data=0.5)
    t = torch.tensor([80.0], **f64)
    assert k.c_skip(t).item() == 0.0
    assert k.c_in(t).item() == pytest.approx(1 / 80)
    assert k.c_out(t).item() == pytest.approx(0.4999875)


def test_ve_scalings_by_hand():
    """CM boundary form at sigma = 0.502, sd = 0.5, t_min = 0.002: c_skip = 0.25/0.5, c_out = 0.5*0.5/sqrt(0.25+0.252004)."""
    k = kernel("ve", sigma_min=0.002, sigma_max=80.0, sigma_data=0.5)
    t = torch.tensor([0.502], **f64)
    assert k.c_skip(t).item() == pytest.approx(0.5)
    assert k.c_out(t).item() == pytest.approx(0.25 / math.sqrt(0.25 + 0.502 ** 2))
    assert k.c_in(t).item() == pytest.approx(1 / math.sqrt(0.25 + 0.502 ** 2))


def test_ve_unshifted_scalings_by_hand():
    """EDM's form (ECT's training c_skip, c_out), sigma = 0.502, sd = 0.5: c_skip = 0.25/(0.252004 + 0.25),
    c_out = 0.502 * 0.5 / sqrt(0.25 + 0.252004); c_skip(t_min) != 1 there."""
    k = kernel("ve", sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, train_scalings="unshifted")
    t = torch.tensor([0.502], **f64)
    assert k.c_skip(t, shifted=False).item() == pytest.approx(0.25 / 0.502004)
    assert k.c_out(t, shifted=False).item() == pytest.approx(0.251 / math.sqrt(0.502004))
    assert k.c_skip(t).item() == pytest.approx(0.5)  # the shifted form is unchanged
    assert k.c_out(torch.tensor([0.002], **f64), shifted=False).item() == pytest.approx(0.001 / math.sqrt(0.250004))


def test_li_unshifted_scalings_by_hand():
    """sony/vct's conditional-OT ``get_scaling_factors`` at sigma = 20 of [0.002, 80], sd = 0.5:
    a = 1 - 20/80 = 0.75, c_skip = 0.25 * 0.75 / (400 + 0.25 * 0.5625), c_out = 20 * 0.5 / sqrt(0.25 * 0.5625 + 400)."""
    k = kernel("li", sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, train_scalings="unshifted")
    t = torch.tensor([20.0], **f64)
    assert k.c_skip(t, shifted=False).item() == pytest.approx(0.1875 / 400.140625, rel=1e-12)
    assert k.c_out(t, shifted=False).item() == pytest.approx(10 / math.sqrt(400.140625), rel=1e-12)


@pytest.mark.parametrize("name", ["ve", "li"])
def test_unshifted_scalings_apply_in_training_mode_only(name):
    """ECT's ECMPrecond: EDM's c_skip, c_out while ``training``, the shifted ones in eval (sampling)."""
    from ablate.train.model import ConsistencyFunction

    k = kernel(name, sigma_max=10.0, train_scalings="unshifted")
    torch.manual_seed(0)
    f = ConsistencyFunction(build_network(MLPConfig(hidden=16, depth=2), (2,)), k, KernelTimeInput()).double()
    x, t = torch.randn(5, 2, **f64), torch.tensor([0.002, 0.01, 0.5, 2.0, 9.0], **f64)
    out = f.velocity(x, t)

    def expected(shifted):
        return k.c_skip(t, shifted=shifted)[:, None] * x + k.c_out(t, shifted=shifted)[:, None] * out

    torch.testing.assert_close(f.train()(x, t), expected(False))
    torch.testing.assert_close(f.eval()(x, t), expected(True))
    torch.testing.assert_close(f(x, t)[0], x[0])  # eval: the boundary f(x, t_min) = x holds
    default = ConsistencyFunction(f.backbone, kernel(name, sigma_max=10.0), KernelTimeInput()).train()
    torch.testing.assert_close(default(x, t), expected(True))


def test_unshifted_scalings_need_ve_or_li():
    with pytest.raises(C.ConfigError, match="kernel: .*train_scalings='unshifted'.*'ve' and 'li'"):
        C.build_config({"kernel": {"name": "fm", "train_scalings": "unshifted"}})


def test_consistency_function_is_the_identity_at_time_zero():
    """ECT's code trains r = 0 against the clean data: f(x, 0) = x, and x_0 = x0 for every kernel."""
    from ablate.train.model import ConsistencyFunction

    f = ConsistencyFunction(build_network(MLPConfig(hidden=16, depth=2), (2,)), kernel("ve"),
                            KernelTimeInput()).double()
    x = torch.randn(3, 2, **f64)
    t = torch.tensor([0.0, 0.5, 0.0], **f64)
    got = f(x, t)
    assert torch.equal(got[0], x[0]) and torch.equal(got[2], x[2])
    torch.testing.assert_close(got[1:2], f(x[1:2], t[1:2]))
    for name in KERNELS.names():
        k = kernel(name, sigma_max=0.5)
        x0, x1 = torch.randn(2, 3, **f64), torch.randn(2, 3, **f64)
        assert torch.equal(k.interpolate(x0, x1, torch.zeros(2, **f64)), x0)


@pytest.mark.parametrize("name, a, b", [
    ("ve", lambda t, k: 1.0, lambda t, k: t),
    ("li", lambda t, k: 1 - t / k.t_max, lambda t, k: t),
    ("fm", lambda t, k: 1 - t, lambda t, k: t),
    ("bridge", lambda t, k: 1 - t / k.t_max, lambda t, k: t / k.t_max),
])
def test_kernels_interpolate_with_documented_coefficients(name, a, b):
    k = kernel(name, sigma_max=0.5) if name in ("fm", "bridge") else kernel(name, sigma_max=10.0)
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(4, 3, 2, 2, generator=gen, **f64), torch.randn(4, 3, 2, 2, generator=gen, **f64)
    times = [k.t_min, 0.1, 0.3, k.t_max]
    x_t = k.interpolate(x0, x1, torch.tensor(times, **f64))
    for i, t in enumerate(times):
        torch.testing.assert_close(x_t[i], a(t, k) * x0[i] + b(t, k) * x1[i])


def test_li_reaches_sigma_max_times_noise():
    """VCT eq. 11: x_{sigma_max} = sigma_max x1 (same scale as VE)."""
    k = kernel("li", sigma_min=0.002, sigma_max=5.0)
    x0, x1 = torch.randn(3, 2, **f64), torch.randn(3, 2, **f64)
    torch.testing.assert_close(k.interpolate(x0, x1, torch.full((3,), 5.0, **f64)), 5.0 * x1)


# ------------------------------------------------------------------------------------ discretization
def test_karras_grid_endpoints_and_order():
    grid = karras_grid(11, 0.002, 80.0, 7.0)
    assert grid[0].item() == pytest.approx(0.002, rel=1e-12)
    assert grid[-1].item() == pytest.approx(80.0, rel=1e-12)
    assert torch.all(grid[1:] > grid[:-1])
    middle = (0.002 ** (1 / 7) + 0.5 * (80 ** (1 / 7) - 0.002 ** (1 / 7))) ** 7  # VCT eq. 57, i = 6 of 11
    assert grid[5].item() == pytest.approx(middle, rel=1e-12)


@pytest.mark.parametrize("step, expected", [(0, 11), (99, 11), (100, 21), (250, 41), (699, 641),
                                            (700, 1281), (799, 1281)])
def test_ict_curriculum_n_of_k(step, expected):
    """iCT: N(k) = min(s0 2^floor(k/K'), s1) + 1, K' = floor(K / (log2 floor(s1/s0) + 1)).
    s0 = 10, s1 = 1280, K = 800: log2(128) + 1 = 8, so K' = 100 and N doubles every 100 steps."""
    assert ict_num_points(step, 800, 10, 1280) == expected


def test_ict_curriculum_with_s0_equal_s1_is_constant():
    assert {ict_num_points(k, 3000, 30, 30) for k in (0, 1500, 2999)} == {31}


def _ect(iterations: int = 800, **kw) -> ECTDiscretization:
    cfg = ECTOptions(**kw)  # q = 2, k = 8, b = 1, stages = 8: d = 100
    return ECTDiscretization(cfg, kernel("ve"), iterations)


@pytest.mark.parametrize("t, step, expected", [
    (1.0, 250, 1.0 - (1 + 8 / (1 + math.e)) / 8),  # stage ceil(250/100) = 3: q^3 = 8
    (10.0, 100, 10.0 * (1 - (1 + 8 / (1 + math.exp(10))) / 2)),  # stage 1
    (2.0, 800, 2.0 * (1 - (1 + 8 / (1 + math.exp(2))) / 256)),  # last stage 8
    (1.0, 100, 0.002),  # 1 - 3.15/2 < 0: clamped to t_min
])
def test_ect_r_matches_vct_eq_62(t, step, expected):
    disc = _ect()
    r = disc.r_of(torch.tensor([t], **f64), step)
    assert r.item() == pytest.approx(expected, rel=1e-12)
    assert disc.stage(250) == 3


@pytest.mark.parametrize("reading, stages", [
    ("ceil", [0, 1, 1, 1, 2, 3, 8]),  # VCT eq. 62
    ("floor", [0, 0, 0, 1, 1, 2, 7]),  # SCT eqs. 15, 17
    ("floor_plus_one", [1, 1, 1, 2, 2, 3, 8]),  # ECT's and VCT's ECM code
])
def test_ect_stage_exponent_readings(reading, stages):
    """d = 100: the exponent a of q^a at steps 0, 1, 99, 100, 101, 250, 799."""
    disc = _ect(stage_exponent=reading)
    assert [disc.stage(k) for k in (0, 1, 99, 100, 101, 250, 799)] == stages


def test_ect_stage_exponent_changes_r_at_stage_zero():
    """t = 3, k = 0: n(3) = 1 + 8/(1 + e^3) = 1.37941. ceil/floor: a = 0, 1 - n < 0, r = t_min;
    floor_plus_one: a = 1, r = 3 (1 - 1.37941/2) = 0.93089."""
    t = torch.tensor([3.0], **f64)
    n_t = 1 + 8 / (1 + math.exp(3))
    assert _ect(stage_exponent="ceil").r_of(t, 0).item() == pytest.approx(0.002)
    assert _ect(stage_exponent="floor").r_of(t, 50).item() == pytest.approx(0.002)
    r = _ect(stage_exponent="floor_plus_one").r_of(t, 0).item()
    assert r == pytest.approx(3 * (1 - n_t / 2), rel=1e-12) and r == pytest.approx(0.93089, abs=1e-5)


def test_ect_r_floor_zero_keeps_r_at_zero():
    """t = 1, k = 100 (a = 1): 1 - (1 + 8/(1 + e))/2 = -0.576 < 0: r = 0 (ECT's code) instead of t_min;
    where the ratio is positive both readings agree."""
    t = torch.tensor([1.0, 10.0], **f64)
    zero, clamped = _ect(r_floor="zero").r_of(t, 100), _ect().r_of(t, 100)
    assert zero[0].item() == 0.0 and clamped[0].item() == pytest.approx(0.002)
    assert zero[1].item() == clamped[1].item() == pytest.approx(10 * (1 - (1 + 8 / (1 + math.exp(10))) / 2))


@pytest.mark.parametrize("t, s, step, expected", [
    # k = 250, a = 3: n(0.5) = 1 + 8/(1 + e^0.5) = 4.02033, ratio 1 - n/8 = 0.497459; r = 0.25 + 0.25 ratio
    (0.5, 0.25, 250, 0.25 + 0.25 * (1 - (1 + 8 / (1 + math.exp(0.5))) / 8)),
    (0.5, 0.25, 100, 0.25),  # a = 1: ratio 1 - 4.02/2 < 0, ReLU -> r = s
    (2.0, 1.0, 800, 1.0 + (1 - (1 + 8 / (1 + math.exp(2))) / 256)),  # a = 8
])
def test_ect_below_an_upper_limit_follows_sct_eq_17(t, s, step, expected):
    """r = ReLU(1 - n(t)/q^a) (t - s) + s: the gap shrinks towards s. The old max(t (1 - n/q^a), s) gives
    max(0.2487, 0.25) = 0.25 in the first case, eq. 17 gives 0.37436."""
    r = _ect().r_in_segment(torch.tensor([t], **f64), torch.tensor([s], **f64), step)
    assert r.item() == pytest.approx(expected, rel=1e-12)
    if step == 250:
        assert r.item() == pytest.approx(0.374365, abs=1e-6)


def test_ect_with_a_lower_bound_draws_r_by_eq_17():
    disc, sampler = _ect(), LognormalSampler(LognormalSampling())
    lower = torch.linspace(0.01, 5.0, 1000, **f64)
    torch.manual_seed(0)
    t, r = disc.sample_pair(1000, 450, sampler, torch.device("cpu"), lower=lower)
    ratio = (1 - (1 + 8 / (1 + torch.exp(t))) / 2 ** 5).clamp_min(0)
    torch.testing.assert_close(r, ratio * (t - lower) + lower)
    assert torch.all(lower <= r) and torch.all(r < t)


def test_discrete_lognormal_is_the_lognormal_mass_between_grid_points():
    """VCT eq. 59: p(sigma_i) proportional to erf-differences = the lognormal's mass on [sigma_i, sigma_{i+1})."""
    grid = karras_grid(21, 0.002, 80.0, 7.0)
    sampler = LognormalSampler(LognormalSampling(p_mean=-1.1, p_std=2.0))
    probs = sampler.interval_probs(grid)
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-12)
    cdf = stats.lognorm(s=2.0, scale=math.exp(-1.1)).cdf(grid.numpy())
    mass = cdf[1:] - cdf[:-1]
    torch.testing.assert_close(probs, torch.from_numpy(mass / mass.sum()), rtol=1e-9, atol=1e-12)
    erf = [math.erf((math.log(s) + 1.1) / (math.sqrt(2) * 2.0)) for s in grid.tolist()]
    eq59 = torch.tensor([hi - lo for lo, hi in zip(erf[:-1], erf[1:])], **f64)
    torch.testing.assert_close(probs, eq59 / eq59.sum(), rtol=1e-9, atol=1e-12)


def test_ict_pairs_are_adjacent_grid_points_drawn_with_eq_59():
    cfg = ICTOptions(s0=10, s1=10)
    disc = ICTDiscretization(cfg, kernel("ve"), 100)
    sampler = LognormalSampler(LognormalSampling())
    torch.manual_seed(0)
    n = 100_000
    t, r = disc.sample_pair(n, 0, sampler, torch.device("cpu"))
    grid = disc.grid(0).float()
    index = torch.searchsorted(grid, r)
    torch.testing.assert_close(grid[index], r)
    torch.testing.assert_close(grid[index + 1], t)
    freq = torch.bincount(index, minlength=10).double() / n
    probs = sampler.interval_probs(disc.grid(0))
    assert torch.all((freq - probs).abs() <= 5 * torch.sqrt(probs * (1 - probs) / n) + 1e-4)


# ------------------------------------------------------------------------------ weighting, distance
def test_edm_weighting_by_hand():
    """lambda(t) = 1/t^2 + 1/sigma_data^2 (VCT Sec. 6.2): sd = 0.5 gives 8 at t = 0.5, 4.25 at t = 2."""
    cfg, k = EDMWeighting(), kernel("ve", sigma_data=0.5)
    t = torch.tensor([0.5, 2.0], **f64)
    torch.testing.assert_close(build_weighting(cfg, k)(t, t / 2), torch.tensor([8.0, 4.25], **f64))


def test_inverse_dt_weighting_by_hand():
    t, r = torch.tensor([1.0, 0.3], **f64), torch.tensor([0.75, 0.2], **f64)
    torch.testing.assert_close(build_weighting(InvDtWeighting(), kernel("ve"))(t, r), torch.tensor([4.0, 10.0], **f64))


def test_pseudo_huber_limits():
    """sqrt(||x-y||^2 + c^2) - c (VCT eq. 61): 0 at x = y, ~||x-y||^2/(2c) for ||x-y|| << c,
    ~||x-y|| - c for ||x-y|| >> c."""
    cfg = PseudoHuberDistance(c=1.0)
    x = torch.zeros(3, 4, **f64)
    direction = torch.tensor([0.0, 0.6, 0.0, 0.8], **f64)  # unit norm
    y = torch.stack([0 * direction, 1e-4 * direction, 1e4 * direction])
    d = pseudo_huber(cfg, x, y)
    assert d[0].item() == 0.0
    assert d[1].item() == pytest.approx(1e-8 / 2, rel=1e-6)
    assert d[2].item() == pytest.approx(1e4 - 1, rel=1e-8)


def test_pseudo_huber_per_element_by_hand():
    """x - y = (3, 4), c = 1: the vector form sqrt(25 + 1) - 1 = 4.09902 (VCT eq. 61); per element and
    summed (sony/vct models/ict.py) (sqrt(10) - 1) + (sqrt(17) - 1) = 5.28538."""
    x, y = torch.tensor([[3.0, 4.0]], **f64), torch.zeros(1, 2, **f64)
    assert pseudo_huber(PseudoHuberDistance(c=1.0), x, y).item() == pytest.approx(math.sqrt(26) - 1)
    per_element = pseudo_huber(PseudoHuberDistance(c=1.0, per_element=True), x, y).item()
    assert per_element == pytest.approx(math.sqrt(10) + math.sqrt(17) - 2)
    assert per_element == pytest.approx(5.28538, abs=1e-5)
    images = torch.zeros(2, 1, 2, 2, **f64)
    images[1, 0, 1, 1] = 0.3
    c = 0.00054 * 2  # default c = 0.00054 sqrt(4)
    d = pseudo_huber(PseudoHuberDistance(per_element=True), images, torch.zeros_like(images))
    torch.testing.assert_close(d, torch.tensor([0.0, math.sqrt(0.09 + c * c) - c], **f64))


def test_pseudo_huber_default_c_is_icts():
    """c = 0.00054 sqrt(d): for d = 3072 (CIFAR) and a tiny difference, d(x, y) ~ ||x - y||^2 / (2c)."""
    c = 0.00054 * math.sqrt(3072)
    x = torch.zeros(1, 3, 32, 32, **f64)
    y = x.clone()
    y[0, 0, 0, 0] = 1e-5
    assert pseudo_huber(PseudoHuberDistance(), x, y).item() == pytest.approx(1e-10 / (2 * c), rel=1e-4)
    assert default_pseudo_huber_c(3072) == pytest.approx(c)


# ----------------------------------------------------------------------------------------- coupling
@pytest.mark.parametrize("seed", range(5))
def test_ot_pairing_cost_never_above_identity_and_optimal(seed):
    gen = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(6, 2, generator=gen), torch.randn(6, 2, generator=gen)
    perm = ot_permutation(x0, x1)
    assert sorted(perm.tolist()) == list(range(6))
    paired = transport_cost(x0, x1[perm]).item()
    assert paired <= transport_cost(x0, x1).item() + 1e-6
    brute = min(transport_cost(x0, x1[list(p)]).item() for p in itertools.permutations(range(6)))
    assert paired == pytest.approx(brute, rel=1e-5)


# ---------------------------------------------------------------------------------------- optimiser
@pytest.mark.parametrize("step, factor", [(0, 1.0), (1000, 1.0), (2000, 1.0), (8000, 0.5), (18000, 1 / 3)])
def test_inverse_sqrt_lr_matches_vct_eq_63(step, factor):
    """alpha(i) = alpha_ref / sqrt(max(i / i_ref, 1)), i_ref = 2000."""
    assert inv_sqrt_factor(step, 2000) == pytest.approx(factor)
    assert lr_factor("inv_sqrt", step, 2000) == pytest.approx(factor)
    assert lr_factor("constant", step, 2000) == 1.0


def test_lion_two_steps_by_hand():
    """Lion: c = b1 m + (1-b1) g; p -= lr sign(c); m = b2 m + (1-b2) g, with lr 0.1, betas (0.9, 0.99).
    Step 1, g = (0.5, -0.1): sign = (1, -1), p = (0.9, -1.9), m = (0.005, -0.001).
    Step 2, g = (-1, 0.05): c = (-0.0955, 0.0041), p = (1.0, -2.0), m = (-0.00505, -0.00049)."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], **f64))
    opt = Lion([p], lr=0.1, betas=(0.9, 0.99))
    for grad, expected_p, expected_m in [((0.5, -0.1), (0.9, -1.9), (0.005, -0.001)),
                                         ((-1.0, 0.05), (1.0, -2.0), (-0.00505, -0.00049))]:
        p.grad = torch.tensor(grad, **f64)
        opt.step()
        torch.testing.assert_close(p.data, torch.tensor(expected_p, **f64))
        torch.testing.assert_close(opt.state[p]["exp_avg"], torch.tensor(expected_m, **f64))


def test_lion_weight_decay_by_hand():
    """p -= lr (sign(c) + wd p): 1 - 0.1 (1 + 0.5 * 1) = 0.85."""
    p = torch.nn.Parameter(torch.tensor([1.0], **f64))
    opt = Lion([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.tensor([0.5], **f64)
    opt.step()
    assert p.item() == pytest.approx(0.85)


# ------------------------------------------------------------------- sony/vct's toy network in ablate
def test_log_time_input_is_edms_c_noise_and_at_scale_250_icts():
    """precond ``log``: c(t) = scale ln t; 0.25 is EDM's c_noise = ln(sigma) / 4, and 250 gives the
    kernel's own iCT time input 250 ln t on VE and LI."""
    t = torch.tensor([0.002, 0.07, 1.0, 80.0], dtype=torch.float64)
    edm = C.build_config({"precond": {"name": "log"}}).precond
    assert torch.allclose(time_input(edm, t, kernel("ve")), torch.log(t) / 4)
    ict = C.build_config({"precond": {"name": "log", "scale": 250.0}}).precond
    for name in ("ve", "li"):
        k = kernel(name)
        assert torch.allclose(time_input(ict, t, k), time_input(KernelTimeInput(), t, k))


def test_mlp_with_x_embedding_has_the_layers_of_sony_vcts_toy_checkpoints():
    """model.x_embed 256, time_dim 256, depth 2: the weight shapes of the network in sony/vct's
    model_independent.pth / model_vae.pth (net_0: 2 -> 256; net_1: 512 -> 256 -> 256 -> 2)."""
    net = build_network(MLPConfig(hidden=256, depth=2, time_dim=256, x_embed=256), (2,))
    shapes = [tuple(p.shape) for name, p in net.named_parameters() if name.endswith("weight")]
    assert shapes == [(256, 2), (256, 512), (256, 256), (2, 256)]
    plain = build_network(MLPConfig(hidden=256, depth=2, time_dim=256), (2,))
    assert [tuple(p.shape) for n, p in plain.named_parameters() if n.endswith("weight")][0] == (256, 258)
    out = net(torch.randn(5, 2), torch.randn(5))
    assert out.shape == (5, 2) and torch.isfinite(out).all()
