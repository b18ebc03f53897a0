"""The early-stopping audit (ablate.figures.audit) on curves with a known answer and on the fixture."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ablate import cli
from ablate.figures import make_report
from ablate.figures.audit import (AuditUnavailable, asha_rungs, evaluation_curves, kendall_tau_b,
                                  rank_agreement, replay_asha, smallest_safe_grace)

FIXTURE = Path(__file__).parent / "fixtures" / "sweep_results.parquet"
FINALS = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}  # final W2 per arm: a wins
EVALS = 8  # evaluations after step 0, every 100 steps


def curves_frame(flip_at: int | None, seeds: int = 3, noise: float = 0.01,
                 stopped: bool = False) -> pd.DataFrame:
    """A finished grid sweep: 4 arms x ``seeds`` seeds, w2_1step at steps 0, 100, ..., 800. Before
    evaluation ``flip_at`` (1-based) the arms rank in reverse (the winner last); from it on, as at the
    end. ``flip_at=None``: never flips."""
    rng = np.random.default_rng(0)
    rows = []
    for arm, final in FINALS.items():
        for seed in range(seeds):
            trial = f"{arm}_s{seed}"
            for index in range(EVALS + 1):
                early = flip_at is not None and 1 <= index < flip_at
                value = (10 - final if early else final) + 5.0 / (1 + index) + rng.normal(0, noise)
                last = index == EVALS
                rows.append({"sweep": "synthetic", "trial_id": trial, "arm": arm, "seed": seed,
                             "step": 100 * index, "w2_1step": value, "variant": None,
                             "status": ("stopped_early" if stopped and last else
                                        "completed" if last else "running")})
    return pd.DataFrame(rows)


def test_kendall_tau_b_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(20):
        x, y = rng.integers(0, 4, 7).astype(float), rng.integers(0, 4, 7).astype(float)
        assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, nan_ok=True)


@pytest.mark.parametrize("grace, rf, max_t", [(1, 2, 8), (1, 3, 8), (2, 2, 8), (1, 4, 16), (3, 3, 30)])
def test_rungs_are_rays(grace, rf, max_t):
    from ray.tune.schedulers.async_hyperband import _Bracket

    ray_rungs = sorted(m for m, _ in _Bracket(grace, max_t, rf, 0)._rungs if m < max_t)
    assert asha_rungs(max_t, grace, rf) == ray_rungs


def test_ranking_that_flips_at_a_known_step():
    curves = evaluation_curves(curves_frame(flip_at=4), "w2_1step")
    agreement = rank_agreement(curves, resamples=500)
    early, late = agreement[agreement["step"] < 400], agreement[agreement["step"] >= 400]
    assert (early["tau"] == -1).all() and (late["tau"] == 1).all()
    assert (early["high"] == -1).all() and (late["low"] == 1).all()  # seeds agree: tight intervals

    replay = replay_asha(curves, "min", grace_period=1, reduction_factor=2)
    assert replay.rungs == [1, 2, 4] and replay.rung_steps == [100, 200, 400]
    assert replay.winner == "a" and not replay.winner_survives
    # 12 trials (ASHA judges seeds one by one): rung 1 keeps the best half (the 6 trials of arms c and
    # d), rung 2 half of those (the 3 of d), rung 4 the two of d above their median
    assert replay.steps_spent == 6 * 100 + 3 * 200 + 1 * 400 + 2 * 800 and replay.grid_steps == 12 * 800
    assert replay.winner_trials == 3 and replay.winner_kept == 0
    assert replay.pick == "d" and replay.pick_regret == pytest.approx((4 + 5 / 9) / (1 + 5 / 9) - 1, rel=0.02)

    safe = smallest_safe_grace(curves, "min", reduction_factor=2)
    assert safe.grace_period == 4 and safe.winner_kept == 3 and safe.pick == "a"


def test_ranking_that_never_flips():
    curves = evaluation_curves(curves_frame(flip_at=None), "w2_1step")
    assert (rank_agreement(curves, resamples=200)["tau"] == 1).all()
    replay = replay_asha(curves, "min", grace_period=1, reduction_factor=2)
    assert replay.winner_survives and replay.pick == "a" and replay.pick_regret == 0
    assert smallest_safe_grace(curves, "min", 2).grace_period == 1


def test_one_seed_has_no_interval_and_max_mode_reverses_the_winner():
    curves = evaluation_curves(curves_frame(flip_at=None, seeds=1), "w2_1step")
    assert rank_agreement(curves, resamples=50)[["low", "high"]].isna().all().all()
    replay = replay_asha(curves, "max", grace_period=1, reduction_factor=2)
    assert replay.winner == "d" and replay.winner_survives


def test_an_early_stopped_sweep_is_not_audited(tmp_path):
    with pytest.raises(AuditUnavailable, match="stopped early"):
        evaluation_curves(curves_frame(flip_at=None, stopped=True), "w2_1step")
    report = make_report(curves_frame(flip_at=None, stopped=True), tmp_path, "synthetic").read_text()
    assert "## Early stopping audit" in report and "Not available: 12 trial(s) were stopped early" in report


def test_report_and_cli_flags(tmp_path):
    df = curves_frame(flip_at=4)
    df.to_parquet(tmp_path / "results.parquet")
    assert cli.main(["figures", str(tmp_path / "results.parquet"), "-o", str(tmp_path / "r"),
                     "--grace-period", "1", "--reduction-factor", "2"]) == 0
    report = (tmp_path / "r" / "report.md").read_text()
    assert "ASHA (grace period 1, reduction factor 2" in report and "3200 of the grid's 9600 trial-steps (**33%**)" in report
    assert "`a` **is stopped**" in report and "Smallest grace period" in report and "**4** evaluation(s)" in report
    assert (tmp_path / "r" / "figures" / "rank_agreement_w2_1step.png").exists()
    assert cli.main(["figures", str(tmp_path / "results.parquet"), "--grace-period", "0"]) == 2


def test_the_sweep_files_asha_settings_are_the_default(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    curves_frame(flip_at=4).to_parquet(sweep / "results.parquet")
    (sweep / "spec.yaml").write_text("tune: {scheduler: {name: asha, grace_period: 2, reduction_factor: 3}}\n")
    args = cli.build_parser().parse_args(["figures", str(sweep)])
    assert cli._audit_settings(args) == (2, 3)
    args = cli.build_parser().parse_args(["figures", str(sweep), "--reduction-factor", "5"])
    assert cli._audit_settings(args) == (2, 5)


@pytest.mark.skipif(not FIXTURE.exists(), reason="no sweep fixture")
def test_audit_on_the_committed_fixture(tmp_path):
    df = pd.read_parquet(FIXTURE)
    curves = evaluation_curves(df, "w2_1step")
    assert list(curves.steps) == [500, 1000, 1500] and len(set(curves.arms)) == 4
    agreement = rank_agreement(curves, resamples=100)
    assert agreement["tau"].iloc[-1] == 1 and agreement["tau"].between(-1, 1).all()
    report = make_report(df, tmp_path, "fixture").read_text()
    assert "## Early stopping audit" in report and "Kendall tau vs final" in report
