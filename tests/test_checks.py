"""The start-up rules (ablate.train.checks): each rule against what really happens when the Trainer is
built without its gate, the rules against a sample of the cross product of axis choices, the metrics
a trial reports against its rows, the bad search-space corpus through ``ablate validate``, and
``ablate train`` agreeing with ``ablate validate`` (both call the same function)."""
from __future__ import annotations

import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from ablate.data import DATASETS, NOISES, describe_dataset, load_dataset
from ablate.evaluation import Evaluator
from ablate.spec import SpecError, load_spec
from ablate.train import checks
from ablate.train.checks import DatasetInfo, problems, reported_metrics
from ablate.train.config import ConfigError, build_config
from ablate.train.trainer import Trainer
from ablate.trial import prepare_trial
from startup_matrix import DATA, fired_rules, gate_off, outcome, raw_config, structural
from toy import ROOT, ablate_cli

CPU = torch.device("cpu")
BAD = ROOT / "tests" / "fixtures" / "bad_spaces"
POINTS = {"data": {"name": "gmm2", "n_train": 64, "n_holdout": 32},
          "model": {"name": "mlp", "hidden": 16, "depth": 1, "time_dim": 8},
          "kernel": {"name": "li", "sigma_max": 0.1},
          "train": {"iterations": 2, "batch_size": 8, "ema": [0.9], "device": "cpu"},
          "eval": {"steps": [1, 2], "mid_times": [0.05], "samples": 8, "grid": False}}
IMAGES = {**POINTS, "data": {"name": "digits", "n_holdout": 32}, "model": DATA["images"]["model"],
          "eval": {**POINTS["eval"], "steps": [1], "extractor": "ablate-cnn"}}

#: Rules whose combination would run without an error but compute something other than the config
#: asks: ECT's clean-data target under a velocity loss, a VU or particle-loss model on a kernel that ignores s, a pushforward jump with a model
#: that cannot target s, a "3-step" metric sampled with 2 steps, a restart at a time outside the
#: kernel, coordinates flipped as if pixels, a class-conditional run without classes, a folder read
#: from the download cache. They were start-up errors before the rules moved here and stay errors.
RUNS_BUT_MEANS_SOMETHING_ELSE = {
    "_upper_limit_needs_velocity_kernel", "_pushforward_needs_upper_limit",
    "_sampling_times_fit_the_kernel", "_data_options_fit_the_dataset",
    "_clean_data_target_needs_a_distance_on_f",  # the velocity losses ignore the clean-data target
    "_slices_divide_the_batch",  # unequal micro-batches: a mean of means that is not the batch mean
}


#: Rules whose failure is a matter of chance in the matrix's 2 steps of 8-12 examples, and near-certain
#: on a real batch (see test_unbounded_times_overflow_the_exponential_time_input).
SEEN_ON_REAL_BATCHES = {"_time_input_needs_bounded_times", "_edm_steps_need_times_below_one"}


def cfg_of(base: dict, **overrides):
    return build_config(base, overrides)


def rule_names(cfg, dataset=None) -> set[str]:
    dataset = dataset or describe_dataset(cfg.data)
    return {rule.__name__ for rule in checks.RULES if list(rule(cfg, dataset))}


@pytest.fixture(scope="module")
def points():
    return load_dataset(cfg_of(POINTS).data)


@pytest.fixture(scope="module")
def images():
    return load_dataset(cfg_of(IMAGES).data)


