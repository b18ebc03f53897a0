"""How far apart the two times (t, r), r < t, of a consistency pair are, and how that shrinks in training.

A discretization draws the pair for a batch given the training step k (curricula depend on k only, so
checkpoints need no extra state) and a time sampler (see ``time_sampling``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .kernels import Kernel
from .registry import Registry
from .time_sampling import TimeSampler

DISCRETIZATIONS: Registry[type["Discretization"]] = Registry("discretization")


class Discretization:
    def __init__(self, cfg, kernel: Kernel, iterations: int):
        self.cfg, self.kernel, self.iterations = cfg, kernel, iterations

    def sample_pair(self, n: int, step: int, sampler: TimeSampler, device: torch.device,
                    lower: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Times (t, r) of shape (n,) with lo <= r < t, lo = t_min or the per-sample ``lower`` bound
        (the upper limit s of the Guide's VU models, Sec. 3.4)."""
        raise NotImplementedError

    def r_above(self, t: Tensor, r: Tensor, s: Tensor, step: int) -> Tensor:
        """The lower time of a pair (t, r) drawn without a bound once the upper limit s < t is known
        (phased models, SCT Sec. 4.3): r clipped to r >= s, so s <= r < t."""
        return torch.maximum(r, s)

    def last_gap(self, step: int) -> float:
        """dt_N: the gap below t_max at step k (VCT Sec. 6.2's adaptive beta uses beta / dt_N)."""
        raise NotImplementedError

    def stage(self, step: int) -> int:
        """The curriculum stage at step k (logged; grid size N(k) for iCT)."""
        raise NotImplementedError


def karras_grid(n_points: int, t_min: float, t_max: float, rho: float) -> Tensor:
    """sigma_i = (t_min^(1/rho) + (i-1)/(N-1) (t_max^(1/rho) - t_min^(1/rho)))^rho, i = 1..N (VCT eq. 57)."""
    i = torch.arange(n_points, dtype=torch.float64)
    lo, hi = t_min ** (1.0 / rho), t_max ** (1.0 / rho)
    return (lo + i / (n_points - 1) * (hi - lo)) ** rho


