"""The search-space file: parsing, expansion, overrides, optuna suggestions and malformed files."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import optuna
import pytest

from ablate.spec import SpecError, load_spec, parse_set_args
from ablate.train.config import UNION_TAGS, build_config

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "fixtures" / "bad_specs"
QUICKSTART = ROOT / "searchspaces" / "quickstart.yaml"
TUNE = "tune: {metric: w2_1step, mode: min}\n"


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------------------------- parsing
def test_design_example_parses_with_profile(tmp_path):
    """design.md section 4, adapted to choices that exist (ot coupling, lr swept instead of beta)."""
    path = write(tmp_path, """
        name: vct_beta
        description: VCT Table 1, effect of beta on iCT-VE-VC
        base:
          data: {name: fashion_mnist}
          model: {name: unet, channels: 64}
          kernel: {name: ve, sigma_min: 0.002, sigma_max: 80.0, sigma_data: 0.5}
          coupling: {name: ot}
          discretization: {name: ict, s0: 10, s1: 1280}
          weighting: {name: inv_dt}
          train: {iterations: 400000, batch_size: 128, lr: 1.0e-4, optimizer: radam, ema: [0.9999]}
          eval: {every: 10000, samples: 50000, steps: [1, 2]}
        space:
          train.lr: {grid: [5.0e-5, 1.0e-4, 2.0e-4, 4.0e-4]}
        seeds: [42]
        tune:
          metric: fid_1step
          mode: min
          scheduler: fifo
          searcher: grid
          max_concurrent: 4
          resources: {gpu: 1, cpu: 8}
        profiles:
          cpu: {data.name: digits, model.channels: 16, train.iterations: 2000,
                eval.samples: 1000, tune.resources: {gpu: 0, cpu: 1}}
        """)
    spec = load_spec(path)
    assert (spec.name, spec.profile, spec.seeds) == ("vct_beta", None, [42])
    assert spec.tune.metric == "fid_1step" and spec.tune.mode == "min"
    assert spec.tune.scheduler.name == "fifo" and spec.tune.searcher.name == "grid"
    assert spec.tune.max_concurrent == 4
    assert (spec.tune.resources.gpu, spec.tune.resources.cpu) == (1.0, 8.0)
    points = spec.grid_points()
    assert [p.params["train.lr"] for p in points] == [5.0e-5, 1.0e-4, 2.0e-4, 4.0e-4]
    cfg = spec.config_for(points[2].params, points[2].variant, points[2].seed)
    assert cfg.train.lr == 2.0e-4 and cfg.data.name == "fashion_mnist" and cfg.model.channels == 64

    cpu = load_spec(path, profile="cpu")
    assert (cpu.tune.resources.gpu, cpu.tune.resources.cpu) == (0.0, 1.0)
    cfg = cpu.config_for(points[0].params, None, 42)
    assert (cfg.data.name, cfg.model.channels, cfg.train.iterations, cfg.eval.samples) == \
        ("digits", 16, 2000, 1000)
    assert cfg.kernel.sigma_max == 80.0  # untouched by the profile
    assert "4 trials (grid" in cpu.describe() and "profile cpu" in cpu.describe()


def test_quickstart_validates_with_and_without_cpu_profile():
    for profile in (None, "cpu"):
        spec = load_spec(QUICKSTART, profile=profile)
        points = spec.grid_points()
        assert len(points) == 4 and spec.tune.metric == "w2_1step"
        assert spec.tune.resources.cpu == 1 and spec.tune.resources.gpu == 0
        cfg = spec.config_for(points[0].params, None, points[0].seed)
        assert cfg.train.iterations <= 1500 and cfg.eval.every <= 500
    assert load_spec(QUICKSTART, profile="cpu").config_for({}, None, 0).train.device == "cpu"


# ----------------------------------------------------------------------------------- expansion
CONDITIONAL = """
    base: {target: {name: stopgrad}}
    space:
      target.name: {grid: [stopgrad, ema]}
      target.rate: {grid: [0.9, 0.99, 0.999], when: {target.name: ema}}
      distance.c: {grid: [0.01, 0.1], when: {distance.name: pseudo_huber}}
      distance.name: {choice: [pseudo_huber, l2]}
    seeds: [7]
    """ + TUNE


def test_grid_expands_conditionals_only_where_active(tmp_path):
    spec = load_spec(write(tmp_path, CONDITIONAL))
    # `when` keys are ordered before their dependents, whatever the file order
    assert list(spec.space).index("distance.name") < list(spec.space).index("distance.c")
    points = spec.grid_points()
    assert len(points) == (1 + 3) * (2 + 1)
    for p in points:
        assert ("target.rate" in p.params) == (p.params["target.name"] == "ema")
        assert ("distance.c" in p.params) == (p.params["distance.name"] == "pseudo_huber")
        cfg = spec.config_for(p.params, p.variant, p.seed)
        assert cfg.target.name == p.params["target.name"] and cfg.train.seed == 7
        if cfg.target.name == "ema":
            assert cfg.target.rate == p.params["target.rate"]
    assert len({p.trial_name for p in points}) == len(points)
    assert spec.active("target.rate", {"target.name": "ema"})
    assert not spec.active("target.rate", {"target.name": "stopgrad"})


def test_int_distribution_enumerates_by_step(tmp_path):
    spec = load_spec(write(tmp_path, "base: {}\nspace:\n  model.depth: {int: [2, 8], step: 3}\n"
                                     + TUNE))
    assert [p.params["model.depth"] for p in spec.grid_points()] == [2, 5, 8]


VARIANTS = """
    base: {coupling: {name: independent}}
    variants:
      A: {}
      B: {coupling.name: ot}
      C: {weighting.name: edm, coupling.name: ot}
    space:
      train.lr: {grid: [1.0e-3, 1.0e-4]}
    seeds: [1, 2, 3]
    """ + TUNE


def test_variants_cross_space_and_seeds_paired(tmp_path):
    spec = load_spec(write(tmp_path, VARIANTS))
    points = spec.grid_points()
    assert len(points) == 3 * 2 * 3
    arms_per_pair = Counter((p.params["train.lr"], p.seed) for p in points)
    assert set(arms_per_pair.values()) == {3}  # every (point, seed) runs in every arm
    by_arm = {v: sorted((p.params["train.lr"], p.seed) for p in points if p.variant == v)
              for v in "ABC"}
    assert by_arm["A"] == by_arm["B"] == by_arm["C"]
    # the key identifies (variant, params) and is shared across seeds; names are unique
    keys = Counter(p.key for p in points)
    assert len(keys) == 3 * 2 and set(keys.values()) == {3}
    assert len({p.trial_name for p in points}) == len(points)
    c = next(p for p in points if p.variant == "C" and p.seed == 2)
    cfg = spec.config_for(c.params, c.variant, c.seed)
    assert (cfg.coupling.name, cfg.weighting.name, cfg.train.seed) == ("ot", "edm", 2)
    assert cfg.train.lr == c.params["train.lr"]
    assert c.trial_name.startswith("C_") and c.trial_name.endswith("_s2")


def test_conditions_see_variant_values(tmp_path):
    spec = load_spec(write(tmp_path, """
        base: {}
        variants:
          stop: {target.name: stopgrad}
          ema: {target.name: ema}
        space:
          target.rate: {grid: [0.9, 0.99], when: {target.name: ema}}
        """ + TUNE))
    per_arm = Counter(p.variant for p in spec.grid_points())
    assert per_arm == {"stop": 1, "ema": 2}


def test_point_identity_is_stable_across_loads(tmp_path):
    path = write(tmp_path, VARIANTS)
    first = [p.trial_name for p in load_spec(path).grid_points()]
    assert first == [p.trial_name for p in load_spec(path).grid_points()]


def test_random_searcher_is_seeded_and_paired(tmp_path):
    path = write(tmp_path, """
        base: {}
        variants: {A: {}, B: {coupling.name: ot}}
        space:
          train.lr: {loguniform: [1.0e-5, 1.0e-2]}
          model.depth: {int: [2, 6], step: 2}
        seeds: [0, 1]
        tune: {metric: w2_1step, mode: min, searcher: {name: random, num_samples: 5, seed: 3}}
        """)
    points = load_spec(path).points()
    assert len(points) == 5 * 2 * 2
    assert points == load_spec(path).points()
    draws = {(p.params["train.lr"], p.params["model.depth"]) for p in points}
    assert len(draws) == 5  # shared by both arms and both seeds
    for lr, depth in draws:
        assert 1.0e-5 <= lr <= 1.0e-2 and depth in (2, 4, 6)
    other = load_spec(path, overrides={"tune.searcher.seed": 4}).points()
    assert {p.params["train.lr"] for p in other}.isdisjoint({lr for lr, _ in draws})


def test_suggest_with_optuna_respects_conditionals(tmp_path):
    spec = load_spec(write(tmp_path, """
        base: {}
        space:
          target.name: {grid: [stopgrad, ema]}
          target.rate: {uniform: [0.9, 0.999], when: {target.name: ema}}
          distance.c: {grid: [0.01, 0.1], when: {distance.name: pseudo_huber}}
          distance.name: {choice: [pseudo_huber, l2]}
          train.lr: {loguniform: [1.0e-5, 1.0e-2]}
          model.depth: {int: [2, 6], step: 2}
          train.ema: {choice: [[0.999], [0.99, 0.9999]]}
        tune: {metric: w2_1step, mode: min, searcher: {name: optuna, num_samples: 4}}
        """))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_rate = seen_no_rate = False
    for _ in range(40):
        trial = study.ask()
        params = spec.suggest(trial)
        assert set(trial.params) == set(params)
        assert ("target.rate" in params) == (params["target.name"] == "ema")
        assert ("distance.c" in params) == (params["distance.name"] == "pseudo_huber")
        assert 1.0e-5 <= params["train.lr"] <= 1.0e-2 and params["model.depth"] in (2, 4, 6)
        assert params["train.ema"] in ([0.999], [0.99, 0.9999])
        seen_rate |= "target.rate" in params
        seen_no_rate |= "target.rate" not in params
        cfg = spec.config_for(params, None, spec.seeds[0])
        assert cfg.train.ema == params["train.ema"]
        study.tell(trial, params["train.lr"])
    assert seen_rate and seen_no_rate


# ----------------------------------------------------------------------------------- overrides
def test_profile_then_set_precedence(tmp_path):
    path = write(tmp_path, """
        base:
          train: {iterations: 5000, lr: 1.0e-4}
        seeds: [1]
        tune: {metric: w2_1step, mode: min, max_concurrent: 4, resources: {cpu: 4, gpu: 1}}
        profiles:
          small: {train.iterations: 500, seeds: [1, 2], tune.resources: {cpu: 1, gpu: 0.5}}
        """)
    plain = load_spec(path)
    assert plain.config_for({}, None, 1).train.iterations == 5000 and plain.seeds == [1]
    small = load_spec(path, profile="small")
    assert small.config_for({}, None, 1).train.iterations == 500 and small.seeds == [1, 2]
    assert (small.tune.resources.cpu, small.tune.resources.gpu) == (1, 0.5)
    sets = parse_set_args(["train.iterations=100", "tune.max_concurrent=2", "seeds=[9]"])
    both = load_spec(path, profile="small", overrides=sets)
    cfg = both.config_for({}, None, 9)
    assert (cfg.train.iterations, cfg.train.lr) == (100, 1.0e-4)
    assert both.seeds == [9] and both.tune.max_concurrent == 2
    assert both.tune.resources.gpu == 0.5  # from the profile, not touched by --set


def test_space_value_wins_over_profile_and_set(tmp_path):
    path = write(tmp_path, """
        base: {}
        space: {train.lr: {grid: [0.01, 0.02]}}
        profiles: {p: {train.lr: 0.5}}
        """ + TUNE)
    spec = load_spec(path, profile="p", overrides={"train.lr": 0.7})
    assert [spec.config_for(p.params, None, 0).train.lr for p in spec.grid_points()] == [0.01, 0.02]


def test_parse_set_args_parses_yaml_values():
    assert parse_set_args(["a.b=3", "c=[1, 2]", "d={gpu: 0}", "e=tpe", "f=1e-3", "g="]) == \
        {"a.b": 3, "c": [1, 2], "d": {"gpu": 0}, "e": "tpe", "f": 1e-3, "g": ""}
    for bad, where in [("noequals", "noequals"), ("=3", "=3"), ("a..b=1", "a..b=1"),
                       ("a=[1, 2", "a")]:
        with pytest.raises(SpecError) as err:
            parse_set_args([bad])
        assert err.value.file == "--set" and err.value.key == where


def test_override_errors_name_their_origin(tmp_path):
    path = write(tmp_path, "base: {}\n" + TUNE + "profiles:\n  cpu: {train.batch_size: 64}\n")
    with pytest.raises(SpecError) as err:  # the later override (--set) is the one to blame
        load_spec(path, profile="cpu", overrides={"train.batch_size": 1})
    assert [key for key, _ in err.value.problems] == ["--set train.batch_size"]
    with pytest.raises(SpecError, match=r"--set train\.batch_size: .*greater than or equal to 2"):
        load_spec(path, overrides={"train.batch_size": 1})
    with pytest.raises(SpecError, match=r"--set tune\.mode: Input should be 'min' or 'max'"):
        load_spec(path, overrides={"tune.mode": "down"})
    with pytest.raises(SpecError, match=r"--set space\.x: cannot be overridden"):
        load_spec(path, overrides={"space.x": 1})
    with pytest.raises(SpecError, match=r"--profile: unknown profile 'gpu'; valid: cpu"):
        load_spec(path, profile="gpu")


# ------------------------------------------------------------------------------ tune / searcher
@pytest.mark.parametrize("tune, key, text", [
    ("{metric: w2_3step, mode: min}", "tune.metric", "needs 3 in eval.steps"),
    ("{metric: loss, mode: min, scheduler: {name: asha, reduction_factor: 1}}",
     "tune.scheduler.reduction_factor", "greater than or equal to 2"),
    ("{metric: loss, mode: min, searcher: random}", "tune.searcher.num_samples", "required"),
    ("{metric: loss, mode: min, searcher: {name: optuna, num_samples: 5, sampler: bohb}}",
     "tune.searcher.sampler", "'tpe'"),
    ("{metric: loss, mode: min, searcher: {name: grid, num_samples: 5}}",
     "tune.searcher.num_samples", "unknown key"),
    ("{metric: loss, mode: min, resources: {cpu: 0, gpu: 0}}", "tune.resources",
     "needs some cpu or gpu"),
    ("{metric: loss, mode: min, resources: {cpu: 1, gpu: 1.5}}", "tune.resources",
     "whole number"),
    ("{metric: loss, mode: min, max_concurrent: 0}", "tune.max_concurrent", ">= 1"),
    ("{metric: loss, mode: min, searcher: {name: optuna, num_samples: 5}}", "seeds",
     "give one seed"),
])
def test_tune_block_errors(tmp_path, tune, key, text):
    path = write(tmp_path, f"base: {{}}\nseeds: [1, 2]\ntune: {tune}\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    problems = dict(err.value.problems)
    assert key in problems, problems
    assert text.replace(">= 1", "greater than or equal to 1") in problems[key]


def test_fractional_resources_and_asha_are_accepted(tmp_path):
    path = write(tmp_path, "base: {}\ntune: {metric: w2_2step, mode: min, resources: "
                           "{cpu: 0.5, gpu: 0.25}, scheduler: {name: asha, grace_period: 2}}\n")
    tune = load_spec(path).tune
    assert (tune.resources.cpu, tune.resources.gpu) == (0.5, 0.25)
    assert (tune.scheduler.grace_period, tune.scheduler.reduction_factor) == (2, 4)


@pytest.mark.parametrize("space, key, text", [
    ("train.iterations: {uniform: [1000, 2000]}", "space.train.iterations", "use an int"),
    ("train.lr: {loguniform: [0, 1]}", "space.train.lr.loguniform", "low > 0"),
    ("model.depth: {int: [2, 7], step: 2}", "space.model.depth.step", "multiple of step"),
    ("train.lr: {grid: [1, 1]}", "space.train.lr.grid", "values repeat"),
    ("train.lr: {grid: [1], step: 2}", "space.train.lr.step", "int distribution only"),
    ("train.seed: {grid: [1, 2]}", "space.train.seed", "seeds"),
    ("train.lr: {uniform: [1.0e-3, 1.0e-2]}\n  target.rate: {grid: [0.9], "
     "when: {train.lr: 0.001}}", "space.target.rate.when.train.lr", "only a grid"),
    ("target.rate: {grid: [0.9], when: {target.name: emma}}", "space.target.rate.when",
     "never holds"),
    ("train.lr: {uniform: [-1.0, 1.0]}", "space.train.lr", "greater than 0"),
])
def test_space_errors(tmp_path, space, key, text):
    path = write(tmp_path, f"base: {{}}\nspace:\n  {space}\n"
                           "tune: {metric: loss, mode: min, searcher: {name: random, "
                           "num_samples: 2}}\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    problems = dict(err.value.problems)
    assert key in problems, problems
    assert text in problems[key]


def test_grid_variant_also_swept_is_an_error(tmp_path):
    path = write(tmp_path, "base: {}\nvariants: {A: {train.lr: 0.1}}\n"
                           "space: {train.lr: {grid: [0.1, 0.2]}}\n" + TUNE)
    with pytest.raises(SpecError, match=r"variants\.A\.train\.lr: also swept in space"):
        load_spec(path)


# ------------------------------------------------------------------------- the malformed corpus
def _coupling_expectation(choice: str, param: str) -> str:
    """Today vc/gc may not exist: then the choice is unknown; once they do, the range check fails."""
    if choice in UNION_TAGS["coupling"]:
        return f"base.coupling.{param}: "
    return f"base.coupling.name: unknown choice '{choice}'"


CORPUS = {
    "unknown_key.yaml": ["base.train.learning_rate: train has no key 'learning_rate'", "lr,"],
    "unknown_top_key.yaml": ["spaces: unknown key (did you mean 'space'?)"],
    "wrong_type.yaml": ["base.train.iterations: Input should be a valid integer"],
    "unknown_choice.yaml": ["space.weighting.name: unknown choice 'cubic'", "'inv_dt'"],
    "beta_negative.yaml": [_coupling_expectation("vc", "beta")],
    "mu_out_of_range.yaml": [_coupling_expectation("gc", "mu")],
    "s0_above_s1.yaml": ["space.discretization.s0: s0 (2000) must not exceed s1 (1280)"],
    "swept_key_missing.yaml": ["space.coupling.beta: coupling 'ot' has no parameter 'beta'; "
                               "its keys: name"],
    "unknown_distribution.yaml": ["space.train.lr.normal: unknown distribution", "loguniform"],
    "bad_yaml.yaml": ["line 3, column 7: invalid YAML"],
    "unknown_scheduler.yaml": ["tune.scheduler.name: unknown choice 'hyperband'", "'asha'"],
    "bad_mode.yaml": ["tune.mode: Input should be 'min' or 'max'"],
    "negative_resources.yaml": ["tune.resources.gpu: Input should be greater than or equal to 0"],
    "zero_samples.yaml": ["tune.searcher.num_samples: Input should be greater than or equal to 1"],
    "grid_continuous.yaml": ["space.train.lr.uniform: the grid searcher cannot enumerate",
                             "random or optuna"],
    "unknown_metric.yaml": ["tune.metric: unknown metric 'accuracy'", "fid_Kstep"],
    "when_unknown_key.yaml": ["space.train.lr.when.coupling.kind: not a key of the space"],
    "profile_bad_value.yaml": ["profiles.cpu.train.iterations: Input should be greater than"],
}


def test_corpus_is_covered():
    assert {p.name for p in BAD.glob("*.yaml")} == set(CORPUS)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_malformed_file_names_file_and_key(name):
    path = BAD / name
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert err.value.file == str(path)
    assert all(line.startswith(f"{path}: ") for line in message.splitlines())
    for expected in CORPUS[name]:
        assert expected in message, message


def test_distinct_messages_per_corpus_file():
    messages = {}
    for name in CORPUS:
        with pytest.raises(SpecError) as err:
            load_spec(BAD / name)
        messages[name] = err.value.problems[0]
    assert len(set(messages.values())) == len(messages)


def test_validation_never_imports_ray():
    code = ("import sys, glob\nfrom ablate.spec import load_spec, SpecError\n"
            f"for f in sorted(glob.glob({str(BAD)!r} + '/*.yaml')):\n"
            "    try:\n        load_spec(f)\n    except SpecError:\n        pass\n"
            f"load_spec({str(QUICKSTART)!r}, profile='cpu')\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'ray')))")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_config_for_matches_build_config(tmp_path):
    spec = load_spec(write(tmp_path, VARIANTS))
    point = next(p for p in spec.grid_points() if p.variant == "B")
    expected = build_config({"coupling": {"name": "independent"}},
                            {"coupling.name": "ot", "train.lr": point.params["train.lr"],
                             "train.seed": point.seed})
    assert spec.config_for(point.params, "B", point.seed) == expected


def test_exponent_without_dot_is_a_float(tmp_path):
    """PyYAML (YAML 1.1) would read 1e-3 as the string '1e-3'; sweeps must see numbers."""
    spec = load_spec(write(tmp_path, "base: {train: {lr: 3e-4}}\n"
                                     "space: {train.lr: {grid: [1e-3, 1e-4]}}\n" + TUNE))
    assert [p.params["train.lr"] for p in spec.grid_points()] == [1e-3, 1e-4]
    assert spec.base["train"]["lr"] == 3e-4
