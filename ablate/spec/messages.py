"""How problems of a search-space file are worded: key paths, close matches, the keys a config
section or choice does have."""
from __future__ import annotations

import difflib
from typing import Any, Mapping, get_args

from pydantic import BaseModel, ValidationError

from ablate.train.config import Config


def _is_dotted(key: Any) -> bool:
    return isinstance(key, str) and all(part.isidentifier() for part in key.split("."))


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def _did_you_mean(word: Any, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _section_choices(section: str) -> dict[str | None, type[BaseModel]]:
    """The model class of each choice of a Config section (``{None: cls}`` for a plain section)."""
    annotation = Config.model_fields[section].annotation
    members = [m for m in get_args(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    if not members:
        return {None: annotation}
    return {m.model_fields["name"].default: m for m in members}


def _unknown_key_message(path: str, merged: Mapping[str, Any]) -> str:
    """Explain an unknown trainer-config key: which section/choice, and the keys it does have."""
    section, _, rest = path.partition(".")
    if section not in Config.model_fields:
        return f"not a trainer config section; sections: {', '.join(Config.model_fields)}"
    choices = _section_choices(section)
    if None in choices:
        return f"{section} has no key {rest!r}; its keys: {', '.join(choices[None].model_fields)}"
    raw_section = merged.get(section)
    choice = raw_section.get("name") if isinstance(raw_section, Mapping) else None
    choice = choice or Config.model_fields[section].default.name
    keys = ", ".join(choices[choice].model_fields) if choice in choices else "?"
    return f"{section} {choice!r} has no parameter {rest!r}; its keys: {keys}"


def _pydantic_problems(err: ValidationError, prefix: str) -> list[tuple[str, str]]:
    """``(key.path, message)`` per error of a tune-block validation (union tags dropped)."""
    out = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        if len(loc) >= 2 and loc[0] in ("scheduler", "searcher"):
            loc = [loc[0]] + loc[2:]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required"
        elif e["type"] == "union_tag_invalid":
            msg = f"unknown choice {e['ctx']['tag']!r}; valid: {e['ctx']['expected_tags']}"
            loc.append("name")
        out.append((".".join([prefix] + loc), msg))
    return out


def _split_problem(line: str) -> tuple[str, str]:
    path, _, msg = line.partition(": ")
    return path, msg.removeprefix("Value error, ")
