"""ablate.figures on a small synthetic sweep written with the results store's column contract."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ablate import figures

FIXTURE = Path(__file__).parent / "fixtures" / "sweep_results.parquet"
COUPLING_FID = {"independent": 12.0, "ot": 9.0, "vc": 6.0}  # final 1-step FID per coupling
LR_EFFECT = {1e-4: 0.0, 4e-4: 0.3}
STEPS = range(100, 1100, 100)


def make_results(n_seeds: int = 3, failures: bool = False, rng_seed: int = 0,
                 sweep: str = "coupling_lr") -> pd.DataFrame:
    """A sweep's collected results: arms coupling.name x train.lr, ``n_seeds`` seeds each, ten
    reports per trial, FID every second report, noise on every metric. With ``failures``, one more
    trial errors after two reports and one diverges (its loss and FID go to inf)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    points = [(c, lr) for c in COUPLING_FID for lr in LR_EFFECT]
    trials = [(c, lr, 40 + s, "completed") for c, lr in points for s in range(n_seeds)]
    if failures:
        trials += [("ot", 1e-4, 99, "errored"), ("vc", 4e-4, 98, "diverged")]
    for number, (coupling, lr, seed, outcome) in enumerate(trials):
        arm = f"coupling.name={coupling},train.lr={lr:g}"
        final = COUPLING_FID[coupling] + LR_EFFECT[lr] + rng.normal(0, 0.8)
        wall = 0.0
        steps = list(STEPS)[:2] if outcome == "errored" else list(STEPS)
        for index, step in enumerate(steps):
            wall += 5.0 * (1 + 0.1 * rng.random())
            last = index == len(steps) - 1
            measured = index % 2 == 1
            fid = final + 80 * np.exp(-step / 250) + rng.normal(0, 0.3)
            if outcome == "diverged" and index >= 6:
                fid = np.inf
            rows.append({
                "sweep": sweep, "trial_id": f"t{number:03d}", "attempt": 0, "seed": seed,
                "arm": arm, "variant": None, "coupling.name": coupling,
                "coupling.beta": 30.0 if coupling == "vc" else np.nan, "train.lr": lr,
                "train.seed": seed, "kernel.name": "ve", "model.channel_mult": [2, 2, 2],
                "step": step, "images_seen": step * 128, "wall_s": wall,
                "loss": np.inf if np.isinf(fid) else 1 / np.sqrt(step) + rng.normal(0, 0.005),
                "lr": lr, "status": outcome if last else "running",
                "fid_1step": fid if measured else np.nan,
                "fid_2step": fid * 0.6 if measured else np.nan,
                "fid_extractor": "digits-cnn" if measured else None,
                "w2_1step": np.nan, "w2_2step": np.nan,
                "grad_var": (2.0 if coupling == "independent" else 1.0) * rng.lognormal(0, 0.3),
                "grad_var_pooled": rng.lognormal(0, 0.3), "grad_norm": rng.lognormal(0, 0.2),
                "transport_cost": (2.0 if coupling == "independent" else 1.2) + rng.normal(0, .05),
                "kl": 0.5 + rng.normal(0, 0.05) if coupling == "vc" else np.nan,
                "eval_s": 1.0 if measured else np.nan,
            })
            if outcome == "errored" and last:
                rows[-1].update(fid_1step=np.nan, fid_2step=np.nan, fid_extractor=None)
    return pd.DataFrame(rows)