def ict_num_points(step: int, iterations: int, s0: int, s1: int) -> int:
    """iCT's exponential curriculum N(k) = min(s0 2^floor(k/K'), s1) + 1,
    K' = floor(K / (log2 floor(s1/s0) + 1)) (Song & Dhariwal 2024; GC App. B; VCT eq. 58 lost symbols
    in extraction)."""
    k_prime = max(1, math.floor(iterations / (math.log2(math.floor(s1 / s0)) + 1)))
    return min(s0 * 2 ** (step // k_prime), s1) + 1


@DISCRETIZATIONS.register("ict")
class ICTDiscretization(Discretization):
    """Adjacent points of the Karras grid with N(k) points; the pair's interval is drawn with the time
    sampler's interval mass (the discrete lognormal of VCT eq. 59 for ``lognormal``)."""

    def __init__(self, cfg, kernel: Kernel, iterations: int):
        super().__init__(cfg, kernel, iterations)
        self._cache: dict[tuple[int, str], tuple[Tensor, Tensor | None]] = {}

    def num_points(self, step: int) -> int:
        return ict_num_points(step, self.iterations, self.cfg.s0, self.cfg.s1)

    def grid(self, step: int) -> Tensor:
        return karras_grid(self.num_points(step), self.kernel.t_min, self.kernel.t_max, self.cfg.rho)

    def _grid_and_probs(self, step: int, sampler: TimeSampler, device: torch.device):
        key = (self.num_points(step), str(device))
        if key not in self._cache:
            grid = self.grid(step)
            probs = sampler.interval_probs(grid)
            self._cache[key] = (grid.to(device, torch.float32), probs.to(device, torch.float32))
        return self._cache[key]

    def sample_pair(self, n, step, sampler, device, lower=None):
        if lower is not None:
            raise ValueError("discretization 'ict' draws from a fixed grid and cannot take a variable "
                             "upper limit s; use discretization.name 'ect' or 'guide' with it")
        grid, probs = self._grid_and_probs(step, sampler, device)
        i = torch.multinomial(probs, n, replacement=True)
        return grid[i + 1], grid[i]

    def last_gap(self, step: int) -> float:
        grid = self.grid(step)
        return float(grid[-1] - grid[-2])

    def stage(self, step: int) -> int:
        return self.num_points(step)


#: the exponent a(k) of q^a in ECT's mapping, by reading (``discretization.stage_exponent``)
STAGE_EXPONENTS = {
    "ceil": lambda step, d: -(-step // d),  # VCT eq. 62
    "floor": lambda step, d: step // d,  # SCT eqs. 15, 17
    "floor_plus_one": lambda step, d: step // d + 1,  # ECT's and VCT's ECM code
}


@DISCRETIZATIONS.register("ect")
class ECTDiscretization(Discretization):
    """ECT: t from the time sampler, r = t (1 - n(t) / q^a), n(t) = 1 + k_n / (1 + e^{b t})
    (VCT eq. 62; SCT eq. 15), a = ``stage_exponent`` of k and d = ceil(K / stages). Where
    1 - n(t)/q^a < 0, r is clamped to t_min (so ceil's stage 0, k = 0, trains the boundary target) or,
    with ``r_floor`` ``zero``, to 0 (the model returns x at t = 0, so the target is the clean data, as
    ECT's code does). Below an upper limit s, r = ReLU(1 - n(t)/q^a) (t - s) + s (SCT eq. 17)."""

    @property
    def d(self) -> int:
        return max(1, math.ceil(self.iterations / self.cfg.stages))

    def shrink(self, t: Tensor, step: int) -> Tensor:
        """n(t) / q^a: one minus the ratio r/t of eq. 15 (and (r - s)/(t - s) of eq. 17)."""
        n_t = 1.0 + self.cfg.k / (1.0 + torch.exp(self.cfg.b * t))
        return n_t / self.cfg.q ** self.stage(step)

    def r_of(self, t: Tensor, step: int) -> Tensor:
        r = t * (1.0 - self.shrink(t, step))
        return r.clamp_min(0.0 if self.cfg.r_floor == "zero" else self.kernel.t_min)

    def r_in_segment(self, t: Tensor, s: Tensor, step: int) -> Tensor:
        """SCT eq. 17: r = ReLU(1 - n(t)/q^a) (t - s) + s, the gap shrinking towards s, so s <= r < t.
        r < t is kept in floating point too: for t a few ulps above s, (t - s) ratio + s rounds to t."""
        ratio = (1.0 - self.shrink(t, step)).clamp_min(0.0)
        return torch.minimum(ratio * (t - s) + s, torch.nextafter(t, s))

    def r_above(self, t, r, s, step):
        return self.r_in_segment(t, s, step)

    def sample_pair(self, n, step, sampler, device, lower=None):
        hi = math.inf if self.kernel.unbounded_above else self.kernel.t_max
        if lower is not None:  # a model with upper limit s: t on [s, hi], r by SCT eq. 17
            t = sampler.sample(n, lower, hi, device)
            t = torch.maximum(t, lower + self.kernel.t_min * 1e-4)
            return t, self.r_in_segment(t, lower, step)
        t = sampler.sample(n, self.kernel.t_min, hi, device)
        # a t on the boundary has no r below it: move it just above (measure zero for continuous t)
        t = torch.maximum(t, torch.full_like(t, self.kernel.t_min * (1 + 1e-4)))
        return t, self.r_of(t, step)

    def last_gap(self, step: int) -> float:
        t = torch.tensor([self.kernel.t_max], dtype=torch.float64)
        return float(t - self.r_of(t, step))

    def stage(self, step: int) -> int:
        """The exponent a of q^a at step k."""
        return STAGE_EXPONENTS[self.cfg.stage_exponent](step, self.d)


def build_discretization(cfg, kernel: Kernel, iterations: int) -> Discretization:
    from . import guide_discretization  # noqa: F401  registers "guide"

    return DISCRETIZATIONS.get(cfg.name)(cfg, kernel, iterations)
