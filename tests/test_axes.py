"""One test over every registered choice of every axis (as optuna's shared sampler tests run over every
sampler): a choice is covered by being registered.

For each registry entry: its options build from their defaults; validation accepts them, and every
value of each of its ``Literal`` options (kernels share one options class: ``unshifted`` scalings only
where the kernel has them); with the other axes at the first of a few base contexts in
which the start-up rules (``ablate.train.checks``) accept it, the trainer builds it, takes two
training steps with a finite loss, and its report row carries exactly the columns declared for it.
"""
from __future__ import annotations

import math
import typing

import pytest
import torch

from ablate.data import describe_dataset, load_dataset
from ablate.train.checks import problems
from ablate.train.config import AXES, ConfigError, build_config
from ablate.train.kernels import KERNELS, KernelConfig
from ablate.train.trainer import Trainer

torch.set_num_threads(1)

SMALL = {"data": {"name": "gmm2", "n_train": 256, "n_holdout": 64},
         "model": {"name": "mlp", "hidden": 16, "depth": 2, "time_dim": 8},
         "train": {"iterations": 2, "batch_size": 32, "device": "cpu", "ema": [0.9]},
         "eval": {"every": 10 ** 6}, "log": {"report_every": 1}}
#: the other axes' settings tried in order; the first the start-up rules accept is trained
CONTEXTS = (
    {},
    {"kernel": {"name": "fm"}, "discretization": {"name": "ect"}},
    {"kernel": {"name": "fm"}, "discretization": {"name": "guide"}, "time_sampling": {"name": "uniform"}},
)
#: images for the image networks (the model axis is the data's axis too)
IMAGES = {"data": {"name": "digits", "n_holdout": 64}}

ENTRIES = [(section, entry.name, entry.options) for section, registry in AXES.items()
           for entry in registry.entries()] + \
          [("kernel", name, None) for name in (e.name for e in KERNELS.entries())]


def _options(section: str, name: str, options) -> dict:
    """The entry's options from their defaults, as a config section."""
    built = KernelConfig(name=name) if section == "kernel" else options()
    assert built.name == name
    values = built.model_dump()
    return {k: v for k, v in values.items() if k not in ("sigma_min", "sigma_max")} if section == "kernel" \
        else values


def _literal_values(options) -> dict[str, tuple]:
    """The ``Literal`` options of a class but its name: each value is a documented choice."""
    out = {}
    for key, field in options.model_fields.items():
        annotation = field.annotation
        members = [a for a in typing.get_args(annotation) if a is not type(None)] \
            if typing.get_origin(annotation) is typing.Union else [annotation]
        for member in members:
            if typing.get_origin(member) is typing.Literal and key != "name":
                out[key] = typing.get_args(member)
    return out


def _runnable(section: str, section_options: dict):
    """The first context in which the start-up rules accept the entry (config, dataset)."""
    found = []
    for context in CONTEXTS:
        raw = {**SMALL, **context, section: section_options}
        if section == "model" and section_options["name"] != "mlp":
            raw.update(IMAGES)
        cfg = build_config(raw, source=f"{section}={section_options['name']}")
        dataset = describe_dataset(cfg.data)
        broken = problems(cfg, dataset)
        if not broken:
            return cfg
        found.append([p.message for p in broken])
    pytest.fail(f"{section}.name={section_options['name']!r} runs in none of the base contexts: {found}")


@pytest.mark.parametrize("section, name, options", ENTRIES, ids=[f"{s}-{n}" for s, n, _ in ENTRIES])
def test_every_registered_choice_validates_and_trains(section, name, options):
    section_options = _options(section, name, options)
    for key, values in _literal_values(type(KernelConfig(name=name)) if options is None else options).items():
        for value in values:
            if section == "kernel" and value == "unshifted" and not KERNELS.get(name).has_unshifted:
                with pytest.raises(ConfigError, match="train_scalings='unshifted'"):  # a kernel fact
                    build_config({section: {**section_options, key: value}})
                continue
            cfg = build_config({section: {**section_options, key: value}}, source=f"{section}.{key}")
            assert getattr(getattr(cfg, section), key) == value
    cfg = _runnable(section, section_options)
    assert getattr(cfg, section).name == name
    trainer = Trainer(cfg, load_dataset(cfg.data, cfg.train.seed))
    losses = []
    for _ in range(2):
        loss, _ = trainer.loss_terms()
        losses.append(loss.item())
        trainer.train_step()
    assert all(math.isfinite(v) for v in losses), losses
    row = trainer._report_row()
    assert set(row) == set(trainer.columns)
    assert row["status"] == "running"
