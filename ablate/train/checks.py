"""Every rule that would stop a trial at start-up, in one function of the trainer config.

The pydantic classes of :mod:`.config` check each section on its own (types, ranges, s0 <= s1). A
config valid section by section can still name choices that cannot run together: a variable upper
limit on a kernel without one, the Guide's step sizes on a kernel that runs past t = 1, a batch larger
than the dataset, a tune metric the trials never report. :func:`problems` lists every such conflict of
a config with the dataset it trains on. The Trainer (with the loaded data) and
``ablate.trial.prepare_trial`` (before reading any data) call :func:`check_runnable`; search-space
validation (``ablate.spec``) calls :func:`problems` on every point a sweep can produce, so a file that
validates starts, and the two can never disagree.

A dataset enters as a :class:`DatasetInfo`: ``ablate.data.describe_dataset`` gives one without loading
anything, :meth:`DatasetInfo.of_bundle` one from loaded data. Facts a description cannot know before
loading (the classes of an image folder) are ``None`` and their rules wait for the loaded data.

Each rule is a function ``(cfg, dataset) -> problems`` listed in :data:`RULES`, whose docstring says
what happens without it: most guard an error or a NaN loss at the first steps; a few guard a run that
would start but compute something other than its config says (those were start-up errors before
they moved here). A problem names every config key involved, the one to blame first (:class:`Problem`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Optional

import torch

from .batches import DataBundle
from .columns import evaluation_columns, merge_columns, trainer_columns
from .config import FID_EXTRACTORS, Config, ConfigError, DataConfig
from .couplings import COUPLINGS
from .discretization.guide import step_size
from .kernels import KERNELS
from .metric_table import DATA_KINDS, metrics_of, split_step_column
from .objectives import OBJECTIVES
from .upper_limit import UPPER_LIMITS

#: the largest x whose e^x float32 holds: a time input c(t) above it is inf, and the network's output NaN
FLOAT32_MAX_EXPONENT = math.log(torch.finfo(torch.float32).max)


@dataclass(frozen=True)
class DatasetInfo:
    """What the rules need to know of a dataset. ``None``: not known before the data is loaded."""

    name: str
    kind: str  # "points" (flat vectors) or "images" (C, H, H)
    num_classes: Optional[int]  # 0: no labels
    train_size: Optional[int]  # examples in the training split
    noises: Optional[tuple[str, ...]] = None  # valid data.noise values (None: not checked)
    required: tuple[str, ...] = ()  # DataConfig keys the dataset needs given (folder: root)
    size_key: str = "data.name"  # the key that sets train_size (toy sets: data.n_train)

    @classmethod
    def of_bundle(cls, data: DataBundle) -> "DatasetInfo":
        return cls(data.name, data.kind, data.num_classes, len(data.x_train))


class Problem(NamedTuple):
    """A rule broken by a config: the dotted keys involved (``keys[0]`` is the one reported) and why.
    The message names every key with its value, so it reads the same wherever it is attributed."""

    keys: tuple[str, ...]
    message: str

    @property
    def key(self) -> str:
        return self.keys[0]

    def __str__(self) -> str:
        """``key: message``, as errors and cautions print it."""
        return f"{self.key}: {self.message}"


Rule = Callable[[Config, Optional[DatasetInfo]], Iterator[Problem]]


# ------------------------------------------------------------------------------- axis against axis
def _upper_limit_needs_velocity_kernel(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """f(x_t, t, s) for any s (Guide eq. 3) exists only for a velocity kernel (``fm``); the others
    ignore s, so such a run trains something other than it says (no error)."""
    if KERNELS.get(cfg.kernel.name).supports_upper_limit:
        return
    for section, choice, needs in (("upper_limit", cfg.upper_limit.name,
                                    UPPER_LIMITS.get(cfg.upper_limit.name).dual_time),
                                   ("distance", cfg.distance.name,
                                    OBJECTIVES.get(cfg.distance.name).needs_velocity_kernel)):
        if needs:
            yield Problem((f"{section}.name", "kernel.name"),
                          f"{section}.name={choice!r} needs a velocity kernel with a variable upper "
                          f"limit (kernel.name 'fm'), got kernel.name={cfg.kernel.name!r}")


def _clean_data_target_needs_a_distance_on_f(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """``r_floor: zero`` (ECT's code: r = 0 with the clean data as target) compares f's outputs; the
    Guide's velocity losses have no f(x_0, 0) to compare with (the trainer would divide by t - r)."""
    disc = cfg.discretization
    if disc.name == "ect" and disc.r_floor == "zero" and \
            OBJECTIVES.get(cfg.distance.name).needs_velocity_kernel:
        on_f = [e.name for e in OBJECTIVES.entries() if not e.impl.needs_velocity_kernel]
        yield Problem(("discretization.r_floor", "distance.name"),
                      "discretization.r_floor='zero' (r = 0 with the clean data as target, ECT's code) "
                      f"needs a distance on f ({', '.join(on_f)}), got "
                      f"distance.name={cfg.distance.name!r}")


def _pushforward_needs_upper_limit(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """Pushforward sampling (Guide G.1) jumps from t to s with f(x_t, t, s); a CU model was never
    trained for any s but t0 (it runs, and samples something other than asked)."""
    if cfg.eval.sampler == "pushforward" and cfg.upper_limit.name == "cu":
        yield Problem(("eval.sampler", "upper_limit.name"),
                      "eval.sampler='pushforward' jumps between times and needs a model with an upper "
                      "limit s (upper_limit.name 'vu' or 'phased'), got upper_limit.name='cu'")


def _variable_limit_needs_continuous_times(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """VU draws t on [s, tT] per sample (Guide Sec. 3.4); the iCT grid cannot (it raises at step 1)."""
    if cfg.upper_limit.name == "vu" and cfg.discretization.name == "ict":
        yield Problem(("upper_limit.name", "discretization.name"),
                      "upper_limit.name='vu' draws t above a per-sample upper limit s, which "
                      "discretization.name='ict' (a fixed grid) cannot; use discretization.name 'ect' "
                      "or 'guide'")


def _guide_steps_need_unit_time(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """The Guide's h(t) (Sec. 3.2) is defined for t in [0, 1] (its discretization raises otherwise)."""
    if cfg.discretization.name == "guide" and cfg.kernel.sigma_max > 1.0:
        yield Problem(("discretization.name", "kernel.name", "kernel.sigma_max"),
                      f"discretization.name='guide' is defined on t in [0, 1], but kernel.name="
                      f"{cfg.kernel.name!r} runs to kernel.sigma_max={cfg.kernel.sigma_max}; use "
                      "kernel.name 'fm' (or kernel.sigma_max <= 1)")


def _edm_steps_need_times_below_one(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """h = 'edm' (Guide eq. 27) maps t through sigma(t) = 0.5 tan(pi t / 2): at t = 1 float32's
    tan is negative and h NaN. The lognormal clamps every draw above sigma_max to sigma_max (29 % of
    them at P_mean -1.1, P_std 2), so a kernel range ending at 1 puts t = 1 in nearly every batch."""
    disc, kernel = cfg.discretization, cfg.kernel
    if disc.name == "guide" and disc.h == "edm" and kernel.sigma_max == 1.0 \
            and cfg.time_sampling.name == "lognormal":
        yield Problem(("discretization.h", "kernel.sigma_max", "kernel.name", "time_sampling.name"),
                      "discretization.h='edm' is NaN at t = 1 (float32 tan(pi t / 2)), and "
                      "time_sampling.name='lognormal' clamps about 29 % of its draws to "
                      f"kernel.sigma_max=1.0 of kernel.name={kernel.name!r}; use kernel.sigma_max < 1 "
                      "(kernel.name 'fm' ends at 0.994) or another time_sampling.name")


def _generator_coupling_needs_classic_limit(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """GC Alg. 1 predicts x0 with f(x_r, r); a model with an upper limit also needs s (the network
    raises at the first step)."""
    if cfg.coupling.name == "gc" and cfg.upper_limit.name != "cu":
        yield Problem(("coupling.name", "upper_limit.name"),
                      f"coupling.name='gc' pairs noise with the model's prediction f(x_r, r), which a "
                      f"model with upper_limit.name={cfg.upper_limit.name!r} (f(x_t, t, s)) does not "
                      "give; use upper_limit.name 'cu'")


def _adaptive_kl_needs_a_last_gap(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """VC's adaptive KL weight is beta / dt_N with dt_N = h(sigma_max) for the Guide's step sizes
    (VCT Sec. 6.2); the shapes that vanish at t = 1 (linear, quadratic, ..., for any eps) leave 0 there."""
    coupling, disc, kernel = cfg.coupling, cfg.discretization, cfg.kernel
    if coupling.name != "vc" or not coupling.adaptive or cfg.weighting.name != "inv_dt" \
            or disc.name != "guide" or kernel.sigma_max > 1.0:
        return
    t_max = torch.tensor([kernel.sigma_max], dtype=torch.float64)
    if float(step_size(disc.h, t_max, disc.eps, disc.mu)) <= 0.0:
        yield Problem(("discretization.h", "coupling.name", "coupling.adaptive", "weighting.name",
                       "kernel.sigma_max", "kernel.name"),
                      f"coupling.name='vc' with coupling.adaptive and weighting.name='inv_dt' weighs its "
                      f"KL by beta / h(kernel.sigma_max), and discretization.h={disc.h!r} is 0 at "
                      f"kernel.sigma_max={kernel.sigma_max} of kernel.name={kernel.name!r}; use "
                      "coupling.adaptive: false, another discretization.h, or kernel.sigma_max < 1")


def _mmd_groups_fill_the_batch(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """The time-aware MMD (Guide eq. 46) reshapes each batch into groups, the gradient diagnostics'
    microbatches (batch_size // diag_microbatches examples) included."""
    dist, batch, parts = cfg.distance, cfg.train.batch_size, cfg.log.diag_microbatches
    if dist.name != "time_aware_mmd":
        return
    if batch % dist.group_size:
        yield Problem(("distance.group_size", "train.batch_size"),
                      f"train.batch_size ({batch}) must be a multiple of distance.group_size "
                      f"({dist.group_size}) for distance.name='time_aware_mmd'")
    elif cfg.log.diag_every and (batch // parts) % dist.group_size:
        yield Problem(("distance.group_size", "train.batch_size", "log.diag_microbatches"),
                      f"the gradient diagnostics' microbatches of train.batch_size // "
                      f"log.diag_microbatches = {batch} // {parts} = {batch // parts} examples must be a "
                      f"multiple of distance.group_size ({dist.group_size}) for "
                      "distance.name='time_aware_mmd' (or log.diag_every: 0)")


def _sampling_times_fit_the_kernel(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """K-step sampling restarts (or jumps) at the first K - 1 of eval.mid_times, inside the kernel's
    open time range."""
    ev, kernel = cfg.eval, cfg.kernel
    need = max(ev.steps) - 1
    if need > len(ev.mid_times):
        yield Problem(("eval.steps", "eval.mid_times"),
                      f"eval.steps asks for {max(ev.steps)} sampling steps but eval.mid_times has "
                      f"{len(ev.mid_times)} intermediate time(s) (need {need})")
    outside = [tau for tau in ev.mid_times[:need] if not kernel.sigma_min < tau < kernel.sigma_max]
    if outside:
        yield Problem(("eval.mid_times", "kernel.name", "kernel.sigma_min", "kernel.sigma_max"),
                      f"eval.mid_times {outside} outside the time range of kernel.name={kernel.name!r}: "
                      f"(kernel.sigma_min, kernel.sigma_max) = ({kernel.sigma_min}, {kernel.sigma_max})")


def _bounded_times_for_unit_samplers(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """``ect`` on a kernel unbounded above (``ve``) draws t on [sigma_min, inf): only the lognormal is
    a density there; uniform / sine / cosh scale a unit draw to that range and give t = inf (every
    loss NaN: the trial ends ``diverged`` at its first report)."""
    unbounded = KERNELS.get(cfg.kernel.name).unbounded_above and cfg.discretization.name == "ect"
    if unbounded and cfg.time_sampling.name != "lognormal":
        yield Problem(("time_sampling.name", "discretization.name", "kernel.name"),
                      f"time_sampling.name={cfg.time_sampling.name!r} scales a draw to [sigma_min, "
                      f"sigma_max], but discretization.name='ect' on kernel.name={cfg.kernel.name!r} "
                      "(unbounded above) draws t up to infinity (t = inf, every loss NaN); use "
                      "time_sampling.name 'lognormal' (or discretization.name 'ict' or 'guide')")


def _grid_mass_needs_unit_times(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """On the ``ict`` grid the sine / cosh densities (defined on [0, 1], Guide eqs. 15-16) weigh each
    interval by their CDF at t itself: a grid that starts at sigma_min >= 1 gets no mass at all."""
    if cfg.discretization.name == "ict" and cfg.time_sampling.name in ("sine", "cosh") \
            and cfg.kernel.sigma_min >= 1.0:
        yield Problem(("time_sampling.name", "discretization.name", "kernel.sigma_min", "kernel.name"),
                      f"time_sampling.name={cfg.time_sampling.name!r} weighs the intervals of "
                      "discretization.name='ict' by its density on [0, 1], and the grid starts at "
                      f"kernel.sigma_min={cfg.kernel.sigma_min} >= 1 of kernel.name={cfg.kernel.name!r} "
                      "(no interval has mass); use time_sampling.name 'lognormal' or 'uniform', or "
                      "kernel.sigma_min < 1")


def _time_input_stays_finite(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """c(t) = (e^{mu t} - 1) / mu (Guide eq. 9) is built for t in [0, 1]: past mu t = 88.7 it is inf
    in float32, so sampling, which starts at t = sigma_max, gives NaN at every evaluation."""
    precond, kernel = cfg.precond, cfg.kernel
    if precond.name == "exponential" and precond.mu * kernel.sigma_max > FLOAT32_MAX_EXPONENT:
        yield Problem(("precond.name", "precond.mu", "kernel.sigma_max", "kernel.name"),
                      f"precond.name='exponential' with precond.mu={precond.mu} overflows float32 for "
                      f"t > {FLOAT32_MAX_EXPONENT / precond.mu:.3g}, below kernel.sigma_max="
                      f"{kernel.sigma_max} of kernel.name={kernel.name!r} (every sample NaN); use "
                      "kernel.name 'fm' or another precond.name")


def _time_input_needs_bounded_times(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """``ect`` on a kernel unbounded above draws lognormal t without a bound: c(t) = (e^{mu t} - 1) / mu
    overflows for t > 88.7 / mu (25.3 for mu = 3.5: 1.5 % of the draws at the iCT/ECT P_mean -1.1,
    P_std 2, so nearly every batch), and the loss is NaN from the first steps."""
    unbounded = KERNELS.get(cfg.kernel.name).unbounded_above and cfg.discretization.name == "ect"
    if cfg.precond.name == "exponential" and unbounded and \
            cfg.precond.mu * cfg.kernel.sigma_max <= FLOAT32_MAX_EXPONENT:  # else: the rule above
        yield Problem(("precond.name", "discretization.name", "kernel.name"),
                      f"precond.name='exponential' overflows float32 for t > "
                      f"{FLOAT32_MAX_EXPONENT / cfg.precond.mu:.3g}, and discretization.name='ect' on "
                      f"kernel.name={cfg.kernel.name!r} draws t without an upper bound (a NaN loss in "
                      "the first steps); use another precond.name, or kernel.name 'fm'")


def _diagnostics_split_the_batch(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """Gradient variance needs K microbatches of 2 or more examples (raises at the step-0 report)."""
    parts = cfg.log.diag_microbatches
    if cfg.log.diag_every and cfg.train.batch_size < 2 * parts:
        yield Problem(("log.diag_microbatches", "train.batch_size", "log.diag_every"),
                      f"log.diag_microbatches={parts} needs train.batch_size >= {2 * parts} (got "
                      f"{cfg.train.batch_size}) while log.diag_every > 0")


# -------------------------------------------------------------------------------- config and data
def data_problems(data: DataConfig, dataset: DatasetInfo) -> list[Problem]:
    """The ``data`` options that do not fit ``dataset`` (``ablate.data.load_dataset`` checks these
    alone, before and after reading)."""
    found, name = [], repr(dataset.name)
    for key in dataset.required:
        if getattr(data, key) is None or key not in data.model_fields_set:
            found.append(Problem((f"data.{key}", "data.name"),
                                 f"data.{key} is required for data.name={name}"))
    if data.noise is not None and dataset.noises is not None and data.noise not in dataset.noises:
        found.append(Problem(("data.noise", "data.name"),
                             f"data.noise={data.noise!r} is not a noise of data.name={name} "
                             f"({dataset.kind}); valid: {', '.join(dataset.noises)}"))
    if data.xflip and dataset.kind != "images":
        found.append(Problem(("data.xflip", "data.name"),
                             f"data.xflip=True flips images horizontally, but data.name={name} is "
                             f"{dataset.kind}"))
    if data.class_conditional and dataset.num_classes == 0:
        found.append(Problem(("data.class_conditional", "data.name"),
                             f"data.class_conditional=True needs labels, but data.name={name} has none "
                             "(an image folder has labels with one subfolder per class)"))
    return found


def _data_options_fit_the_dataset(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    if dataset is not None:
        yield from data_problems(cfg.data, dataset)


def _model_fits_the_data(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """The MLP takes flat points, the UNet square images (the network builder raises)."""
    if dataset is None:
        return
    wants = {"mlp": "points", "unet": "images"}[cfg.model.name]
    if dataset.kind != wants:
        other = {"points": "mlp", "images": "unet"}[dataset.kind]
        yield Problem(("model.name", "data.name"),
                      f"model.name={cfg.model.name!r} needs {wants}, but data.name={dataset.name!r} is "
                      f"{dataset.kind}; use model.name {other!r}")


def _batch_fits_the_dataset(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """A batch is drawn without replacement from one epoch (the batch order raises)."""
    if dataset is None or dataset.train_size is None:
        return
    if cfg.train.batch_size > dataset.train_size:
        keys = ("train.batch_size",) + tuple(dict.fromkeys((dataset.size_key, "data.name")))
        size = "" if dataset.size_key == "data.name" else \
            f" ({dataset.size_key}={getattr(cfg.data, dataset.size_key.split('.')[1])})"
        yield Problem(keys, f"train.batch_size={cfg.train.batch_size} exceeds the {dataset.train_size} "
                            f"training examples of data.name={dataset.name!r}{size}")


def _fid_extractor_fits_the_images(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """FID (images only) needs a known extractor; the offline ``ablate-cnn`` trains on labels."""
    if dataset is None or dataset.kind != "images":
        return
    extractor = cfg.eval.extractor
    if extractor not in FID_EXTRACTORS:
        yield Problem(("eval.extractor",), f"eval.extractor={extractor!r} is not a FID feature "
                                           f"extractor; valid: {', '.join(FID_EXTRACTORS)}")
    elif extractor == "ablate-cnn" and dataset.num_classes == 0:
        yield Problem(("eval.extractor", "data.name"),
                      f"eval.extractor='ablate-cnn' trains a classifier on labels, but "
                      f"data.name={dataset.name!r} has none; use eval.extractor 'inception-v3-compat'")


def _slices_divide_the_batch(cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    """Without it: unequal slices, whose mean of means is not the batch mean (another update than the
    config's), or an MMD group cut in two by a slice boundary."""
    parts = cfg.train.distributed.workers * cfg.train.accumulate
    batch = cfg.train.batch_size
    if batch % parts:
        yield Problem(("train.batch_size", "train.distributed.workers", "train.accumulate"),
                      f"train.batch_size ({batch}) must be a multiple of train.distributed.workers x "
                      f"train.accumulate ({cfg.train.distributed.workers} x {cfg.train.accumulate}): "
                      "each worker's micro-batch is an equal slice of the batch")
        return
    dist_cfg = cfg.distance
    if parts > 1 and dist_cfg.name == "time_aware_mmd" and (batch // parts) % dist_cfg.group_size:
        yield Problem(("distance.group_size", "train.batch_size", "train.distributed.workers",
                       "train.accumulate"),
                      f"the micro-batch train.batch_size / (train.distributed.workers x train.accumulate) "
                      f"= {batch} / {parts} = {batch // parts} must be a multiple of distance.group_size "
                      f"({dist_cfg.group_size}): an MMD group never spans two slices")


RULES: tuple[Rule, ...] = (
    _upper_limit_needs_velocity_kernel, _pushforward_needs_upper_limit,
    _clean_data_target_needs_a_distance_on_f,
    _variable_limit_needs_continuous_times, _guide_steps_need_unit_time, _edm_steps_need_times_below_one,
    _generator_coupling_needs_classic_limit, _adaptive_kl_needs_a_last_gap, _mmd_groups_fill_the_batch,
    _sampling_times_fit_the_kernel, _bounded_times_for_unit_samplers, _grid_mass_needs_unit_times,
    _time_input_stays_finite, _time_input_needs_bounded_times,
    _diagnostics_split_the_batch,
    _data_options_fit_the_dataset, _model_fits_the_data, _batch_fits_the_dataset,
    _fid_extractor_fits_the_images, _slices_divide_the_batch,
)


# ------------------------------------------------------------------------------------ the metric
def reported_metrics(cfg: Config, kind: Optional[str]) -> list[str]:
    """The numeric metrics a trial of ``cfg`` reports on data of ``kind`` (None: either kind): the
    numeric report columns (:mod:`.columns`) but the step."""
    kinds = [kind] if kind else list(DATA_KINDS)
    columns = merge_columns(trainer_columns(cfg), *(evaluation_columns(cfg, k) for k in kinds))
    return [name for name, type_ in columns.items() if type_ in (int, float) and name != "step"]


def _metric_problem(metric: str, cfg: Config, dataset: Optional[DatasetInfo]) -> Iterator[Problem]:
    kind = dataset.kind if dataset else None
    if metric in reported_metrics(cfg, kind):
        return
    per_step = split_step_column(metric)
    loggers = [name for name in COUPLINGS if metric in COUPLINGS.get(name).logs]
    if per_step:
        measured, steps = per_step[0].applies_to, per_step[1]
        if kind and measured != kind:
            yield Problem(("tune.metric", "data.name"),
                          f"tune.metric={metric!r} is measured on {measured} only, but data.name="
                          f"{dataset.name!r} is {kind} (metrics: "
                          f"{', '.join(f + '_Kstep' for f in metrics_of(kind))})")
        else:
            yield Problem(("tune.metric", "eval.steps"),
                          f"tune.metric={metric!r} needs {steps} in eval.steps, which is "
                          f"{cfg.eval.steps}")
    elif metric in metrics_of("diagnostics"):
        yield Problem(("tune.metric", "log.diag_every"),
                      f"tune.metric={metric!r} is reported only with gradient diagnostics on "
                      "(log.diag_every > 0), and log.diag_every is 0")
    elif loggers:
        yield Problem(("tune.metric", "coupling.name"),
                      f"tune.metric={metric!r} is logged by coupling.name {' or '.join(map(repr, loggers))} "
                      f"only, got coupling.name={cfg.coupling.name!r}")
    else:
        yield Problem(("tune.metric",),
                      f"unknown metric {metric!r}; these trials report: "
                      f"{', '.join(reported_metrics(cfg, kind))} ("
                      + ", ".join(f"{' / '.join(f + '_Kstep' for f in metrics_of(k))} on {k}"
                                  for k in DATA_KINDS)
                      + ", for K in eval.steps)")


# --------------------------------------------------------------------------------------- cautions
#: the share of its initial weights the evaluated EMA model may still hold after the last step
EMA_INITIAL_SHARE_LIMIT = 0.05


def _evaluated_ema_forgets_its_start(cfg: Config) -> Iterator[Problem]:
    """Without it, a short run with a long EMA evaluates mostly the untrained network: the EMA
    theta_ema <- r theta_ema + (1 - r) theta starts as a copy of the initial weights and still holds
    r^N of them after N updates (0.999 over 1000 steps: 37%), so every arm's FID or W2 reads the same
    warm-up curve. The papers' 0.9999 over 400k steps holds e^-40 of them."""
    rate, steps = cfg.train.ema[0], cfg.train.iterations
    share = rate ** steps
    if share > EMA_INITIAL_SHARE_LIMIT:
        largest = EMA_INITIAL_SHARE_LIMIT ** (1.0 / steps)
        yield Problem(("train.ema", "train.iterations"),
                      f"the evaluated EMA (rate {rate:g}) still holds {rate:g}^{steps} = {share:.0%} of "
                      f"the initial weights after train.iterations={steps}, so its FID or W2 measure the "
                      f"EMA's warm-up more than the training; choose a first train.ema rate of at most "
                      f"{math.floor(largest * 10000) / 10000:g} (under {EMA_INITIAL_SHARE_LIMIT:.0%} "
                      "left) or more iterations")


#: rules a config may break and still run: its numbers then mean less than they seem to
CAUTIONS: tuple[Callable[[Config], Iterator[Problem]], ...] = (_evaluated_ema_forgets_its_start,)


def cautions(cfg: Config) -> list[Problem]:
    """Every caution (:data:`CAUTIONS`) ``cfg`` earns: printed by ``ablate validate``, ``run`` and
    ``train``, never fatal."""
    return [caution for rule in CAUTIONS for caution in rule(cfg)]


# ------------------------------------------------------------------------------------ entry points
def problems(cfg: Config, dataset: Optional[DatasetInfo] = None,
             metric: Optional[str] = None) -> list[Problem]:
    """Every start-up rule ``cfg`` breaks on ``dataset`` (None: only the rules that need no data),
    and, given the ``tune.metric`` of a sweep, whether its trials report that metric."""
    found = [problem for rule in RULES for problem in rule(cfg, dataset)]
    if metric is not None:
        found += _metric_problem(metric, cfg, dataset)
    return found


def check_runnable(cfg: Config, dataset: Optional[DatasetInfo] = None, source: str = "config") -> None:
    """Raise :class:`ConfigError` (one ``key: message`` per problem) if ``cfg`` cannot start."""
    found = problems(cfg, dataset)
    if found:
        raise ConfigError(source, [str(p) for p in found])
