"""One registry per design axis: a choice's name -> (its options class, its implementation).

A choice is one module: a pydantic options class whose ``name: Literal["..."]`` field holds the
choice's name (the only place the name is written), the implementation beside it, and one
``@REGISTRY.register(Options)`` line that puts the two in the registry together. The config's union
for the axis is built from the registry (:meth:`Registry.union`), so a registered choice is a valid
config value and an unregistered name fails with the list of valid names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Generic, Iterator, Optional, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class UnknownChoiceError(KeyError):
    """A config names a choice that is not registered on its axis."""

    def __init__(self, axis: str, name: str, valid: list[str]):
        self.axis, self.name, self.valid = axis, name, valid
        super().__init__(f"unknown {axis} {name!r}; valid: {', '.join(valid)}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered choice: its name, its options class (None on axes without per-choice options)
    and its implementation."""

    name: str
    options: Optional[type[BaseModel]]
    impl: T


def choice_name(options: type[BaseModel]) -> str:
    """The name an options class declares: the default of its ``name`` field."""
    field = options.model_fields.get("name")
    if field is None or not isinstance(field.default, str):
        raise TypeError(f"{options.__name__} needs a field name: Literal['...'] = '...' (the choice's name)")
    return field.default


class Registry(Generic[T]):
    """A named mapping from choice names to (options class, implementation) of one axis."""

    def __init__(self, axis: str):
        self.axis = axis
        self._entries: dict[str, Entry[T]] = {}

    def register(self, choice: Union[str, type[BaseModel]]) -> Callable[[T], T]:
        """Decorator registering an implementation under an options class (its name read from the
        class) or, on axes without options, under a plain name."""
        name, options = (choice, None) if isinstance(choice, str) else (choice_name(choice), choice)

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.axis} {name!r} registered twice")
            self._entries[name] = Entry(name, options, obj)
            return obj

        return add

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownChoiceError(self.axis, name, self.names()) from None

    def get(self, name: str) -> T:
        """The implementation registered as ``name``."""
        return self.entry(name).impl

    def entries(self) -> list[Entry[T]]:
        """Every entry in registration order."""
        return list(self._entries.values())

    def names(self) -> list[str]:
        return sorted(self._entries)

    def union(self) -> Any:
        """The config type of the axis: the options classes as a union discriminated on ``name``, in
        registration order (the order error messages list them)."""
        classes = tuple(e.options for e in self._entries.values() if e.options is not None)
        if not classes:
            raise TypeError(f"axis {self.axis!r} has no options classes registered")
        if len(classes) == 1:
            return classes[0]
        return Annotated[Union[classes], Field(discriminator="name")]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