def independent_finals(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Last finite value per trial of completed trials, computed without ablate.figures."""
    status = df.sort_values("step").groupby("trial_id")["status"].last()
    ok = status.index[status == "completed"]
    rows = df[df["trial_id"].isin(ok) & np.isfinite(df[metric])].sort_values("step")
    return rows.groupby("trial_id").agg(arm=("arm", "first"), seed=("seed", "first"),
                                        value=(metric, "last"))


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return make_results(failures=True)


def test_bootstrap_interval_matches_scipy_and_handles_one_seed():
    values = np.array([3.1, 4.0, 3.6, 5.2, 4.4, 3.9])
    mean, low, high = figures.bootstrap_mean_ci(values, n_resamples=20000)
    reference = stats.bootstrap((values,), np.mean, method="percentile", n_resamples=20000,
                                random_state=1).confidence_interval
    assert mean == pytest.approx(values.mean())
    assert low == pytest.approx(reference.low, abs=0.03)
    assert high == pytest.approx(reference.high, abs=0.03)
    assert np.isnan(figures.bootstrap_mean_ci([2.0, np.nan])[1])
    assert figures.bootstrap_mean_ci([2.0, np.inf])[0] == 2.0


def test_ema_is_vct_fig3_smoothing():
    np.testing.assert_allclose(figures.ema([1.0, 2.0, np.nan, 3.0], 0.9),
                               [1.0, 1.1, 1.1, 0.9 * 1.1 + 0.3])


def test_swept_keys_inferred_without_seed_fields(results):
    assert figures.swept_keys(results) == ["coupling.name", "train.lr"]
    results_attrs = results.copy()
    results_attrs.attrs["swept"] = ["coupling.name"]
    assert figures.swept_keys(results_attrs) == ["coupling.name"]


def test_arm_order_sorts_swept_numbers_numerically():
    frame = pd.DataFrame({"trial_id": ["a", "b", "c"], "seed": 1, "step": 1, "status": "completed",
                          "arm": ["coupling.beta=30", "coupling.beta=5", "coupling.beta=15"],
                          "coupling.beta": [30.0, 5.0, 15.0]})
    assert figures.arm_order(frame) == ["coupling.beta=5", "coupling.beta=15", "coupling.beta=30"]


def test_final_values_skip_failed_and_unmeasured(results):
    finals = figures.final_values(results, "fid_1step")
    expected = independent_finals(results, "fid_1step")
    assert set(finals["trial_id"]) == set(expected.index)
    merged = finals.set_index("trial_id")["value"]
    np.testing.assert_allclose(merged.loc[expected.index], expected["value"])


def test_paper_table_has_every_arm_independent_means_and_best_in_bold(results):
    markdown = figures.paper_table(results, sweep_name="coupling_lr")
    finals = independent_finals(results, "fid_1step")
    means = finals.groupby("arm")["value"].mean()
    means2 = independent_finals(results, "fid_2step").groupby("arm")["value"].mean()
    lines = {line.split(" | ")[0].lstrip("| "): line for line in markdown.splitlines()
             if line.startswith("| coupling")}
    assert set(lines) == set(results["arm"])
    for arm, mean in means.items():
        assert f"{mean:.2f}" in lines[arm] and f"{means2[arm]:.2f}" in lines[arm]
        assert f"| {finals[finals['arm'] == arm].shape[0]} |" in lines[arm]
    assert f"**{means.min():.2f}**" in lines[means.idxmin()]
    assert f"**{means2.min():.2f}**" in lines[means2.idxmin()]
    assert "1 errored (left out)" in lines["coupling.name=ot,train.lr=0.0001"]
    assert "1 diverged (left out)" in lines["coupling.name=vc,train.lr=0.0004"]
    assert "1-step / 2-step FID" in markdown and "95% CI" in markdown and "digits-cnn" in markdown
    latex = figures.paper_table(results, fmt="latex")
    assert f"\\textbf{{{means.min():.2f}}}" in latex and "\\toprule" in latex
    assert "coupling.name=vc,train.lr=0.0004" in latex and "95\\% CI" in latex


def test_intervals_shrink_when_seeds_are_added():
    many = make_results(n_seeds=24, rng_seed=1)
    few = many[many["seed"] < 43]  # the same arms' first three seeds
    widths = [figures.final_table(frame).eval("fid_1step_high - fid_1step_low").mean()
              for frame in (few, many)]
    assert widths[1] < 0.7 * widths[0]
    assert (figures.final_table(many)["fid_1step_n"] == 24).all()
    bands = [figures.curve_summary(frame, "fid_1step").eval("high - low").mean()
             for frame in (few, many)]
    assert bands[1] < 0.7 * bands[0]


def test_curve_summary_means_match_groupby(results):
    summary = figures.curve_summary(results, "fid_1step", "step")
    completed = results[results["trial_id"].isin(independent_finals(results, "fid_1step").index)]
    expected = completed.dropna(subset=["fid_1step"]).groupby(["arm", "step"])["fid_1step"].mean()
    got = summary.set_index(["arm", "x"])["mean"]
    np.testing.assert_allclose(got.loc[expected.index], expected)
    wall = figures.curve_summary(results, "fid_1step", "wall_s")
    assert wall["x"].nunique() > 10 and wall["mean"].notna().all()
    with pytest.raises(ValueError, match="x must be one of"):
        figures.curve_summary(results, "fid_1step", "epoch")


def test_paired_differences_match_per_seed_differences(results):
    baseline = "coupling.name=independent,train.lr=0.0001"
    table = figures.paired_differences(results, "fid_1step", baseline).set_index("arm")
    by_seed = independent_finals(results, "fid_1step").pivot_table(index="seed", columns="arm",
                                                                   values="value")
    for arm in table.index:
        diff = (by_seed[arm] - by_seed[baseline]).dropna()
        assert table.at[arm, "pairs"] == len(diff)
        assert table.at[arm, "mean"] == pytest.approx(diff.mean())
        assert table.at[arm, "low"] <= diff.mean() <= table.at[arm, "high"]
    assert table.loc[table.index.str.contains("vc"), "high"].max() < 0  # vc clearly better
    with pytest.raises(ValueError, match="baseline arm 'nope'"):
        figures.paired_differences(results, "fid_1step", "nope")


def test_importance_ranks_the_parameter_that_matters(results):
    importances, evaluator = figures.param_importances(results, "fid_1step")
    assert evaluator == "FanovaImportanceEvaluator"
    assert importances["coupling.name"] > importances["train.lr"]
    assert sum(importances.values()) == pytest.approx(1.0)
    study = figures.study_from_results(results, "fid_1step")
    assert len(study.trials) == len(independent_finals(results, "fid_1step"))


def test_figures_are_labelled_and_saved_as_png_and_pdf(results, tmp_path):
    figs = {
        "curve": figures.plot_curves(results, "fid_1step", "images_seen", "my_sweep"),
        "gradvar": figures.plot_grad_variance(results, "my_sweep"),
        "final": figures.plot_final(results, "fid_1step", "my_sweep"),
        "paired": figures.plot_paired_differences(
            results, "fid_1step", "coupling.name=independent,train.lr=0.0001", "my_sweep"),
    }
    for stem, fig in figs.items():
        assert fig.get_suptitle().startswith("my_sweep:")
        assert all(ax.get_ylabel() for ax in fig.axes) and fig.axes[-1].get_xlabel()
        for path in figures.save_figure(fig, tmp_path, stem):
            assert path.stat().st_size > 1000
    legend = [t.get_text() for t in figs["curve"].legends[0].get_texts()]
    assert all(any(arm in text for text in legend) for arm in results["arm"].unique())
    assert any("failed" in text for text in legend)
    assert figs["curve"].axes[0].get_xlabel() == "training images seen"
    assert "EMA 0.9" in figs["gradvar"].axes[0].get_title()
    assert figs["gradvar"].axes[1].get_ylabel() == "FID, 1 step (lower is better)"


def test_make_report_marks_errored_and_diverged_trials(results, tmp_path):
    report = figures.make_report(results, tmp_path, "coupling_lr",
                                 baseline="coupling.name=independent,train.lr=0.0001")
    text = report.read_text()
    assert "**⚠ errored**" in text and "**⚠ diverged**" in text
    assert "1-step / 2-step FID" in text and "FanovaImportanceEvaluator" in text
    linked = [line.split("](")[1].rstrip(")") for line in text.splitlines()
              if line.startswith("![")]
    assert {"figures/grad_variance.png", "figures/curve_fid_1step_wall_s.png",
            "figures/curves_step.png", "figures/paired_fid_1step.png",
            "figures/importance_fid_1step.png"} <= set(linked)
    for link in linked:
        assert (tmp_path / link).exists() and (tmp_path / link).with_suffix(".pdf").exists()
    assert "\\begin{tabular}" in (tmp_path / "table.tex").read_text()


def test_make_report_on_a_running_sweep(tmp_path):
    df = make_results(n_seeds=2)
    partial = df[df["step"] <= 400].copy()
    partial.loc[partial["step"] == 400, "status"] = "running"
    report = figures.make_report(partial, tmp_path, "partial").read_text()
    assert "still running" in report and "Not available yet" in report  # no completed trial
    assert "| 2 | 2 running |" in report  # table rows: seeds averaged, notes


def test_make_report_before_the_first_evaluation(tmp_path):
    df = make_results(n_seeds=2)
    early = df[df["step"] <= 100].assign(status=None)  # no FID, no status file yet
    report = figures.make_report(early, tmp_path, "early").read_text()
    assert "12 running" in report and "still running" in report
    assert "curve_loss_step.png" in report and "1-step / 2-step" not in report
    assert "curve_loss_images_seen.png" not in report  # images seen = 128 x step: no new curve


def write_store(root: Path, df: pd.DataFrame) -> dict:
    """``df``'s rows into a results store under ``root``, one append per row, as trials write them;
    returns each trial's writer."""
    from ablate.results import TrialWriter

    writers = {}
    for row in df.drop(columns=["attempt", "model.channel_mult"]).to_dict("records"):
        trial_id = row.pop("trial_id")
        if trial_id not in writers:
            writers[trial_id] = TrialWriter(str(root), trial_id)
            writers[trial_id].begin_attempt(None)
        writers[trial_id].append([{k: (None if isinstance(v, float) and np.isnan(v) else v)
                                   for k, v in row.items()}])
    return writers


def test_a_running_sweep_is_read_from_its_store_and_its_report_says_how_far_it_got(tmp_path):
    import time

    from ablate.results import collect

    df = make_results(n_seeds=1)
    so_far = df[df["step"] <= df["trial_id"].map(lambda t: 300 if t == "t000" else 400)]
    writers = write_store(tmp_path, so_far)  # no results.parquet: the sweep is running
    rows = figures.load_results(tmp_path)
    assert sorted(zip(rows["trial_id"], rows["step"])) == sorted(zip(so_far["trial_id"], so_far["step"]))
    assert (rows["status"] == "running").all()

    report = figures.make_report(rows, tmp_path / "report", "running").read_text()
    header = report.split("## Trials")[0]
    assert "still running**: 6 of 6 trials, reported up to step 400" in header
    assert "`t000` 300" in header and "`t001` 400" in header

    time.sleep(0.05)  # file times order the store's writes and the collected file
    collect(str(tmp_path))  # current: read instead of the store (marked here to tell them apart)
    pd.read_parquet(tmp_path / "results.parquet").assign(marker=1).to_parquet(tmp_path / "results.parquet")
    assert "marker" in figures.load_results(tmp_path)
    time.sleep(0.05)
    writers["t000"].append([{"sweep": "coupling_lr", "seed": 40, "arm": rows["arm"].iloc[0], "step": 400,
                             "status": "running", "loss": 0.05}])  # the sweep went on: the store again
    rows = figures.load_results(tmp_path)
    assert "marker" not in rows and len(rows) == len(so_far) + 1


def test_the_report_of_a_running_sweep_reads_only_what_it_plots_and_says_the_same(tmp_path):
    """``ablate figures`` reads the store's bookkeeping, metrics and the swept keys sweep.json records; its
    report (text and tables) is the one made from every column, with the constant config left unread."""
    import json

    df = make_results(n_seeds=2, failures=True)
    write_store(tmp_path, df)
    (tmp_path / "sweep.json").write_text(json.dumps({"name": "coupling_lr",
                                                     "swept": ["coupling.name", "train.lr", "coupling.beta"]}))
    full = figures.load_results(tmp_path)
    plotted = figures.load_results(tmp_path, plotted_only=True)
    assert {"kernel.name", "train.seed"} <= set(full.columns)
    assert set(full.columns) - set(plotted.columns) == {"kernel.name", "train.seed"}
    texts = [figures.make_report(frame, tmp_path / name, "coupling_lr").read_text()
             for frame, name in ((full, "full"), (plotted, "plotted"))]
    assert texts[0] == texts[1] and "coupling.name" in texts[0]
    (tmp_path / "sweep.json").write_text(json.dumps({"name": "coupling_lr"}))  # before sweeps recorded it
    assert set(figures.load_results(tmp_path, plotted_only=True).columns) == set(full.columns)


def test_load_results_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.parquet"):
        figures.load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="other.parquet"):
        figures.load_results(tmp_path / "other.parquet")
    (tmp_path / "metrics").mkdir()
    with pytest.raises(ValueError, match="no trial has reported a row yet"):
        figures.load_results(tmp_path)
    pd.DataFrame({"trial_id": ["a"], "step": [1]}).to_parquet(tmp_path / "results.parquet")
    with pytest.raises(ValueError, match="missing column.*seed, arm, status"):
        figures.load_results(tmp_path)


@pytest.mark.skipif(not FIXTURE.exists(), reason="no quickstart sweep fixture yet")
def test_report_on_the_quickstart_fixture(tmp_path):
    df = figures.load_results(FIXTURE)
    report = figures.make_report(df, tmp_path, "quickstart")
    assert report.exists() and list((tmp_path / "figures").glob("*.png"))
    for arm in df["arm"].unique():
        assert str(arm) in report.read_text()