# ----------------------------------------------------------------------- each rule, at its edge
BROKEN = [  # (id, base, overrides, the rule it breaks); each of them really raises or diverges
    ("guide-on-ve", POINTS, {"kernel.name": "ve", "discretization.name": "guide"},
     "_guide_steps_need_unit_time"),
    ("vu-on-ict", POINTS, {"kernel.name": "fm", "kernel.sigma_max": None, "eval.mid_times": [0.5],
                           "upper_limit.name": "vu"}, "_variable_limit_needs_continuous_times"),
    ("gc-with-phased", POINTS, {"kernel.name": "fm", "kernel.sigma_max": None, "eval.mid_times": [0.5],
                                "upper_limit.name": "phased", "coupling.name": "gc"},
     "_generator_coupling_needs_classic_limit"),
    ("mmd-groups", POINTS, {"kernel.name": "fm", "kernel.sigma_max": None, "eval.mid_times": [0.5],
                            "distance.name": "time_aware_mmd", "distance.group_size": 3},
     "_mmd_groups_fill_the_batch"),
    ("ect-uniform-ve", POINTS, {"kernel.name": "ve", "kernel.sigma_max": None, "eval.mid_times": [0.5],
                                "discretization.name": "ect", "time_sampling.name": "cosh"},
     "_bounded_times_for_unit_samplers"),
    ("exp-time-input", POINTS, {"kernel.sigma_max": 30.0, "precond.name": "exponential"},
     "_time_input_stays_finite"),
    ("sine-on-a-grid-above-1", POINTS, {"kernel.name": "ve", "kernel.sigma_min": 1.5,
                                        "eval.mid_times": [2.0], "time_sampling.name": "sine"},
     "_grid_mass_needs_unit_times"),
    ("adaptive-kl-no-gap", POINTS, {"kernel.name": "bridge", "kernel.sigma_max": None,
                                    "eval.mid_times": [0.5], "discretization.name": "guide",
                                    "discretization.h": "quadratic", "coupling.name": "vc"},
     "_adaptive_kl_needs_a_last_gap"),
    ("mmd-diag-microbatches", POINTS, {"kernel.name": "fm", "kernel.sigma_max": None,
                                       "eval.mid_times": [0.5], "distance.name": "time_aware_mmd",
                                       "distance.group_size": 3, "train.batch_size": 36,
                                       "log.diag_every": 1, "log.diag_microbatches": 8},
     "_mmd_groups_fill_the_batch"),
    ("diag-batch", POINTS, {"log.diag_every": 1, "log.diag_microbatches": 5},
     "_diagnostics_split_the_batch"),
    ("mlp-on-images", IMAGES, {"model": {"name": "mlp"}}, "_model_fits_the_data"),
    ("unet-on-points", POINTS, {"model": DATA["images"]["model"]}, "_model_fits_the_data"),
    ("batch-over-toy", POINTS, {"train.batch_size": 65}, "_batch_fits_the_dataset"),
    ("batch-over-digits", IMAGES, {"data.n_holdout": 16, "train.batch_size": 1782},
     "_batch_fits_the_dataset"),
    ("unknown-extractor", IMAGES, {"eval.extractor": "inception"}, "_fid_extractor_fits_the_images"),
]


