"""Validating a parsed file into a :class:`SweepSpec`: profiles and ``--set`` overrides applied in
order, the base config, tune block, seeds, space, ``when`` conditions and variants; every problem of a
stage collected before raising."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from ablate.train.config import Config, ConfigError, apply_overrides, build_config, flatten

from .messages import (_did_you_mean, _is_dotted, _is_number, _pydantic_problems, _split_problem,
                       _unknown_key_message)
from .model import (CONTINUOUS, DISTRIBUTIONS, Param, SAFE_NAME, SpecError, SweepSpec, TOP_KEYS, TuneSpec,
                    _named)
from .probe import Origin, _Probe, _override_origins


class _Builder(_Probe):
    """Validates one file; collects every problem of a stage before raising."""

    def __init__(self, file: str, text: str):
        self.file, self.text = file, text
        self.problems: list[tuple[str, str]] = []
        self.reported: set[tuple[str, str]] = set()

    def add(self, key: str, msg: str) -> None:
        if (key, msg) not in self.problems:
            self.problems.append((key, msg))

    def check(self) -> None:
        if self.problems:
            raise SpecError(self.file, self.problems)

    # ---- top level
    def build(self, raw: Any, profile: str | None, set_items: dict[str, Any]) -> SweepSpec:
        if not isinstance(raw, Mapping):
            got = "an empty file" if raw is None else type(raw).__name__
            raise SpecError(self.file, [("<root>", f"expected a mapping with keys "
                                                   f"{', '.join(TOP_KEYS)}; got {got}")])
        for key in raw:
            if key not in TOP_KEYS:
                self.add(str(key), f"unknown key{_did_you_mean(key, TOP_KEYS)}; "
                                   f"allowed: {', '.join(TOP_KEYS)}")
        for key in ("base", "tune"):
            if key not in raw:
                self.add(key, "required")
            elif not isinstance(raw[key], Mapping):
                self.add(key, f"expected a mapping, got {type(raw[key]).__name__}")
        name = raw.get("name", Path(self.file).stem)
        if not isinstance(name, str) or not SAFE_NAME.match(name):
            self.add("name", f"expected a name of letters, digits, '_', '.', '-', got {name!r}")
        description = raw.get("description") or ""
        if not isinstance(description, str):
            self.add("description", f"expected text, got {type(description).__name__}")
        profiles = self._mappings(raw.get("profiles"), "profiles")
        variants = self._mappings(raw.get("variants"), "variants")
        self.check()
        if profile is not None and profile not in profiles:
            valid = ", ".join(profiles) or "none (the file has no profiles)"
            raise SpecError(self.file, [("--profile", f"unknown profile {profile!r}; valid: {valid}")])

        for other in [None, *profiles]:  # every profile must run, chosen or not (and the file without)
            if other != profile:
                try:
                    _Builder(self.file, self.text)._sweep(raw, name, description, profiles, variants,
                                                          other, {})
                except SpecError as err:
                    for key, msg in err.problems:
                        self.add(key, msg)
        self.check()
        return self._sweep(raw, name, description, profiles, variants, profile, set_items)

    def _sweep(self, raw: Mapping[str, Any], name: str, description: str,
               profiles: dict[str, dict[str, Any]], variants: dict[str, dict[str, Any]],
               profile: str | None, set_items: dict[str, Any]) -> SweepSpec:
        """The spec under one profile (None: none) and --set, checked down to every point."""
        sources = [(f"profiles.{profile}", profiles[profile])] if profile is not None else []
        sources.append(("--set", set_items))
        base, base_cfg, tune, seeds = self._apply(raw, sources)
        self.check()

        space = self._space(raw.get("space"))
        self.check()
        spec = SweepSpec(name=name, description=description, source=self.file,
                         sha256=hashlib.sha256(self.text.encode()).hexdigest(), base=base,
                         space=space, variants=variants, seeds=seeds, tune=tune,
                         profiles=profiles, profile=profile, overrides=set_items)
        spec._variant_flat[None] = flatten(base_cfg)
        self._variants(spec)
        self.check()
        spec.space = self._order(spec)
        self._searcher_fits(spec)
        self.check()
        self._probe(spec)
        self.check()
        return spec

    def _mappings(self, value: Any, where: str) -> dict[str, dict[str, Any]]:
        """``profiles`` / ``variants``: named mappings of dotted keys (a null entry is empty)."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(where, f"expected a mapping of names to overrides, got {type(value).__name__}")
            return {}
        out = {}
        for name, overrides in value.items():
            overrides = {} if overrides is None else overrides
            if not isinstance(name, str) or not SAFE_NAME.match(name):
                self.add(f"{where}.{name}", "names use letters, digits, '_', '.', '-'")
            elif not isinstance(overrides, Mapping):
                self.add(f"{where}.{name}", "expected a mapping of dotted keys to values, "
                                            f"got {type(overrides).__name__}")
            else:
                for key in overrides:
                    if not _is_dotted(key):
                        self.add(f"{where}.{name}.{key}", "expected a dotted key such as data.name")
                out[name] = dict(overrides)
        return out

    # ---- overrides: profile then --set
    def _apply(self, raw: Mapping[str, Any], sources: list[tuple[str, Mapping[str, Any]]]
               ) -> tuple[dict, Config | None, TuneSpec | None, list[int]]:
        """Route each override to base / tune / seeds, then validate base, tune and seeds."""
        base_overrides, tune_overrides, origins = {}, {}, []
        seeds_raw, seeds_label = raw.get("seeds"), "seeds"
        for label, overrides in sources:
            for key, value in overrides.items():
                where = f"{label} {key}" if label == "--set" else f"{label}.{key}"
                head = key.split(".")[0]
                if key == "seeds":
                    seeds_raw, seeds_label = value, where
                elif head == "tune" and key != "tune":
                    tune_overrides[key[len("tune."):]] = value
                elif head in TOP_KEYS:
                    self.add(where, "cannot be overridden; a profile or --set overrides trainer "
                                    "keys (data.name), tune.KEY or seeds")
                else:
                    base_overrides[key] = value
                origins.append((where, key))
        base = apply_overrides(raw["base"], {})
        base_cfg = self._build(base, base_overrides, origins, "base")
        base = apply_overrides(base, base_overrides)
        tune = self._tune(raw["tune"], tune_overrides, origins)
        seeds = self._seeds(seeds_raw, seeds_label, base_cfg)
        return base, base_cfg, tune, seeds

    def _attribute(self, path: str, origins: list[Origin], default: str) -> str:
        """The label of the last override that set ``path`` (or a parent/child of it)."""
        for label, key in reversed(origins):
            if key == path or key.startswith(path + "."):
                return label
            if path.startswith(key + "."):
                return label + path[len(key):]
        return f"{default}.{path}" if default else path

    def _build(self, raw: Mapping[str, Any], overrides: Mapping[str, Any], origins: list[Origin],
               default: str, context: str = "") -> Config | None:
        """build_config, with each problem attributed to the key that caused it."""
        try:
            merged = apply_overrides(raw, overrides)
            return build_config(merged, source=self.file)
        except ConfigError as err:
            for line in err.problems:
                path, msg = _split_problem(line)
                if msg == "unknown key":
                    msg = _unknown_key_message(path, merged)
                where = self._attribute(path, origins, default)
                if (where, msg) not in self.reported:  # once per key and cause, at its first point
                    self.reported.add((where, msg))
                    self.add(where, msg + context)
            return None

    def _tune(self, raw: Mapping[str, Any], overrides: Mapping[str, Any],
              origins: list[Origin]) -> TuneSpec | None:
        raw = {k: _named(v) if k in ("scheduler", "searcher") else v for k, v in raw.items()}
        try:
            merged = apply_overrides(raw, overrides)
            tune = TuneSpec.model_validate(merged)
        except ConfigError as err:
            for line in err.problems:
                path, msg = _split_problem(line)
                self.add(self._attribute(f"tune.{path}", origins, ""), msg)
            return None
        except ValidationError as err:
            for path, msg in _pydantic_problems(err, "tune"):
                self.add(self._attribute(path, origins, ""), msg)
            return None
        return tune  # its metric is checked against what the trials report, at every point

    def _seeds(self, value: Any, where: str, base_cfg: Config | None) -> list[int]:
        if value is None:
            return [base_cfg.train.seed] if base_cfg else []
        seeds = [value] if _is_number(value) else value
        if not isinstance(seeds, list) or not seeds or \
                not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            self.add(where, f"expected an integer or a non-empty list of integers, got {value!r}")
            return []
        if len(set(seeds)) != len(seeds):
            self.add(where, f"seeds repeat: {seeds}")
        return seeds

    # ---- space
    def _space(self, raw: Any) -> dict[str, Param]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.add("space", f"expected a mapping of dotted keys to distributions, "
                              f"got {type(raw).__name__}")
            return {}
        space = {}
        for key, body in raw.items():
            where = f"space.{key}"
            if not _is_dotted(key):
                self.add(where, "expected a dotted trainer-config key such as coupling.beta")
            elif key == "train.seed":
                self.add(where, "replicates are listed in `seeds`, not swept")
            elif not isinstance(body, Mapping):
                self.add(where, f"expected a mapping such as {{grid: [1, 2]}}; "
                                f"distributions: {', '.join(DISTRIBUTIONS)}")
            else:
                param = self._param(key, body)
                if param:
                    space[key] = param
        return space

    def _param(self, key: str, body: Mapping[str, Any]) -> Param | None:
        where = f"space.{key}"
        unknown = [k for k in body if k not in DISTRIBUTIONS + ("when", "step")]
        for extra in unknown:
            hint = _did_you_mean(extra, DISTRIBUTIONS)
            self.add(f"{where}.{extra}", f"unknown distribution{hint}; allowed: "
                                         f"{', '.join(DISTRIBUTIONS)}, when, step (int)")
        kinds = [k for k in body if k in DISTRIBUTIONS]
        if len(kinds) != 1:
            if not unknown:
                self.add(where, f"give exactly one distribution of {', '.join(DISTRIBUTIONS)}; "
                                f"got {kinds or 'none'}")
            return None
        kind, value = kinds[0], body[kinds[0]]
        when = self._when(key, body.get("when"))
        if "step" in body and kind != "int":
            self.add(f"{where}.step", "step goes with an int distribution only")
        if kind in ("grid", "choice"):
            if not isinstance(value, list) or not value:
                self.add(f"{where}.{kind}", f"expected a non-empty list of values, got {value!r}")
                return None
            texts = [json.dumps(v, sort_keys=True, default=str) for v in value]
            if len(set(texts)) != len(texts):
                self.add(f"{where}.{kind}", f"values repeat: {value}")
            return Param(key, kind, values=tuple(value), when=when)
        number = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if kind == "int" \
            else _is_number
        if not isinstance(value, list) or len(value) != 2 or not all(number(v) for v in value):
            what = "integers" if kind == "int" else "numbers"
            self.add(f"{where}.{kind}", f"expected [low, high] of two {what}, got {value!r}")
            return None
        low, high = value
        if low >= high:
            self.add(f"{where}.{kind}", f"low ({low}) must be below high ({high})")
        if kind == "loguniform" and low <= 0:
            self.add(f"{where}.{kind}", f"loguniform needs low > 0, got {low}")
        step = body.get("step", 1) if kind == "int" else None
        if kind == "int":
            if not isinstance(step, int) or isinstance(step, bool) or step < 1:
                self.add(f"{where}.step", f"expected an integer >= 1, got {step!r}")
                return None
            if (high - low) % step:
                self.add(f"{where}.step", f"high - low ({high - low}) must be a multiple of step "
                                          f"({step})")
        return Param(key, kind, low=low, high=high, step=step, when=when)

    def _when(self, key: str, raw: Any) -> dict[str, list]:
        where = f"space.{key}.when"
        if raw is None:
            return {}
        if not isinstance(raw, Mapping) or not raw:
            self.add(where, "expected a mapping such as {coupling.name: vc} or "
                            "{coupling.name: [vc, gc]}")
            return {}
        when = {}
        for other, allowed in raw.items():
            if not _is_dotted(other) or other == key:
                self.add(f"{where}.{other}", "expected the dotted key of another parameter")
            when[other] = list(allowed) if isinstance(allowed, list) else [allowed]
        return when

    # ---- variants, conditions, searcher
    def _variants(self, spec: SweepSpec) -> None:
        origins = _override_origins(spec)
        for name, overrides in spec.variants.items():
            for key in overrides:
                if key in spec.space:
                    self.add(f"variants.{name}.{key}", "also swept in space (the space value "
                                                       "would always win); remove one")
            labels = origins + [(f"variants.{name}.{k}", k) for k in overrides]
            cfg = self._build(spec.base, overrides, labels, "base")
            if cfg is not None:
                spec._variant_flat[name] = flatten(cfg)

    def _order(self, spec: SweepSpec) -> dict[str, Param]:
        """Space keys in dependency order (a `when` key before its dependents); checks `when`."""
        known = set().union(*(flat for flat in spec._variant_flat.values()))
        for key, param in spec.space.items():
            for other in param.when:
                if other in spec.space:
                    if spec.space[other].kind in CONTINUOUS:
                        self.add(f"space.{key}.when.{other}", f"{other} is {spec.space[other].kind}"
                                 "; a condition can test only a grid, choice or int parameter")
                elif other not in known:
                    self.add(f"space.{key}.when.{other}", "not a key of the space or of the base "
                             "config (nor of any variant)")
        ordered: dict[str, Param] = {}
        pending = dict(spec.space)
        while pending:
            ready = [k for k, p in pending.items()
                     if all(o in ordered or o not in spec.space for o in p.when)]
            if not ready:
                for key in pending:
                    self.add(f"space.{key}.when", f"conditions form a cycle among {list(pending)}")
                return spec.space
            for key in ready:
                ordered[key] = pending.pop(key)
        return ordered
