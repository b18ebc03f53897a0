"""The search-space file (design.md section 4): parse, validate, apply a profile and --set, expand.

A file names a ``base`` trainer config, a ``space`` of dotted keys with distributions, named
``variants`` (arms: sets of overrides, crossed with the space), ``seeds`` (replicates) and a ``tune``
block. Everything is validated before any trial starts, and every error names the file, the key path
and what is allowed. Every point the sweep can produce (every grid and choice value, both ends of each
numeric range, every variant, under every profile and without one) is built and checked against the
trainer's start-up rules (:mod:`ablate.train.checks`, which every trial applies too) and against the
metrics its trials report, so a file that validates does not fail at start-up. This module never
imports ray: it yields neutral descriptions (:class:`Point`, :class:`TuneSpec`,
:meth:`SweepSpec.suggest`) that ``ablate.sweep`` turns into Ray Tune objects.

Distributions: ``{grid: [..]}``, ``{choice: [..]}``, ``{uniform: [low, high]}``,
``{loguniform: [low, high]}``, ``{int: [low, high], step: s}``; any may carry
``when: {other.key: value or [values]}`` (active only where every listed key takes a listed value).

Searchers and replicates:

- ``grid``: the cross product of every ``grid``, ``choice`` and ``int`` parameter (conditional ones
  only where active) x variants x seeds. Continuous distributions are an error.
- ``random``: ``num_samples`` points drawn with ``searcher.seed`` (so a resumed sweep draws the same
  points; ``grid`` and ``choice`` are sampled like categorical choices), each run for every variant
  and every seed: arms and replicates stay paired on identical hyperparameters.
- ``optuna``: adaptive, one trial per proposed point (:meth:`SweepSpec.suggest`). Replicates and arms
  need a fixed design, so ``optuna`` takes a single seed and no variants: tune first, then compare
  arms with a ``grid`` sweep over the values found.

Overrides (``profiles.NAME`` and ``--set``, the latter applied after the profile) are dotted keys:
``seeds`` replaces the seeds, ``tune.KEY`` replaces that entry of the tune block, any other key
overrides ``base`` (through :func:`ablate.train.config.apply_overrides`). A swept key's value comes
from the space; precedence per trial is base < profile < --set < variant < space < seed.

The package is split along its jobs: :mod:`.model` (the spec, its tune block and its expansion into
points), :mod:`.load` (reading files and ``--set``), :mod:`.builder` (profiles, overrides, base, space,
variants), :mod:`.probe` (every point against the start-up rules) and :mod:`.messages` (wording).
"""
from __future__ import annotations

from .load import load_spec, parse_set_args
from .model import (CONTINUOUS, DISCRETE, DISTRIBUTIONS, TOP_KEYS, AshaScheduler, FifoScheduler,
                    GridSearcher, MedianScheduler, OptunaSearcher, Param, Point, RandomSearcher, Resources,
                    SpecError, Suggester, SweepSpec, TuneSpec, make_point, point_key)

__all__ = ["CONTINUOUS", "DISCRETE", "DISTRIBUTIONS", "TOP_KEYS", "AshaScheduler", "FifoScheduler",
           "GridSearcher", "MedianScheduler", "OptunaSearcher", "Param", "Point", "RandomSearcher",
           "Resources", "SpecError", "Suggester", "SweepSpec", "TuneSpec", "load_spec", "make_point",
           "parse_set_args", "point_key"]