@pytest.mark.parametrize("base, overrides, rule", [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_a_broken_rule_is_named_and_really_stops_the_trial(base, overrides, rule, tmp_path):
    cfg = cfg_of(base, **overrides, **{"eval.cache_dir": str(tmp_path)})
    assert rule_names(cfg) == {rule}
    data = load_dataset(cfg.data)
    assert outcome(cfg, data) is not None  # the components themselves raise (or every loss is NaN)
    with pytest.raises(ConfigError) as err:  # the Trainer, gate on
        Trainer(cfg, data, device=CPU)
    assert [line.split(": ")[0] for line in err.value.problems] == \
        [p.key for p in problems(cfg, describe_dataset(cfg.data))]


@pytest.mark.parametrize("base, overrides", [
    (POINTS, {"kernel.name": "fm", "kernel.sigma_max": None, "eval.mid_times": [0.5],
              "discretization.name": "guide", "upper_limit.name": "vu", "eval.sampler": "pushforward",
              "distance.name": "time_aware_mmd", "distance.group_size": 4}),
    (POINTS, {"kernel.name": "ve", "kernel.sigma_max": 1.0, "discretization.name": "guide"}),
    (POINTS, {"kernel.name": "ve", "kernel.sigma_max": None, "eval.mid_times": [0.5],
              "discretization.name": "ect", "time_sampling.name": "lognormal"}),
    (POINTS, {"kernel.sigma_max": 25.3, "precond.name": "exponential"}),
    (POINTS, {"log.diag_every": 1, "log.diag_microbatches": 4, "train.batch_size": 8}),
    (POINTS, {"train.batch_size": 64}),
    (IMAGES, {"data.n_holdout": 16, "train.batch_size": 1781}),
], ids=["guide-vu-mmd-on-fm", "guide-on-ve-to-1", "ect-lognormal-ve", "exp-time-input-at-25.3",
        "diag-batch-2-each", "batch-equals-toy", "batch-equals-digits"])
def test_the_edge_of_each_rule_runs(base, overrides, tmp_path):
    cfg = cfg_of(base, **overrides, **{"eval.cache_dir": str(tmp_path)})
    assert problems(cfg, describe_dataset(cfg.data)) == []
    assert outcome(cfg, load_dataset(cfg.data), evaluate=base is POINTS) is None


def test_unbounded_times_overflow_the_exponential_time_input():
    """ECT on VE draws lognormal t without bound; c(t) = expm1(3.5 t) / 3.5 is inf past t = 25.3,
    1.5 % of the draws: a batch of 256 holds one with probability 0.98, so the loss is NaN at once."""
    cfg = cfg_of(POINTS, **{"kernel.name": "ve", "kernel.sigma_max": 20.0, "eval.mid_times": [0.5],
                            "discretization.name": "ect", "precond.name": "exponential",
                            "data.n_train": 256, "train.batch_size": 256, "train.iterations": 5})
    assert rule_names(cfg) == {"_time_input_needs_bounded_times"}
    assert outcome(cfg, load_dataset(cfg.data), evaluate=False) == "diverged"


def test_edm_steps_at_t_one_are_nan():
    """h = 'edm' on a kernel range ending at 1: the lognormal puts 29 % of its draws at t = 1, where
    h is NaN in float32; a batch of 256 misses them with probability 0.71^256."""
    cfg = cfg_of(POINTS, **{"kernel.name": "bridge", "kernel.sigma_max": None, "eval.mid_times": [0.5],
                            "discretization.name": "guide", "discretization.h": "edm",
                            "data.n_train": 256, "train.batch_size": 256})
    assert cfg.kernel.sigma_max == 1.0 and rule_names(cfg) == {"_edm_steps_need_times_below_one"}
    assert outcome(cfg, load_dataset(cfg.data), evaluate=False) == "diverged"
    fine = cfg_of(POINTS, **{"kernel.name": "fm", "kernel.sigma_max": None, "eval.mid_times": [0.5],
                             "discretization.name": "guide", "discretization.h": "edm",
                             "data.n_train": 256, "train.batch_size": 256})
    assert rule_names(fine) == set() and outcome(fine, load_dataset(fine.data), evaluate=False) is None


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("base, section, field, value, key", [
    (POINTS, "model", "time_dim", 3, "model.time_dim"),
    (IMAGES, "model", "channel_mult", [1, 0], "model.channel_mult.1"),
    (POINTS, "train", "betas", (0.9, 1.0), "train.betas.1"),
])
def test_single_field_ranges_found_by_running_are_config_errors(base, section, field, value, key):
    """Each value fails at start-up when forced past validation; the config refuses it by name."""
    valid = cfg_of(base)
    forced = valid.model_copy(update={section: getattr(valid, section).model_copy(update={field: value})})
    assert outcome(forced, load_dataset(valid.data), evaluate=False) is not None
    with pytest.raises(ConfigError, match=re.escape(key) + ": "):
        cfg_of(base, **{f"{section}.{field}": value})


def test_digits_training_size_is_the_split_that_loads():
    """1797 images, holdout min(round(0.2 n), n_holdout): 1438 by default, 1781 with n_holdout 16."""
    for n_holdout, size in ((2000, 1438), (16, 1781)):
        data = cfg_of(IMAGES, **{"data.n_holdout": n_holdout}).data
        assert describe_dataset(data).train_size == size == len(load_dataset(data).x_train)


def test_noise_for_points_breaks_image_training(images):
    """A 2-D mixture noise on images: the rule names it, and drawn anyway it cannot be added to images."""
    cfg = cfg_of(IMAGES, **{"data.noise": "gmm2"})
    assert rule_names(cfg) == {"_data_options_fit_the_dataset"}
    bundle = DATASETS.get("digits")(cfg.data, 0)
    bundle.sample_noise = NOISES.get("gmm2")()
    assert outcome(cfg, bundle, evaluate=False).startswith("RuntimeError")


def _png_folder(root: Path, count: int = 6) -> Path:
    root.mkdir()
    for i in range(count):
        Image.new("L", (8, 8), 40 * i).save(root / f"{i}.png")
    return root


def test_folder_rules_before_and_after_reading(tmp_path, monkeypatch):
    """Without root or image_size the folder cannot load; without class subfolders it has no labels,
    which only the data read can tell: the small-CNN extractor and class conditioning need them."""
    monkeypatch.setenv("HOME", str(tmp_path))  # the default root, under ~, holds no images here
    root = _png_folder(tmp_path / "flat")
    for missing, given in (("root", {"data.image_size": 8}), ("image_size", {"data.root": str(root)})):
        cfg = cfg_of(IMAGES, **{"data.name": "folder", **given})
        found = problems(cfg, describe_dataset(cfg.data))
        assert [p.key for p in found] == [f"data.{missing}"]
        with pytest.raises((OSError, RuntimeError, TypeError)):  # no folder; no size to resize to
            DATASETS.get("folder")(cfg.data, 0)
    cfg = cfg_of(IMAGES, **{"data.name": "folder", "data.root": str(root), "data.image_size": 8,
                            "data.n_holdout": 16, "train.batch_size": 4,
                            "eval.cache_dir": str(tmp_path / "cache")})
    assert problems(cfg, describe_dataset(cfg.data)) == []  # labels unknown before reading
    data = load_dataset(cfg.data)
    assert [p.key for p in problems(cfg, DatasetInfo.of_bundle(data))] == ["eval.extractor"]
    assert "FIDUnavailableError" in outcome(cfg, data)
    with pytest.raises(ConfigError, match="eval.extractor='ablate-cnn' trains a classifier on labels"):
        prepare_trial(cfg, None)


def test_prepare_trial_checks_before_reading_any_data(tmp_path):
    """MNIST is not on this machine: the rule (a batch above its 60000 images) stops the trial
    before loading would fail for the missing files."""
    cfg = cfg_of(IMAGES, **{"data.name": "mnist", "data.root": str(tmp_path), "data.download": False,
                            "train.batch_size": 60001})
    with pytest.raises(ConfigError, match="train.batch_size=60001 exceeds the 60000 training examples"):
        prepare_trial(cfg, None)


def test_a_set_override_is_blamed_and_the_file_alone_is_fine(tmp_path):
    path = tmp_path / "fm.yaml"
    path.write_text(yaml.safe_dump({"base": {**POINTS, "kernel": {"name": "fm"}, "eval": {"steps": [1]},
                                             "discretization": {"name": "guide"}},
                                    "tune": {"metric": "w2_1step", "mode": "min"}}))
    assert load_spec(path).points()
    with pytest.raises(SpecError) as err:
        load_spec(path, overrides={"kernel.name": "ve"})
    assert [key for key, _ in err.value.problems] == ["--set kernel.name"]


def test_three_steps_with_one_mid_time_would_sample_two(points):
    """Why eval.steps needs len(mid_times) >= K - 1: the sampler takes the times there are, so the
    'w2_3step' of such a run would be a 2-step number."""
    cfg = cfg_of(POINTS, **{"eval.steps": [1, 3]})
    assert rule_names(cfg) == {"_sampling_times_fit_the_kernel"}
    with gate_off():
        trainer = Trainer(cfg, points, device=CPU)
    assert torch.equal(trainer.sample(3, 16, 0), trainer.sample(2, 16, 0))


def test_every_message_names_every_key_it_blames():
    """Wherever a problem is attributed, its message still names each key involved."""
    cases = [cfg_of(base, **overrides) for _, base, overrides, _ in BROKEN] + [
        cfg_of(POINTS, **{"eval.sampler": "pushforward", "kernel.name": "ve", "kernel.sigma_max": None,
                          "upper_limit.name": "phased", "distance.name": "particle_l2",
                          "eval.steps": [1, 4], "eval.mid_times": [90.0]}),
        cfg_of(POINTS, **{"eval.sampler": "pushforward"}),
        cfg_of(POINTS, **{"kernel.name": "fm", "kernel.sigma_max": None, "eval.mid_times": [0.5],
                          "discretization.name": "ect", "discretization.r_floor": "zero",
                          "distance.name": "particle_l2"}),
        cfg_of(POINTS, **{"data.name": "checkerboard", "data.class_conditional": True,
                          "data.xflip": True, "data.noise": "laplace"}),
        cfg_of(IMAGES, **{"data.name": "folder"}),
        cfg_of(POINTS, **{"kernel.name": "ve", "kernel.sigma_max": 20.0, "discretization.name": "ect",
                          "precond.name": "exponential"}),
        cfg_of(POINTS, **{"kernel.name": "li", "kernel.sigma_max": 1.0, "discretization.name": "guide",
                          "discretization.h": "edm"}),
        cfg_of(POINTS, **{"train.accumulate": 3}),
        cfg_of(POINTS, **{"train.accumulate": 2, "distance.name": "time_aware_mmd", "distance.group_size": 4,
                          "kernel.name": "fm", "kernel.sigma_max": None, "eval.mid_times": [0.5]})]
    seen = set()
    for cfg in cases:
        for rule in checks.RULES:
            for problem in rule(cfg, describe_dataset(cfg.data)):
                seen.add(rule.__name__)
                assert all(key in problem.message for key in problem.keys), problem
    assert seen == {rule.__name__ for rule in checks.RULES}


# --------------------------------------------------------------------------- the cross product
MATRIX_SAMPLE = {"points": 240, "images": 24}  # of 3150 each; ~5 s apiece


@pytest.mark.parametrize("kind", sorted(MATRIX_SAMPLE))
def test_rules_match_what_fails_on_a_sample_of_the_cross_product(kind, tmp_path):
    """Every combination that raises (or diverges at once) breaks a rule, and every combination that
    breaks a rule raises, except for the rules that guard a meaning rather than a crash. The whole
    cross product: ``python tests/startup_matrix.py --kind points`` (see its docstring)."""
    combos = random.Random(14).sample(structural(), MATRIX_SAMPLE[kind])
    data = load_dataset(build_config(DATA[kind]).data)
    conditional = load_dataset(build_config(DATA[kind]).data.model_copy(update={"class_conditional": True}))
    for index, combo in enumerate(combos):
        cfg = build_config(raw_config(kind, combo, index, str(tmp_path)))
        error = outcome(cfg, conditional if cfg.data.class_conditional else data, evaluate=kind == "points")
        fired = set(fired_rules(cfg, kind))
        assert bool(error) <= bool(fired), (combo, error)
        assert bool(fired - RUNS_BUT_MEANS_SOMETHING_ELSE - SEEN_ON_REAL_BATCHES) <= bool(error), \
            (combo, fired)


# ------------------------------------------------------------------------------------- metrics
@pytest.mark.parametrize("coupling", ["independent", "ot", "vc", "gc", "vr"])
def test_reported_metrics_are_the_numbers_in_the_rows(coupling, points):
    cfg = cfg_of(POINTS, **{"coupling.name": coupling, "log.diag_every": 1, "log.report_every": 1,
                            "log.diag_microbatches": 2, "eval.every": 1})
    rows = []
    Trainer(cfg, points, Evaluator(cfg.eval, points, None, CPU), CPU).run(lambda row, _: rows.append(row))
    numeric = {k for row in rows for k, v in row.items() if isinstance(v, float) or k != "step"
               and isinstance(v, int)}
    assert numeric == set(reported_metrics(cfg, "points"))


def test_reported_image_metrics_are_fid_per_step(images, tmp_path):
    cfg = cfg_of(IMAGES, **{"eval.cache_dir": str(tmp_path), "eval.steps": [1, 2], "eval.mid_times": [0.05]})
    row = Evaluator(cfg.eval, images, None, CPU)(lambda steps, n, seed: images.x_train[:n], 0)
    assert {k for k in row if k.startswith(("fid_", "w2_", "frechet_"))} == \
        {"fid_1step", "fid_2step", "fid_extractor"}
    assert {"fid_1step", "fid_2step", "eval_s"} <= set(reported_metrics(cfg, "images"))


@pytest.mark.parametrize("metric, overrides, kind, says", [
    ("w2_1step", {}, "points", None),
    ("frechet_2step", {}, "points", None),
    ("fid_1step", {}, "points", "measured on images only"),
    ("w2_1step", {}, "images", "measured on points only"),
    ("w2_3step", {}, "points", "needs 3 in eval.steps"),
    ("grad_var", {}, "points", "log.diag_every > 0"),
    ("grad_norm", {"log.diag_every": 5}, "points", None),
    ("kl", {}, "points", "coupling.name 'vc' only"),
    ("kl", {"coupling.name": "vc"}, "points", None),
    ("gc_fraction", {"coupling.name": "vc"}, "points", "coupling.name 'gc' only"),
    ("vr_ess", {"coupling.name": "vr"}, "points", None),
    ("transport_cost", {}, "points", None),
    ("accuracy", {}, "points", "unknown metric 'accuracy'"),
])
def test_tune_metric_must_be_reported(metric, overrides, kind, says):
    base = POINTS if kind == "points" else IMAGES
    cfg = cfg_of(base, **overrides)
    found = [p for p in problems(cfg, describe_dataset(cfg.data), metric) if p.key == "tune.metric"]
    assert [says in p.message for p in found] == ([True] if says else [])


# ------------------------------------------------------------------------- the bad-space corpus
def _expected(path: Path) -> dict[str, str]:
    """The ``# key:``, ``# arm:`` and ``# says:`` lines at the top of a corpus file."""
    lines = [line[2:] for line in path.read_text().splitlines() if line.startswith("# ")]
    return dict(line.split(": ", 1) for line in lines if line.split(":")[0] in ("key", "arm", "says", "rule"))


CORPUS = sorted(BAD.glob("*.yaml"))


def test_the_corpus_covers_every_rule_and_the_metric():
    text = "\n".join(p.read_text() for p in CORPUS)
    assert len(CORPUS) >= len(checks.RULES) + 5
    for path in CORPUS:
        assert {"rule", "key"} <= set(_expected(path)), path
    assert "tune.metric" in text and "profiles:" in text and "variants:" in text and "space:" in text


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_each_bad_space_is_one_problem_naming_file_key_and_arm(path):
    expected = _expected(path)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert err.value.file == str(path)
    assert len(err.value.problems) == 1, err.value.problems
    key, message = err.value.problems[0]
    assert key == expected["key"]
    if "arm" in expected:
        assert re.search(r"\(at [^()]*" + re.escape(expected["arm"]), message), message
    else:
        assert "(at " not in message
    assert expected.get("says", "") in message


@pytest.fixture(scope="module")
def cli_runs() -> dict[str, object]:
    """``ablate validate`` on every corpus file, and ``ablate run`` on one, as subprocesses at once."""
    jobs = {path.stem: ("validate", str(path)) for path in CORPUS}
    jobs["run"] = ("run", str(BAD / "guide_on_ve.yaml"), "--out", "/nonexistent/never-written", "--quiet")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(ablate_cli, *args, timeout=300) for name, args in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_ablate_validate_exits_2_naming_file_key_and_arm(path, cli_runs):
    done, expected = cli_runs[path.stem], _expected(path)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert line.startswith(f"ablate validate: {path}: {expected['key']}: "), line
    assert expected.get("arm", "") in line and expected.get("says", "") in line
    assert done.stdout == ""


def test_ablate_run_stops_before_ray(cli_runs):
    done = cli_runs["run"]
    assert done.returncode == 2, done.stderr
    assert "base.discretization.name" in done.stderr and "ray" not in done.stderr.lower()
    assert not Path("/nonexistent/never-written").exists()


# ------------------------------------------------------------------ train and validate agree
AGREEMENT = [  # trainer configs: the same problems from `ablate train` and from `ablate validate`
    {**POINTS, "kernel": {"name": "ve"}, "discretization": {"name": "guide"}},
    {**POINTS, "upper_limit": {"name": "vu"}, "eval": {"steps": [1, 3], "mid_times": [0.05]}},
    {**IMAGES, "model": {"name": "mlp"}, "train": {"batch_size": 4096}},
    {**POINTS, "data": {"name": "moons", "xflip": True}, "precond": {"name": "exponential"},
     "kernel": {"name": "li"}},
]


def _space_of(config: dict) -> dict:
    return {"base": config, "tune": {"metric": "loss", "mode": "min"}}


@pytest.mark.parametrize("config", AGREEMENT, ids=range(len(AGREEMENT)))
def test_train_and_validate_report_the_same_problems_in_process(config, tmp_path):
    cfg = build_config(config)
    with pytest.raises(ConfigError) as trained:
        prepare_trial(cfg, None, source="x.yaml")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(_space_of(config)))
    with pytest.raises(SpecError) as validated:
        load_spec(space)
    assert trained.value.problems == [f"{key.removeprefix('base.')}: {msg}"
                                      for key, msg in validated.value.problems]


def test_train_and_validate_agree_on_the_command_line(tmp_path):
    config, space = tmp_path / "bad.yaml", tmp_path / "bad_space.yaml"
    config.write_text(yaml.safe_dump(AGREEMENT[0]))
    space.write_text(yaml.safe_dump(_space_of(AGREEMENT[0])))
    with ThreadPoolExecutor(max_workers=2) as pool:
        train = pool.submit(ablate_cli, "train", str(config), "--out", str(tmp_path / "run"), timeout=300)
        validate = pool.submit(ablate_cli, "validate", str(space), timeout=300)
        train, validate = train.result(), validate.result()
    assert train.returncode == validate.returncode == 2, (train.stderr, validate.stderr)
    problem = validate.stderr.strip().split(f"{space}: base.", 1)[1]
    assert train.stderr.strip() == f"ablate train: {config}: {problem}"
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------- cautions
def _with_ema(rate: float, iterations: int, **train):
    return cfg_of({**POINTS, "train": {**POINTS["train"], "ema": [rate], "iterations": iterations, **train}})


def test_the_trainers_ema_holds_rate_to_the_steps_of_its_start():
    """What the EMA caution computes is what the Trainer's EMA is: after N updates at rate r it is
    r^N theta_0 + sum_k (1 - r) r^(N - k) theta_k over the online weights theta_k after step k."""
    rate, steps = 0.8, 5
    cfg = _with_ema(rate, steps, lr=0.05)
    trainer = Trainer(cfg, load_dataset(cfg.data, cfg.train.seed), None, CPU)
    expected = [rate ** steps * p.detach().clone() for p in trainer.online.parameters()]
    for k in range(1, steps + 1):
        trainer.train_step()
        for total, p in zip(expected, trainer.online.parameters()):
            total += (1 - rate) * rate ** (steps - k) * p.detach()
    moved = max((p - p0).abs().max() for p, p0 in zip(trainer.online.parameters(),
                                                         [e / rate ** steps for e in expected]))
    assert moved > 0  # training moved the weights: the test tells the start from the rest
    for ema_p, want in zip(trainer.ema.parameters(), expected):
        torch.testing.assert_close(ema_p, want)


def test_an_ema_longer_than_the_run_earns_a_caution_naming_its_share_and_a_rate_that_fits():
    (caution,) = checks.cautions(_with_ema(0.999, 1000))
    assert caution.keys == ("train.ema", "train.iterations")
    assert "0.999^1000 = 37%" in caution.message and "at most 0.997 " in caution.message
    assert checks.cautions(_with_ema(0.997, 1000)) == []  # the rate it proposes is quiet
    assert checks.cautions(_with_ema(0.999, 40000)) == []  # VCT App. E: 0.999 over 40k steps
    assert checks.cautions(_with_ema(0.9999, 400000)) == []  # the papers' image runs


def test_validate_and_train_print_the_caution_and_still_succeed(tmp_path):
    """A caution is a stderr line naming the file and the key; the command does its work (exit 0)."""
    config = {**POINTS, "train": {**POINTS["train"], "ema": [0.99], "iterations": 4}}
    space, trainer_config = tmp_path / "short_ema.yaml", tmp_path / "short_ema_config.yaml"
    space.write_text(yaml.safe_dump(_space_of(config)))
    trainer_config.write_text(yaml.safe_dump(config))
    validate = ablate_cli("validate", str(space), timeout=300)
    train = ablate_cli("train", str(trainer_config), "--out", str(tmp_path / "run"), timeout=300)
    share = "0.99^4 = 96% of the initial weights"
    assert validate.returncode == 0 and validate.stdout.startswith("short_ema"), validate.stderr
    assert f"ablate validate: caution: {space}: train.ema: " in validate.stderr and share in validate.stderr
    assert train.returncode == 0, train.stderr
    assert f"ablate train: caution: {trainer_config}: train.ema: " in train.stderr and share in train.stderr
    assert '"step": 4' in train.stdout  # it trained to the end
