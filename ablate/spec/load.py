"""Reading a search-space file (YAML with ``1e-3`` as a float) and ``--set`` arguments; validation
is :class:`ablate.spec.builder.Builder`'s."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml
from .builder import _Builder
from .messages import _is_dotted, _one_line
from .model import SpecError, SweepSpec


# ------------------------------------------------------------------------------------ loading
class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.1 needs ``1.0e-3``; YAML 1.2 does not)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a SafeLoader subclass)


def parse_set_args(items: list[str]) -> dict[str, Any]:
    """``["a.b=3", "c=[1, 2]"]`` -> ``{"a.b": 3, "c": [1, 2]}``; values are parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not _is_dotted(key):
            raise SpecError("--set", [(item, "expected KEY=VALUE with a dotted key, e.g. "
                                             "train.lr=3e-4 or tune.resources={gpu: 0, cpu: 1}")])
        try:
            out[key] = _yaml(text) if text.strip() else ""
        except yaml.YAMLError as err:
            problem = f"value is not valid YAML: {_one_line(err)}"
            raise SpecError("--set", [(key, problem)]) from None
    return out


def load_spec(path: str | Path, profile: str | None = None,
              overrides: Mapping[str, Any] | None = None, workdir: str | None = None) -> SweepSpec:
    """Read, validate and expand-check a search-space file; raise :class:`SpecError` if anything is
    wrong (every grid point or distribution bound, every variant and the tune block are checked).
    Relative paths in trainer configs resolve against ``workdir`` (default: the working directory)."""
    file = str(path)
    try:
        text = Path(path).read_text()
    except (FileNotFoundError, IsADirectoryError):
        raise SpecError(file, [("<file>", "file not found")]) from None
    try:
        raw = _yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<yaml>"
        raise SpecError(file, [(where, f"invalid YAML: {getattr(err, 'problem', None) or err}")]) \
            from None
    spec = _Builder(file, text).build(raw, profile, dict(overrides or {}))
    spec.workdir = os.path.abspath(workdir or os.getcwd())
    return spec
