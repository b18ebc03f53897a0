"""The searchspaces/ library: every file validates with its default and its ``cpu`` profile, the
default is paper-scale (GPU, Inception FID) and the ``cpu`` profile is small and offline, and each
file's design has the shape of the paper table it reproduces."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ablate.spec import load_spec
from ablate.train.checks import cautions
from ablate.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted((ROOT / "searchspaces").glob("*.yaml"))
REPRO = sorted((ROOT / "searchspaces" / "repro").glob("*.yaml"))
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
PAPER_FILES = ("vct_beta", "coupling", "gc_mu", "discretization", "weighting_sampling",
               "guide_ladder", "beta_hpo")


def test_the_library_is_complete():
    assert {p.stem for p in SPACES} >= {"quickstart", *PAPER_FILES}


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
@pytest.mark.parametrize("profile", [None, "cpu"])
def test_every_file_validates(path, profile):
    spec = load_spec(path, profile)
    assert spec.name == path.stem
    assert spec.description


@pytest.mark.parametrize("path", SPACES + REPRO, ids=[p.stem for p in SPACES + REPRO])
def test_every_shipped_design_evaluates_a_trained_ema(path):
    """No point of a shipped file's default or ``cpu`` profile evaluates an EMA that still holds
    much of its untrained start (:func:`ablate.train.checks.cautions`); repro ``smoke`` profiles are
    pipeline checks and may."""
    for profile in [None] + ["cpu"] * ("cpu" in load_spec(path).profiles):
        assert load_spec(path, profile).cautions() == [], (path.name, profile)


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_every_shipped_config_evaluates_a_trained_ema(path):
    assert cautions(load_config(path)) == []


def test_the_readme_train_command_evaluates_a_trained_ema():
    """The README's one-trial command shortens configs/toy_li.yaml to 1000 iterations."""
    assert cautions(load_config(ROOT / "configs" / "toy_li.yaml", {"train.iterations": 1000})) == []


@pytest.mark.parametrize("name", PAPER_FILES)
def test_default_is_paper_scale_and_cpu_profile_is_small_and_offline(name):
    path = ROOT / "searchspaces" / f"{name}.yaml"
    paper, cpu = load_spec(path), load_spec(path, "cpu")
    assert paper.tune.resources.gpu == 1 and paper.tune.resources.cpu == 8
    assert cpu.tune.resources.gpu == 0 and cpu.tune.resources.cpu == 1
    for spec, extractor in ((paper, "inception-v3-compat"), (cpu, "ablate-cnn")):
        cfg = spec.config_for({}, next(iter(spec.variants), None), spec.seeds[0])
        assert cfg.eval.extractor == extractor
        assert spec.tune.metric == "fid_1step" and 2 in cfg.eval.steps
    paper_cfg = paper.config_for({}, next(iter(paper.variants), None), paper.seeds[0])
    cpu_cfg = cpu.config_for({}, next(iter(cpu.variants), None), cpu.seeds[0])
    assert paper_cfg.data.name in ("fashion_mnist", "cifar10") and paper_cfg.train.iterations >= 100_000
    assert cpu_cfg.data.name == "digits" and cpu_cfg.train.device == "cpu"
    assert cpu_cfg.model.channels == 16 and cpu_cfg.model.channel_mult == [1, 2]
    assert cpu_cfg.train.iterations <= 2000


def _arms(name: str) -> list[tuple]:
    spec = load_spec(ROOT / "searchspaces" / f"{name}.yaml")
    return [(p.variant, tuple(sorted(p.params.items()))) for p in spec.points()]


def test_vct_beta_is_table_1():
    spec = load_spec(ROOT / "searchspaces" / "vct_beta.yaml")
    assert sorted(p.params["coupling.beta"] for p in spec.points()) == [5, 15, 30, 60]
    cfg = spec.config_for(spec.points()[0].params, None, 42)
    assert (cfg.kernel.name, cfg.coupling.name, cfg.discretization.name) == ("ve", "vc", "ict")
    assert (cfg.model.channels, cfg.model.num_res_blocks, cfg.train.batch_size) == (64, 4, 128)


def test_coupling_is_table_2_shape():
    spec = load_spec(ROOT / "searchspaces" / "coupling.yaml")
    cells = {(p.params["kernel.name"], p.params["coupling.name"]): p.params for p in spec.points()}
    assert set(cells) == {(k, c) for k in ("ve", "li") for c in ("independent", "ot", "vc")}
    for (_, coupling), params in cells.items():
        assert ("coupling.beta" in params) == (coupling == "vc")


