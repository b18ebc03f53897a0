"""Paths as users type them: relative, from the directory they work in. Ray Tune runs each trial in a
working directory of its own, so every location must be absolute before it reaches a trial."""
from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from ablate.spec import load_spec
from ablate.storage import absolute
from toy import ablate_cli, cli_env


def test_absolute_keeps_uris_and_home_paths_and_anchors_the_rest(tmp_path):
    assert absolute("runs", str(tmp_path)) == str(tmp_path / "runs")
    assert absolute("../x/./y", str(tmp_path / "a")) == str(tmp_path / "x" / "y")
    assert absolute("s3://bucket/sweeps") == "s3://bucket/sweeps"
    assert absolute("file:///data/x") == "file:///data/x"
    assert absolute("~/.cache/ablate") == "~/.cache/ablate"  # the same place on every node
    assert absolute(str(tmp_path)) == str(tmp_path)


def test_config_paths_resolve_against_the_directory_the_sweep_started_from(tmp_path, monkeypatch):
    space = {"name": "p", "base": {"data": {"name": "folder", "root": "imgs", "image_size": 8},
                                   "model": {"name": "unet", "channels": 8, "channel_mult": [1]},
                                   "eval": {"cache_dir": "cache", "fid_weights": "w/inception.pth"}},
             "tune": {"metric": "fid_1step", "mode": "min"}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(space))
    monkeypatch.chdir(tmp_path)
    spec = load_spec("p.yaml")
    monkeypatch.chdir("/")  # a trial's working directory is not the user's
    cfg = spec.config_for({}, None, 0)
    assert (cfg.data.root, cfg.eval.cache_dir, cfg.eval.fid_weights) == \
        (str(tmp_path / "imgs"), str(tmp_path / "cache"), str(tmp_path / "w" / "inception.pth"))


def write_image_folder(root: Path, per_class: int = 12) -> None:
    rng = random.Random(0)
    for label, base in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            color = tuple(min(255, max(0, c + rng.randint(-30, 30))) for c in base)
            Image.new("RGB", (8, 8), color).save(root / label / f"{i}.png")


@pytest.mark.slow
@pytest.mark.ray
def test_a_sweep_over_a_relative_image_folder_with_relative_paths_everywhere(tmp_path, ray_tmp):
    write_image_folder(tmp_path / "imgs")
    space = {
        "name": "folder",
        "base": {"data": {"name": "folder", "root": "imgs", "image_size": 8, "class_conditional": True},
                 "model": {"name": "unet", "channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
                           "dropout": 0.0},
                 "train": {"iterations": 20, "batch_size": 8, "device": "cpu", "ema": [0.9]},
                 "eval": {"every": 10, "steps": [1], "samples": 16, "extractor": "ablate-cnn",
                          "cache_dir": "cache"},
                 "log": {"report_every": 10}},
        "space": {"train.lr": {"grid": [1.0e-4, 2.0e-4]}},
        "seeds": [0],
        "tune": {"metric": "fid_1step", "mode": "min", "max_concurrent": 2, "resources": {"cpu": 1}},
    }
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "folder.yaml").write_text(yaml.safe_dump(space))
    env = cli_env(RAY_TMPDIR=ray_tmp)

    done = ablate_cli("run", "spaces/folder.yaml", "--num-cpus", "2", "--quiet", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = pd.read_parquet(tmp_path / "runs" / "folder" / "results.parquet")
    assert sorted(results.groupby("trial_id")["step"].max()) == [20, 20]
    assert results["fid_1step"].notna().sum() == 6
    assert set(results["data.root"]) == {str(tmp_path / "imgs")}
    assert list((tmp_path / "cache" / "extractors").glob("*.pt")), "the extractor cache is not where asked"
    strays = [p for p in Path(ray_tmp).rglob("*") if p.name in ("runs", "cache", "metrics")]
    assert not strays, f"trials wrote into Ray's directories: {strays}"

    for command in (["status", "runs/folder"], ["collect", "runs/folder", "-o", "out/all.parquet"],
                    ["figures", "runs/folder", "-o", "out/report"]):
        done = ablate_cli(*command, cwd=tmp_path, env=env)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert len(pd.read_parquet(tmp_path / "out" / "all.parquet")) == len(results)
    assert (tmp_path / "out" / "report" / "report.md").exists()
