"""Sweep directories addressed by pyarrow filesystem URIs: ``ablate run --out URI`` writes the store
and Tune's experiment there, and ``ablate status`` / ``collect`` / ``figures`` read the same URI.

There is no object store here, so the URIs are the local ones pyarrow understands: ``file://`` and
``local://``, with a percent-escaped space so that a URI handled as a plain string breaks. A
``local://`` sweep takes the same code path as ``s3://`` (it is not a ``file://`` URI): Ray Tune gets
the URI as its ``storage_path`` and the trials write rows and sample pictures through it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ablate.cli import main
from ablate.results import TrialWriter
from ablate.spec import load_spec
from ablate.storage import local_path
from ablate.progress import SPEC_FILE, SWEEP_FILE
from ablate.sweep_trial import point_columns
from ablate.trial import prepare_trial, run_trial
from toy import ROOT, ablate_cli, cli_env, toy_space, write_space

TINY_SPACE = toy_space("tiny_store", {"weighting.name": {"grid": ["inv_dt", "edm"]}})


def uri_forms(directory: Path) -> dict[str, str]:
    """The same local directory as a ``file://`` and a ``local://`` URI (spaces percent-escaped)."""
    return {"file": directory.as_uri(), "local": "local://" + directory.as_uri()[len("file://"):]}


def check_readers(sweep_uri: str, sweep_dir: Path, trial_ids: set[str], capsys) -> None:
    """status, collect and figures through ``sweep_uri`` all read the store at ``sweep_dir``."""
    assert main(["status", sweep_uri]) == 0
    table = capsys.readouterr().out
    assert all(trial in table for trial in trial_ids) and "completed" in table

    (sweep_dir / "results.parquet").unlink(missing_ok=True)
    assert main(["collect", sweep_uri]) == 0
    assert capsys.readouterr().out.strip() == f"{sweep_uri.rstrip('/')}/results.parquet"
    rows = pd.read_parquet(sweep_dir / "results.parquet")
    assert set(rows["trial_id"]) == trial_ids
    assert not rows.duplicated(["trial_id", "step"]).any()

    assert main(["figures", sweep_uri]) == 0
    report = Path(capsys.readouterr().out.strip())
    assert report == sweep_dir / "report" / "report.md" and report.is_file()
    assert "weighting.name" in report.read_text()


@pytest.fixture(scope="module")
def sweep_without_ray(tmp_path_factory) -> tuple[Path, set[str]]:
    """A sweep directory written as a sweep writes it (record, spec copy, store rows through a
    ``file://`` URI), with the trials run in-process instead of by Ray."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    space = write_space(tmp_path, TINY_SPACE)
    overrides = {"train.iterations": 50}  # one evaluation row and the final one per trial
    spec = load_spec(space, overrides=overrides)
    sweep_dir = tmp_path / "remote store" / "tiny_store"
    sweep_uri = sweep_dir.as_uri()
    trial_ids = set()
    for point in spec.points():
        cfg = spec.config_for(point.params, point.variant, point.seed)
        setup = prepare_trial(cfg, None, point_columns(point, spec))
        run_trial(setup, sweep_uri, point.trial_name)
        trial_ids.add(point.trial_name)
    shutil.copyfile(space, sweep_dir / SPEC_FILE)
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(
        {"name": spec.name, "source": str(space), "profile": None, "overrides": overrides}))
    return sweep_dir, trial_ids


def test_status_shows_errors_only_where_there_are_some(sweep_without_ray, tmp_path, capsys):
    """Completed trials get no error line; a trial that failed before its first row shows no step
    and its error's last line."""
    sweep_dir = tmp_path / "copy"
    shutil.copytree(sweep_without_ray[0], sweep_dir)
    early = TrialWriter(str(sweep_dir), "failed_at_start")
    early.begin_attempt(None)
    early.set_status("errored", error="Traceback ...\nValueError: no such file: data.root")
    assert main(["status", str(sweep_dir)]) == 0
    table = capsys.readouterr().out
    assert table.count("error:") == 1 and "error: ValueError: no such file: data.root" in table
    failed = next(line for line in table.splitlines() if line.startswith("failed_at_start"))
    assert failed.split()[1] == "-/50" and "errored" in failed
    assert "nan" not in table.lower() and "<NA>" not in table


def test_status_does_not_load_the_evaluation_stack(sweep_without_ray):
    """The sweep driver and ``ablate status`` never train or evaluate: the trial and evaluation code,
    POT (which loads scikit-learn and scipy.stats) and torchvision are imported only inside trial
    workers. (torch itself is: validating a config consults the kernel registry.)"""
    code = ("import contextlib, io, json, sys\nfrom ablate.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['status', {str(sweep_without_ray[0])!r}]) == 0\n"
            "print(json.dumps(sorted(set(sys.modules) & "
            "{'ablate.trial', 'ablate.evaluation', 'ot', 'sklearn', 'torchvision'})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_local_path_decodes_file_uris():
    assert local_path("file:///tmp/remote%20store/x") == "/tmp/remote store/x"
    assert local_path("runs/x") == os.path.abspath("runs/x")


def test_store_written_through_a_file_uri_lands_at_the_decoded_path(sweep_without_ray):
    sweep_dir, trial_ids = sweep_without_ray
    assert {p.name for p in (sweep_dir / "metrics").iterdir()} == trial_ids
    assert not any("%20" in str(p) for p in sweep_dir.parent.parent.rglob("*"))


@pytest.mark.parametrize("form", ["file", "local"])
def test_status_collect_figures_read_the_sweep_uri(sweep_without_ray, form, tmp_path, monkeypatch, capsys):
    sweep_dir, trial_ids = sweep_without_ray
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    check_readers(uri_forms(sweep_dir)[form], sweep_dir, trial_ids, capsys)
    assert not any(cwd.iterdir())  # nothing written relative to the working directory


@pytest.mark.ray
@pytest.mark.slow
def test_run_to_a_uri_store_then_read_it_back(tmp_path, ray_tmp, monkeypatch, capsys):
    """``ablate run --out local:///...``: the non-``file://`` path, as for an object store."""
    space = write_space(tmp_path, TINY_SPACE)
    store = tmp_path / "remote store"
    out_uri = uri_forms(store)["local"]
    cwd = tmp_path / "driver"
    cwd.mkdir()
    done = ablate_cli("run", str(space), "--out", out_uri, "--num-cpus", "2", "--quiet", cwd=cwd,
                      env=cli_env(RAY_TMPDIR=ray_tmp))
    assert done.returncode == 0, done.stderr[-4000:]
    sweep_dir = store / "tiny_store"
    assert f"results: {out_uri}/tiny_store/results.parquet" in done.stdout

    rows = pd.read_parquet(sweep_dir / "results.parquet")
    trial_ids = set(rows["trial_id"])
    assert len(trial_ids) == 2
    assert (rows.groupby("trial_id")["status"].last() == "completed").all()
    # Tune's experiment state and every picture the rows name went to the URI, not to the driver's
    # disk (the two trials may share one reused actor: the second one's pictures must land too)
    assert list((sweep_dir / "tune").glob("experiment_state-*.json"))
    pictures = rows["samples_png"].dropna()
    assert len(pictures) == 2 * 3 and pictures.str.startswith("samples/").all()
    assert all((sweep_dir / picture).is_file() for picture in pictures)
    assert not any(cwd.iterdir())

    monkeypatch.chdir(cwd)
    for uri in uri_forms(sweep_dir).values():
        check_readers(uri, sweep_dir, trial_ids, capsys)