def test_gc_mu_is_fig_6():
    arms = Counter((v, dict(p).get("coupling.mu")) for v, p in _arms("gc_mu"))
    assert arms == Counter([("gc", mu) for mu in (0.0, 0.3, 0.5, 0.7, 1.0)] + [("ot", None)])
    spec = load_spec(ROOT / "searchspaces" / "gc_mu.yaml")
    assert spec.config_for({}, "ot", 0).coupling.name == "ot"


def test_discretization_is_table_7b():
    spec = load_spec(ROOT / "searchspaces" / "discretization.yaml")
    shapes = [p.params["discretization.h"] for p in spec.points()]
    assert len(shapes) == len(set(shapes)) == 11
    for point in spec.points():  # a fixed integral: every shape is normalised
        cfg = spec.config_for(point.params, None, 0)
        assert cfg.discretization.normalize and cfg.discretization.h == point.params[
            "discretization.h"]


def test_weighting_sampling_is_tables_7e_and_7g():
    spec = load_spec(ROOT / "searchspaces" / "weighting_sampling.yaml")
    densities = set()
    for point in spec.points():
        cfg = spec.config_for(point.params, point.variant, 0)
        assert cfg.weighting.name == "gamma" and cfg.upper_limit.name == point.variant
        ts = cfg.time_sampling
        densities.add((point.variant, ts.name, getattr(ts, "a", None), getattr(ts, "b", None)))
    rows_7g = {("uniform", None, None), ("sine", 1.0, 0.1), ("sine", 1.0, 0.01),
               ("sine", 1.0, 0.001), ("cosh", 1.5, 0.0)}
    assert densities == {(v, *row) for v in ("cu", "vu") for row in rows_7g}


def test_guide_ladder_matches_the_row_configs():
    """Each variant is the Guide row in configs/guide/ (up to the FID sample count)."""
    from ablate.train.config import load_config

    spec = load_spec(ROOT / "searchspaces" / "guide_ladder.yaml")
    assert list(spec.variants) == list("ABCDEFGHIJKL")
    for row in spec.variants:
        ours = spec.config_for({}, row, 42).model_dump()
        theirs = load_config(ROOT / "configs" / "guide" / f"{row}.yaml").model_dump()
        ours["eval"].pop("samples"), theirs["eval"].pop("samples")
        assert ours == theirs, row


def test_beta_hpo_searches_beta_on_a_log_scale_with_asha():
    spec = load_spec(ROOT / "searchspaces" / "beta_hpo.yaml")
    assert spec.tune.searcher.name == "optuna" and spec.tune.scheduler.name == "asha"
    assert spec.space["coupling.beta"].kind == "loguniform"
    assert "coupling.encoder_channels" in spec.space


def test_the_readme_example_validates(tmp_path):
    """The search-space example in README.md is a valid file, with and without its cpu profile."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("    name: vct_beta")
    block = []
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    path = tmp_path / "readme.yaml"
    path.write_text("\n".join(block))
    assert len(load_spec(path).points()) == 4
    assert load_spec(path, "cpu").tune.resources.gpu == 0


def test_vct_cifar10_ddp_is_table_4_on_two_workers():
    """VCT Table 4, CIFAR-10: batch 1024 over 2 GPUs (one per worker), iCT-VE vs iCT-VE-VC; its cpu
    profile runs the same multi-worker path with 2 CPU workers on digits."""
    path = ROOT / "searchspaces" / "vct_cifar10_ddp.yaml"
    paper, cpu = load_spec(path), load_spec(path, "cpu")
    assert sorted(paper.variants) == ["ict_ve", "ict_ve_vc"]
    ve, vc = (paper.config_for({}, v, 42) for v in ("ict_ve", "ict_ve_vc"))
    assert (ve.coupling.name, vc.coupling.name, vc.coupling.beta) == ("independent", "vc", 30)
    assert (ve.data.name, ve.model.channels, ve.model.attn_resolutions, ve.model.dropout) == \
        ("cifar10", 128, [16], 0.3)
    assert (ve.train.batch_size, ve.train.distributed.workers, ve.train.iterations) == (1024, 2, 400_000)
    assert (paper.tune.resources.gpu, paper.tune.resources.cpu) == (1, 8)  # per worker
    small = cpu.config_for({}, "ict_ve_vc", 42)
    assert (small.data.name, small.train.device, small.train.distributed.workers) == ("digits", "cpu", 2)
    assert (cpu.tune.resources.gpu, cpu.tune.resources.cpu) == (0, 1)
