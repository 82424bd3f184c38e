"""One registration mechanism for everything looked up by name (corruptions, models, datasets).

A name collision is an error; an unknown name raises :class:`UnknownNameError`, which lists the
close matches and the allowed names.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownNameError", "DuplicateNameError"]

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown name was looked up; the message names close matches and all allowed names."""

    def __init__(self, kind: str, name: str, allowed: list[str]):
        self.kind, self.name, self.allowed = kind, name, allowed
        close = difflib.get_close_matches(name, allowed, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        msg = f"unknown {kind} {name!r}.{hint} Allowed: {', '.join(allowed) or '(none)'}"
        super().__init__(msg)
        self.message = msg

    def __str__(self) -> str:  # KeyError quotes its argument; we want plain text
        return self.message


class DuplicateNameError(ValueError):
    pass


class Registry(Generic[T]):
    """A name -> object mapping. ``register`` works as a decorator or a plain call."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        def _add(o: T) -> T:
            if name in self._items:
                raise DuplicateNameError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            return o

        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, sorted(self._items)) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
