"""A tiny name -> factory registry, extended by third parties through entry points."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

from .errors import UnknownNameError


class Registry:
    """Maps names to factories.

    Built-in entries are added with :meth:`register`; third-party packages add entries through the
    entry point group ``group`` (``name = "package.module:factory"``), loaded the first time the
    registry is read, never at import time.
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._factories: dict[str, Callable[..., Any]] = {}
        self._entry_points_loaded = False

    def register(self, name: str, factory: Callable[..., Any] | None = None):
        """Register ``factory`` under ``name``; usable as a decorator when ``factory`` is omitted."""

        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            if not name or not isinstance(name, str):
                raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
            self._factories[name] = f
            return f

        return add(factory) if factory is not None else add

    def unregister(self, name: str) -> None:
        self._factories.pop(name, None)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in metadata.entry_points(group=self.group):
            if ep.name not in self._factories:
                # Loaded lazily: the factory is imported only when it is asked for.
                self._factories[ep.name] = _LazyEntryPoint(ep)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., Any]:
        self._load_entry_points()
        try:
            factory = self._factories[name]
        except (KeyError, TypeError):
            choices = ", ".join(repr(n) for n in self.names()) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; available: {choices}") from None
        if isinstance(factory, _LazyEntryPoint):
            factory = self._factories[name] = factory.load()
        return factory

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"


class _LazyEntryPoint:
    def __init__(self, ep: metadata.EntryPoint) -> None:
        self.ep = ep

    def load(self) -> Callable[..., Any]:
        return self.ep.load()
