"""The Guide's discretization h(t), time preconditioning c(t), t / s samplers and config rules."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from ablate.train.checks import check_runnable
from ablate.train.config import ConfigError, build_config
from ablate.train.discretization import build_discretization
from ablate.train.discretization.guide import (BASELINE_EPS, GuideStepDiscretization, normalized_eps,
                                               step_size)
from ablate.train.kernels import build_kernel
from ablate.train.precond import time_input
from ablate.train.time_sampling import build_time_sampler
from ablate.train.upper_limit import build_upper_limit
from ablate.train.upper_limit.vu import sample_uniform_power

T_POINTS = [0.1, 0.5, 0.9]


def _tan(t):
    return math.tan(math.pi * t / 2)


# Guide App. C.3, eqs. 26-36, written out with math (eps = 0.01, mu = 3.5)
H_FORMULAS = {
    "constant": lambda t, e: e,
    "linear": lambda t, e: e * (1 - t),
    "quadratic": lambda t, e: e * (1 - t) ** 2,
    "cubic": lambda t, e: e * (1 - t) ** 3,
    "quadratic_increase": lambda t, e: e * t ** 2,
    "concave": lambda t, e: e * t * (1 - t),
    "convex": lambda t, e: e * (0.5 - t) ** 2,
    "exponential": lambda t, e: e * math.exp(-3.5 * t),
    "imm": lambda t, e: e * (1 - t) ** 2 / (1 - e * (1 - t)),
    "edm": lambda t, e: 2 / math.pi * math.atan(((0.5 * _tan(t)) ** (1 / 7) + e) ** 7 / 0.5) - t,
    "ect": lambda t, e: t - 2 / math.pi * math.atan(_tan(t) * (1 - e * (1 + 8 / (1 + math.exp(0.5 * _tan(t)))))),
}


@pytest.mark.parametrize("shape", sorted(H_FORMULAS))
def test_step_size_matches_formula(shape):
    t = torch.tensor(T_POINTS, dtype=torch.float64)
    got = step_size(shape, t, 0.01, 3.5)
    want = [H_FORMULAS[shape](x, 0.01) for x in T_POINTS]
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-12)


def test_imm_step_size_tends_to_quadratic_baseline():
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    ratio = step_size("imm", t, 1e-6, 3.5)[:-1] / step_size("quadratic", t, 1e-6, 3.5)[:-1]
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-5)


@pytest.mark.parametrize("shape", ["constant", "linear", "cubic", "concave", "convex", "exponential",
                                   "imm", "edm", "ect"])
def test_normalized_eps_matches_baseline_integral(shape):
    eps = normalized_eps(shape, 3.5)
    value, _ = integrate.quad(lambda t: H_FORMULAS[shape](t, eps), 0.0, 1.0, limit=200)
    assert value == pytest.approx(BASELINE_EPS / 3.0, rel=1e-3)


def _fm_kernel():
    return build_kernel(build_config({"kernel": {"name": "fm"}}).kernel)


def test_guide_discretization_pairs_and_curriculum():
    cfg = build_config({"kernel": {"name": "fm"}, "discretization": {
        "name": "guide", "h": "exponential", "curriculum_every": 100}})
    disc = GuideStepDiscretization(cfg.discretization, _fm_kernel(), 1000)
    assert [disc.eps_at(k) for k in (0, 99, 100, 250, 10 ** 6)] == [0.5, 0.5, 0.25, 0.125, 0.005]
    sampler = build_time_sampler(cfg.time_sampling)
    torch.manual_seed(0)
    t, r = disc.sample_pair(4096, 10 ** 6, sampler, torch.device("cpu"))
    inside = r > 0.006 + 1e-6
    assert torch.all(r < t) and torch.all(r >= 0.006) and torch.all(t <= 0.994)
    assert torch.allclose((t - r)[inside], 0.005 * torch.exp(-3.5 * t[inside]), rtol=1e-3, atol=1e-7)


def test_guide_discretization_needs_unit_time():
    cfg = build_config({"discretization": {"name": "guide"}})  # default kernel ve runs to 80
    with pytest.raises(ValueError, match="kernel.name 'fm'"):
        GuideStepDiscretization(cfg.discretization, build_kernel(cfg.kernel), 1000)


# ------------------------------------------------------------------------------ time preconditioning
def _precond(raw):
    return build_config({"kernel": {"name": "fm"}, "precond": raw}).precond


def test_exponential_precond_is_identity_near_zero():
    cfg = _precond({"name": "exponential", "mu": 3.5})
    t = torch.tensor([1e-4, 1e-6], dtype=torch.float64)
    assert torch.allclose(time_input(cfg, t, _fm_kernel()) / t, torch.ones(2, dtype=torch.float64), atol=1e-3)


def test_exponential_precond_gives_constant_resolution_for_exponential_h():
    """c(t) - c(t - h(t)) is (to first order in eps) the constant eps for h = eps e^{-mu t} (Guide eq. 9)."""
    cfg, kernel = _precond({"name": "exponential", "mu": 3.5}), _fm_kernel()
    t = torch.linspace(0.05, 0.99, 50, dtype=torch.float64)
    eps = 1e-4
    gap = time_input(cfg, t, kernel) - time_input(cfg, t - step_size("exponential", t, eps, 3.5), kernel)
    assert torch.allclose(gap, torch.full_like(gap, eps), rtol=1e-3)
    identity = _precond({"name": "identity"})
    raw_gap = time_input(identity, t, kernel) - time_input(identity, t - step_size("exponential", t, eps, 3.5), kernel)
    assert raw_gap.max() / raw_gap.min() > 20  # without c(t) the resolution varies by e^{3.5 * 0.94}


def test_linear_precond_scales_time():
    t = torch.tensor([0.25])
    assert time_input(_precond({"name": "linear"}), t, _fm_kernel()).item() == pytest.approx(250.0)


# ---------------------------------------------------------------------------------- time samplers
def _unit_cdf_from_pdf(pdf, knots=2001):
    """The CDF of a density on [0, 1] by numerical integration on a fine grid (piecewise quad)."""
    grid = np.linspace(0.0, 1.0, knots) ** 2  # denser near 0, where eq. 17 is singular
    pieces = [integrate.quad(pdf, a, b)[0] for a, b in zip(grid[:-1], grid[1:])]
    values = np.concatenate([[0.0], np.cumsum(pieces)])
    return lambda x: np.interp(x, grid, values)


def _sine_pdf(a, b):
    c = math.pi * (a - b) / (2 * (math.cos(math.pi * b / 2) - math.cos(math.pi * a / 2)))
    return lambda t: c * math.sin(math.pi / 2 * (a * t + b * (1 - t)))  # Guide eq. 15


def _cosh_pdf(a, b):
    return lambda t: (a - b) / (math.sinh(a) - math.sinh(b)) * math.cosh(a * t + b * (1 - t))  # eq. 16


@pytest.mark.parametrize("raw, pdf", [
    ({"name": "sine", "a": 1.0, "b": 0.01}, _sine_pdf(1.0, 0.01)),
    ({"name": "sine", "a": 0.2, "b": 1.5}, _sine_pdf(0.2, 1.5)),
    ({"name": "cosh", "a": 1.5, "b": 0.0}, _cosh_pdf(1.5, 0.0)),
    ({"name": "cosh", "a": -1.0, "b": 2.0}, _cosh_pdf(-1.0, 2.0)),
])
def test_unit_interval_samplers_follow_their_pdf(raw, pdf):
    sampler = build_time_sampler(build_config({"time_sampling": raw}).time_sampling)
    torch.manual_seed(0)
    lo, hi = 0.006, 0.994
    t = sampler.sample(20000, lo, hi, torch.device("cpu")).double().numpy()
    assert t.min() >= lo and t.max() <= hi
    cdf = _unit_cdf_from_pdf(pdf)
    assert stats.kstest((t - lo) / (hi - lo), cdf).pvalue > 0.01
    u = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    assert torch.allclose(sampler.unit_pdf(u), torch.tensor([pdf(x) for x in u.tolist()], dtype=torch.float64))
    scale = sampler.loss_scale(lo + (hi - lo) * u, lo, hi)
    assert torch.allclose(scale, 1.0 / sampler.unit_pdf(u))


def test_unit_interval_sampler_scales_to_per_sample_lower_limit():
    sampler = build_time_sampler(build_config({"time_sampling": {"name": "sine"}}).time_sampling)
    lo = torch.linspace(0.006, 0.9, 1000)
    t = sampler.sample(1000, lo, 0.994, torch.device("cpu"))
    assert torch.all(t >= lo) and torch.all(t <= 0.994)
    no_pdf = build_config({"time_sampling": {"name": "sine", "divide_by_pdf": False}}).time_sampling
    assert build_time_sampler(no_pdf).loss_scale(t, lo, 0.994) is None


def test_uniform_power_sampler_has_marginal_of_eq_17():
    nu = 4.0

    def pdf(s):  # Guide eq. 17, integrated numerically
        return nu * integrate.quad(lambda tau: (1 - s / tau) ** (nu - 1) / tau, s, 1.0)[0]

    assert integrate.quad(pdf, 0.0, 1.0, limit=200)[0] == pytest.approx(1.0, rel=1e-4)
    torch.manual_seed(1)
    s = sample_uniform_power(20000, nu, torch.device("cpu")).double().numpy()
    assert stats.kstest(s, _unit_cdf_from_pdf(pdf, knots=401)).pvalue > 0.01


def test_variable_upper_limit_orders_times():
    cfg = build_config({"kernel": {"name": "fm"}, "discretization": {"name": "guide"},
                        "time_sampling": {"name": "sine"}, "upper_limit": {"name": "vu", "nu": 4.0}})
    kernel = _fm_kernel()
    disc = GuideStepDiscretization(cfg.discretization, kernel, 1000)
    torch.manual_seed(0)
    t, r, s = build_upper_limit(cfg.upper_limit, kernel).draw(
        5000, 0, disc, build_time_sampler(cfg.time_sampling), torch.device("cpu"))
    assert torch.all(s >= 0.006) and torch.all(s <= r) and torch.all(r < t) and torch.all(t <= 0.994)
    assert (s < 0.1).float().mean() > 0.5  # skewed towards t0 (Guide Sec. 3.4)


def test_phased_upper_limit_maps_t_to_segment_edge():
    cfg = build_config({"kernel": {"name": "fm"}, "discretization": {"name": "guide"},
                        "time_sampling": {"name": "uniform"}, "upper_limit": {"name": "phased", "segments": 4}})
    kernel = _fm_kernel()
    limit = build_upper_limit(cfg.upper_limit, kernel)
    torch.manual_seed(0)
    t, r, s = limit.draw(4000, 0, GuideStepDiscretization(cfg.discretization, kernel, 1000),
                         build_time_sampler(cfg.time_sampling), torch.device("cpu"))
    edges = torch.tensor(limit.edges())
    assert torch.all(s <= r) and torch.all(r < t)
    assert torch.all((s[:, None] - edges[None]).abs().min(dim=1).values < 1e-6)
    assert torch.all(t - s <= (edges[1] - edges[0]) + 1e-6)


def _phased(segments: int, disc: dict):
    cfg = build_config({"kernel": {"name": "fm"}, "discretization": disc,
                        "upper_limit": {"name": "phased", "segments": segments}})
    kernel = _fm_kernel()
    return build_upper_limit(cfg.upper_limit, kernel), build_discretization(cfg.discretization, kernel, 800)


def test_phased_t_on_an_edge_belongs_to_the_lower_segment():
    """The issue's case: float32, 8 segments of [0.006, 0.994], t = 0.1295 = s_1. (t - t0)/width rounds
    to 1.0000001 in float32, which put t in segment 1 with s = t, r = t and an infinite 1/(t - r)."""
    limit, disc = _phased(8, {"name": "ect"})
    t = torch.tensor([0.1295])
    s = limit.segment_start(t)
    assert s.item() == pytest.approx(0.006)
    r = disc.r_above(t, t, s, 250)
    n_t = 1 + 8 / (1 + math.exp(0.1295))  # eq. 17 at a = 3: r = ReLU(1 - n/8) (t - s) + s
    assert r.item() == pytest.approx(max(1 - n_t / 8, 0) * (0.1295 - 0.006) + 0.006, rel=1e-6)
    assert torch.isfinite(1 / (t - r)).all()


@pytest.mark.parametrize("disc", [{"name": "ect"}, {"name": "guide", "h": "exponential"},
                                  {"name": "guide", "h": "constant", "eps": 0.5}])
@pytest.mark.parametrize("segments", range(2, 17))
def test_phased_times_are_ordered_on_and_just_above_every_edge(segments, disc):
    """Property over t exactly on every edge s_1 ... s_n (float32) and one ulp above each interior edge:
    s is the edge below t (the lower segment for t on an edge), s <= r < t and t - r > 0, at early,
    middle and late curriculum steps."""
    limit, d = _phased(segments, disc)
    edges = torch.tensor(limit.edges(), dtype=torch.float32)
    on_edge = edges[1:]
    above = torch.nextafter(edges[1:-1], torch.tensor(2.0))
    t = torch.cat([on_edge, above])
    for step in (0, 250, 799):
        r0 = (t - step_size(disc.get("h", "quadratic"), t, disc.get("eps", 0.005), 3.5)).clamp_min(0.006) \
            if disc["name"] == "guide" else t
        s = limit.segment_start(t)
        r = d.r_above(t, r0, s, step)
        assert torch.equal(s[:segments], edges[:-1])  # on an edge: the segment below
        assert torch.equal(s[segments:], edges[1:-1])  # just above: the edge itself
        assert torch.all(s <= r) and torch.all(r < t) and torch.all(t - r > 0)
        assert torch.isfinite(1 / (t - r)).all()


def test_phased_draws_follow_eq_17_with_ect():
    limit, disc = _phased(4, {"name": "ect"})
    torch.manual_seed(0)
    sampler = build_time_sampler(build_config({"time_sampling": {"name": "uniform"}}).time_sampling)
    t, r, s = limit.draw(4000, 450, disc, sampler, torch.device("cpu"))
    ratio = (1 - (1 + 8 / (1 + torch.exp(t))) / 2 ** 5).clamp_min(0)  # a = ceil(450/100) = 5
    torch.testing.assert_close(r, ratio * (t - s) + s)
    width = 0.988 / 4
    assert torch.all(s < t) and torch.all(t - s <= width + 1e-6) and torch.all(s <= r) and torch.all(r < t)


# ---------------------------------------------------------------------------------- config rules
@pytest.mark.parametrize("overrides, key", [
    ({"upper_limit.name": "vu"}, "upper_limit.name='vu'"),
    ({"distance.name": "particle_l2"}, "distance.name='particle_l2'"),
    ({"kernel.name": "fm", "eval.sampler": "pushforward"}, "eval.sampler='pushforward'"),
    ({"kernel.name": "fm", "distance.name": "time_aware_mmd", "distance.group_size": 3,
      "train.batch_size": 256}, "distance.group_size"),
    ({"kernel.name": "fm", "discretization.name": "ect", "discretization.r_floor": "zero",
      "distance.name": "particle_l2"}, "discretization.r_floor='zero'"),
])
def test_incompatible_choices_are_start_up_errors(overrides, key):
    """Valid section by section, these cannot run together: the start-up rules say so."""
    cfg = build_config({}, overrides, source="guide.yaml")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("(", r"\(")):
        check_runnable(cfg, source="guide.yaml")


def test_sine_density_needs_distinct_shape_parameters():
    with pytest.raises(ConfigError, match="a != b"):
        build_config({}, {"time_sampling.name": "sine", "time_sampling.a": 1.0, "time_sampling.b": 1.0})
