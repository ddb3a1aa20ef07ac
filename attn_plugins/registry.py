"""A tiny name -> factory registry, extended by third parties through entry points.

An entry is a factory (any callable: a function, a class) or a lazy reference ``"package.module:attr"``
that is imported the first time the entry is asked for, so that registering a built-in entry never
imports its module (or the framework behind it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module, metadata
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
        self._factories: dict[str, Callable[..., Any] | LazyReference] = {}
        self._entry_points_loaded = False

    def register(self, name: str, factory: Callable[..., Any] | str | None = None, *, replace: bool = False) -> Any:
        """Register ``factory`` under ``name``; usable as a decorator when ``factory`` is omitted.

        Args:
            name: the entry's name.
            factory: a callable, or a ``"package.module:attr"`` reference imported on first use.
            replace: allow replacing an entry already registered under ``name`` (otherwise refused, so
                that two plugins cannot silently overwrite each other).

        Returns:
            ``factory`` (so the decorator form leaves the function as it was).
        """

        def add(f: Callable[..., Any] | str) -> Callable[..., Any] | str:
            if not name or not isinstance(name, str):
                raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
            if isinstance(f, str):
                entry: Any = LazyReference(f)
            elif callable(f):
                entry = f
            else:
                raise TypeError(f"a {self.kind} must be callable or a 'module:attr' string, got {type(f).__name__}")
            if name in self._factories and not replace:
                raise ValueError(f"a {self.kind} named {name!r} is already registered; pass replace=True to replace it")
            self._factories[name] = entry
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
                self._factories[ep.name] = LazyReference(ep.value)

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
        if isinstance(factory, LazyReference):
            factory = self._factories[name] = factory.load()
        return factory

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"


class LazyReference:
    """``"package.module:attr"`` (the entry point syntax), imported when first asked for."""

    def __init__(self, reference: str) -> None:
        module, sep, attr = reference.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"a lazy reference is 'package.module:attr', got {reference!r}")
        self.reference = reference

    def load(self) -> Callable[..., Any]:
        module, _, attr = self.reference.partition(":")
        value: Any = import_module(module.strip())
        for part in attr.strip().split("."):
            value = getattr(value, part)
        factory: Callable[..., Any] = value
        return factory

    def __repr__(self) -> str:
        return f"LazyReference({self.reference!r})"
