"""Every row file of a trial carries the trial's full column set (design.md section 5), so the raw store
reads whole with tools that take their schema from one file: ``pandas.read_parquet(DIR)``, pyarrow
datasets and DuckDB. Checked for every coupling and objective, and for a sweep's store."""
from __future__ import annotations

import math

import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pytest

from ablate.data import describe_dataset
from ablate.train.columns import row_columns, trainer_columns
from ablate.train.config import build_config
from ablate.train.couplings import COUPLINGS
from ablate.trial import prepare_trial, run_trial
from toy import ablate_cli, cli_env, toy_space, write_space

TOY = {"data": {"name": "gmm2", "n_train": 512, "n_holdout": 128},
       "model": {"name": "mlp", "hidden": 32, "depth": 2, "time_dim": 16},
       "kernel": {"name": "li", "sigma_min": 0.002, "sigma_max": 0.1},
       "discretization": {"name": "ict", "s0": 10, "s1": 40},
       "train": {"iterations": 40, "batch_size": 64, "ema": [0.9], "device": "cpu"},
       "eval": {"every": 20, "steps": [1, 2], "mid_times": [0.05], "samples": 64},
       "log": {"report_every": 10, "diag_every": 20, "diag_microbatches": 4}}
GUIDE = {**TOY, "kernel": {"name": "fm"}, "discretization": {"name": "guide"},
         "eval": {**TOY["eval"], "mid_times": [0.5]}}
OBJECTIVES = {  # (trainer config, extra overrides): every coupling on the consistency loss, and each
    **{f"coupling-{name}": (TOY, {"coupling.name": name}) for name in COUPLINGS.names()},  # Guide loss
    "particle_l2": (GUIDE, {"distance.name": "particle_l2"}),
    "time_aware_mmd": (GUIDE, {"distance.name": "time_aware_mmd", "distance.group_size": 4}),
}


def read_raw(metrics_dir) -> dict[str, pd.DataFrame]:
    """The store's rows as three readers that know nothing of ablate see them."""
    return {"pandas": pd.read_parquet(metrics_dir),
            "pyarrow": pads.dataset(str(metrics_dir), format="parquet").to_table().to_pandas(),
            "duckdb": duckdb.sql(f"SELECT * FROM read_parquet('{metrics_dir}/*/*.parquet')").df()}


def same(a, b) -> bool:
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    return a == b or (isinstance(b, float) and math.isclose(a, b, rel_tol=1e-12))


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_logged_key_reads_back_with_plain_readers(name, tmp_path):
    base, overrides = OBJECTIVES[name]
    cfg = build_config(base, overrides)
    logged: list[dict] = []
    setup = prepare_trial(cfg, str(tmp_path))
    run_trial(setup, str(tmp_path), "t", on_report=lambda row, *_: logged.append(row))
    declared = row_columns(cfg, describe_dataset(cfg.data).kind, True, None)
    assert set(trainer_columns(cfg)) <= set(declared)
    for reader, frame in read_raw(tmp_path / "metrics").items():
        assert set(declared) <= set(frame.columns), (reader, set(declared) - set(frame.columns))
        frame = frame.set_index("step")
        for row in logged:
            for key, value in row.items():
                if value is None or key == "step":
                    continue
                got = frame.at[row["step"], key]
                assert same(got, value), (reader, row["step"], key, got, value)
        # the step-0 row comes before any training step: the coupling's logs are null there, not absent
        for key in COUPLINGS.get(cfg.coupling.name).logs:
            assert pd.isna(frame.at[0, key]) and frame[key].notna().sum() == len(logged) - 1, (reader, key)


@pytest.mark.slow
@pytest.mark.ray
def test_a_sweeps_raw_store_has_every_trials_columns(tmp_path, ray_tmp):
    """The first trial's files (independent coupling: no ``kl``, no ``coupling.beta``) still carry the
    columns the VC trial writes, so a reader taking its schema from that file loses nothing."""
    spec = toy_space("schema", {"coupling.name": {"grid": ["independent", "vc"]}}, iterations=40,
                     eval_every=20, report_every=10, base={"log": {"diag_every": 20, "diag_microbatches": 4}})
    path = write_space(tmp_path, spec)
    done = ablate_cli("run", str(path), "--out", str(tmp_path / "runs"), "--num-cpus", "2", "--quiet",
                      env=cli_env(RAY_TMPDIR=ray_tmp))
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "runs" / "schema"
    collected = pd.read_parquet(sweep / "results.parquet")
    for reader, frame in read_raw(sweep / "metrics").items():
        assert set(collected.columns) <= set(frame.columns), (reader, set(collected.columns) - set(frame.columns))
        vc = frame[frame["coupling.name"] == "vc"]
        assert vc["kl"].notna().sum() == 4 and (vc["coupling.beta"] == 30.0).all(), reader
        assert frame.loc[frame["coupling.name"] == "independent", "kl"].isna().all(), reader
        assert vc["grad_var"].notna().sum() == 3 and frame["w2_1step"].notna().sum() == 6, reader
