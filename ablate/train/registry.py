"""One registry per design axis: a name -> implementation mapping.

Adding a choice to an axis is one definition and one ``@REGISTRY.register("name")`` line; naming an
unknown choice fails with the list of valid names.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownChoiceError(KeyError):
    """A config names a choice that is not registered on its axis."""

    def __init__(self, axis: str, name: str, valid: list[str]):
        self.axis, self.name, self.valid = axis, name, valid
        super().__init__(f"unknown {axis} {name!r}; valid: {', '.join(valid)}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


class Registry(Generic[T]):
    """A named mapping from choice names to implementations of one axis."""

    def __init__(self, axis: str):
        self.axis = axis
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.axis} {name!r} registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownChoiceError(self.axis, name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
