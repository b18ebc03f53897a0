"""The checks that need the whole spec: the searcher fits the space, and every point (grid values,
or both bounds of a range) of every variant builds a config that passes the trainer's start-up rules
with the tune metric; a problem is blamed on the override that set its key."""
from __future__ import annotations

from ablate.train.config import apply_overrides, flatten

from .model import CONTINUOUS, SweepSpec


Origin = tuple[str, str]  # (label for errors, dotted key) of an override, in application order


class _Probe:
    """Whole-spec checks of :class:`ablate.spec.builder._Builder` (a mixin: it uses the builder's
    ``add``, ``_build`` and ``_attribute``)."""

    def _searcher_fits(self, spec: SweepSpec) -> None:
        searcher = spec.tune.searcher
        if searcher.name == "grid":
            for key, param in spec.space.items():
                if param.kind in CONTINUOUS:
                    self.add(f"space.{key}.{param.kind}", "the grid searcher cannot enumerate a "
                             "continuous distribution; use tune.searcher random or optuna, or "
                             "list grid values")
        if searcher.name == "optuna":
            if len(spec.seeds) > 1:
                self.add("seeds", "the optuna searcher is adaptive and runs one trial per point: "
                         "give one seed (replicate the best points with a grid sweep)")
            if spec.variants:
                self.add("variants", "the optuna searcher is adaptive and runs one trial per "
                         "point: compare variants with the grid or random searcher")

    # ---- every point (or distribution bound) x variant builds a config that can start
    def _probe(self, spec: SweepSpec) -> None:
        """Build every point (grid values, or both bounds of a range) of every variant and apply the
        trainer's start-up rules (:func:`ablate.train.checks.problems`) with the tune metric to it."""
        from ablate.data import describe_dataset
        from ablate.train.checks import problems
        from ablate.train.registry import UnknownChoiceError

        seen: set[str] = set()
        for params, variant in spec.probe_points():
            origins = _override_origins(spec) + \
                [(f"variants.{variant}.{k}", k) for k in spec.variants.get(variant, {})]
            raw = apply_overrides(spec.base, spec.variants[variant] if variant else {})
            seen.update(params)
            context = ", ".join([f"profile {spec.profile}"] * bool(spec.profile) +
                                [f"variant {variant}"] * bool(variant) +
                                [f"{k}={v!r}" for k, v in params.items()])
            context = f" (at {context})" if context else ""
            labels = origins + [(f"space.{k}", k) for k in params]
            cfg = self._build(raw, params, labels, "base", context)
            if cfg is None:
                continue
            flat = flatten(cfg)
            for key, value in params.items():
                if spec.space[key].kind in CONTINUOUS and isinstance(flat[key], int):
                    self.add(f"space.{key}", f"{spec.space[key].kind} draws floats but {key} "
                                             "is an integer; use an int distribution")
            try:
                dataset = describe_dataset(cfg.data)
            except UnknownChoiceError as err:
                self._report(("data.name",), str(err), labels, context)
                dataset = None
            for problem in problems(cfg, dataset, spec.tune.metric):
                self._report(problem.keys, problem.message, labels, context)
        for key, param in spec.space.items():
            if key not in seen:
                self.add(f"space.{key}.when", f"never holds: {param.when} is not met at any point")

    def _report(self, keys: tuple[str, ...], message: str, origins: list[Origin], context: str) -> None:
        """A start-up problem, blamed on the most specific place that set one of its keys (the space
        over a variant over --set over a profile over base); once per place and cause."""
        where = self._blame(keys, origins)
        if (where, message) not in self.reported:
            self.reported.add((where, message))
            self.add(where, message + context)

    def _blame(self, keys: tuple[str, ...], origins: list[Origin]) -> str:
        """The label of the latest override that set any of ``keys`` (``base.KEY`` of the first key
        when none did; ``tune.*`` keys live outside base)."""
        latest, culprit = -1, keys[0]
        for key in keys:
            for index, (_, origin) in enumerate(origins):
                if index > latest and (origin == key or origin.startswith(key + ".")
                                       or key.startswith(origin + ".")):
                    latest, culprit = index, key
        return self._attribute(culprit, origins, "" if culprit.startswith("tune.") else "base")


def _override_origins(spec: SweepSpec) -> list[Origin]:
    """Where the profile's and --set's keys come from, in the order they are applied."""
    origins = [(f"profiles.{spec.profile}.{k}", k) for k in spec.profiles.get(spec.profile, {})]
    return origins + [(f"--set {k}", k) for k in spec.overrides]
