"""One registration mechanism for everything looked up by name (corruptions, models, datasets).

A name collision is an error; an unknown name raises :class:`UnknownNameError`, which lists the
close matches and the allowed names.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownNameError", "DuplicateNameError", "did_you_mean", "import_submodules"]

T = TypeVar("T")


def import_submodules(package: str, path: Iterable[str], skip: Iterable[str] = ()) -> list[str]:
    """Import every public submodule of ``package`` (``path``: its ``__path__``), in name order.

    The one discovery mechanism: a module registers what it defines when it is imported, so a
    package that calls this in its ``__init__`` picks up a new model or family file by itself.
    Modules whose name starts with ``_`` and those in ``skip`` (shared code) are left out.
    """
    skipped = set(skip)
    names = sorted(i.name for i in pkgutil.iter_modules(list(path)) if not i.name.startswith("_") and i.name not in skipped)
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names


def did_you_mean(name: object, allowed: Iterable[str], n: int = 3) -> str:
    """``"did you mean a or b?"`` for the close matches of ``name`` among ``allowed``, else ``""``:
    the one spelling hint of every error that names an unknown key or name."""
    close = difflib.get_close_matches(str(name), list(allowed), n=n, cutoff=0.5)
    return f"did you mean {' or '.join(close)}?" if close else ""


class UnknownNameError(KeyError):
    """An unknown name was looked up; the message names close matches and all allowed names."""

    def __init__(self, kind: str, name: str, allowed: list[str]):
        self.kind, self.name, self.allowed = kind, name, allowed
        hint = did_you_mean(name, allowed)
        msg = f"unknown {kind} {name!r}{f' ({hint})' if hint else ''}. Allowed: {', '.join(allowed) or '(none)'}"
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

    def view(self) -> Mapping[str, T]:
        """A live read-only mapping of the entries in registration order (e.g. the column order of
        the metrics)."""
        return MappingProxyType(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
