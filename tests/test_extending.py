"""The README's *Extending ablate* example, run as written: the coupling module and the import line are
read from README.md, written into a copy of the package, and the new coupling must be registered,
validated, trained one step by the CLI-free trainer, and picked up by the shared axis test
(``tests/test_axes.py``) without any other edit. Editing the example so that it breaks fails here."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_PATH = "ablate/train/couplings/sliced.py"


def example() -> tuple[str, str]:
    """(module source, import line) of the README section, the first two ```python blocks after the
    module's path."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Extending ablate", 1)[1].split("\n## ", 1)[0]
    after_path = section.split(f"`{MODULE_PATH}`", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", after_path, flags=re.S)
    assert len(blocks) >= 2, "the README example needs the module and the import line as python blocks"
    return blocks[0], blocks[1]


def test_the_example_is_one_module_and_one_import_line():
    module, import_line = example()
    assert 'Literal["sliced"]' in module and "@COUPLINGS.register(SlicedOptions)" in module
    assert [line for line in import_line.splitlines() if line.strip()] == \
        ['from . import sliced  # noqa: E402,F401  (registers "sliced")']


CHECK = r'''
import math
from ablate.data import load_dataset
from ablate.train.config import ConfigError, build_config
from ablate.train.couplings import COUPLINGS
from ablate.train.couplings.sliced import SlicedCoupling, SlicedOptions
from ablate.train.trainer import Trainer

assert COUPLINGS.get("sliced") is SlicedCoupling and COUPLINGS.entry("sliced").options is SlicedOptions
try:
    build_config({"coupling": {"name": "sliced", "projection": "diagonal"}})
except ConfigError as err:
    assert "coupling.projection" in str(err) and "first_axis" in str(err), err
else:
    raise AssertionError("an unknown projection validated")
cfg = build_config({"coupling": {"name": "sliced", "projection": "first_axis"},
                    "data": {"n_train": 256, "n_holdout": 64}, "model": {"hidden": 16, "depth": 2},
                    "train": {"iterations": 1, "batch_size": 32, "device": "cpu"}, "eval": {"every": 10 ** 6}})
trainer = Trainer(cfg, load_dataset(cfg.data, cfg.train.seed))
x0, _ = trainer._batch()
x1 = trainer.data.noise(x0.shape[0], trainer.device)
pair = trainer.coupling.pair(x0, x1, None)
assert sorted(pair.x1[:, 0].tolist()) == sorted(x1[:, 0].tolist())  # the batch's noise, re-paired
assert (pair.x1[:, 0][x0[:, 0].argsort()].diff() >= 0).all()  # sorted with the data on the axis
trainer.train_step()
assert trainer.step == 1 and math.isfinite(trainer._loss_sum.item())
print("sliced ok")
'''


@pytest.fixture(scope="module")
def extended(tmp_path_factory) -> Path:
    """A copy of the package and the tests with the README's module and import line added."""
    root = tmp_path_factory.mktemp("extended")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "ablate", root / "ablate", ignore=ignore)
    shutil.copytree(ROOT / "tests", root / "tests", ignore=ignore)
    module, import_line = example()
    (root / MODULE_PATH).write_text(module)
    init = root / "ablate/train/couplings/__init__.py"
    init.write_text(init.read_text() + import_line)
    return root


def _run(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_example_coupling_registers_validates_and_trains(extended):
    done = _run(extended, "-c", CHECK)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sliced ok" in done.stdout


def test_the_shared_axis_test_picks_the_example_up(extended):
    done = _run(extended, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_axes.py",
                "-k", "coupling-sliced")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout
