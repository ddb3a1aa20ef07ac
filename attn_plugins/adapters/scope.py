"""Where a capture is active: the thread (or asyncio task) that opened it, and nowhere else.

A server shares one model between request threads, so the hooks a capture installs on a model
are seen by every thread that runs it. Every hook and every global patch therefore asks
:func:`runs_here` first: a capture is active in the ``contextvars`` context its ``with`` block was
entered in (and in contexts copied from it while it is open: tasks created inside the block,
``asyncio.to_thread``), not in other threads or other tasks, and not while autograd runs a
backward pass (forwards recomputed by gradient checkpointing are not new calls).

:func:`gate_new_hooks` makes this hold for any adapter, including third-party ones: every forward
hook an adapter registered during ``attach`` is replaced, in place, by a gated one that returns at
once for calls from elsewhere. :class:`SharedPatch` installs one wrapper for all captures that
patch the same attribute (reference-counted) and closes over the original, so a caller that
fetched the wrapper just before the last capture removed it still reaches a working function.
"""

from __future__ import annotations

import contextvars
import functools
import threading

import torch
from torch.nn.modules import module as _module_impl

_ACTIVE: contextvars.ContextVar[tuple] = contextvars.ContextVar("attn_plugins_active_captures", default=())
_MISSING = object()


def _backward_running() -> bool:
    return torch._C._current_graph_task_id() != -1


def runs_here(session) -> bool:
    """Whether a call made now belongs to ``session``: it is active in this context and autograd is
    not running a backward pass (a checkpointed forward recomputed during ``backward()``)."""
    return session in _ACTIVE.get() and not _backward_running()


def active_sessions() -> tuple:
    """The captures active in this context (outermost first)."""
    return _ACTIVE.get()


def activate(session) -> contextvars.Token:
    """Make ``session`` active in the current context; returns the token :func:`deactivate` takes."""
    return _ACTIVE.set(_ACTIVE.get() + (session,))


def deactivate(session, token: contextvars.Token | None) -> None:
    """Undo :func:`activate` (also when exited from another context, where the token is not valid)."""
    if token is not None:
        try:
            _ACTIVE.reset(token)
            return
        except ValueError:  # exited in another context than it was entered in
            pass
    current = _ACTIVE.get()
    if session in current:
        _ACTIVE.set(tuple(s for s in current if s is not session))


def gated(session, hook):
    """``hook`` run only for calls that belong to ``session`` (``None``, i.e. no change, otherwise)."""

    @functools.wraps(hook)
    def gate(*args, **kwargs):
        if session in _ACTIVE.get() and not _backward_running():
            return hook(*args, **kwargs)
        return None

    gate.attn_plugins_gated = session
    return gate


def _hook_tables(modules) -> list:
    tables = [_module_impl._global_forward_pre_hooks, _module_impl._global_forward_hooks]
    for module in modules:
        tables.append(module._forward_pre_hooks)
        tables.append(module._forward_hooks)
    return tables


def hook_snapshot(model) -> dict[int, set]:
    """The forward hooks present now on ``model``'s modules and globally (before an adapter attaches)."""
    return {id(table): set(table) for table in _hook_tables(model.modules())}


def gate_new_hooks(session, model, before: dict[int, set]) -> int:
    """Gate (in place: same handle ids) every forward hook added since ``before``; returns how many."""
    count = 0
    for table in _hook_tables(model.modules()):
        known = before.get(id(table), set())
        for key in [k for k in table if k not in known]:
            hook = table.get(key)
            if hook is not None and getattr(hook, "attn_plugins_gated", None) is None:
                table[key] = gated(session, hook)
                count += 1
    return count


def first_active(candidates, session_of=lambda c: c.session):
    """The first of ``candidates`` whose session :func:`runs_here` (``None`` if none)."""
    active = _ACTIVE.get()
    if not active or _backward_running():
        return None
    for candidate in candidates:
        if session_of(candidate) in active:
            return candidate
    return None


class SharedPatch:
    """One replacement of ``getter()`` shared by every capture that asks for it (reference-counted).

    Args:
        get: reads the current value (``_MISSING``-style sentinel :data:`MISSING` when absent).
        put: writes a value (:data:`MISSING`: delete it).
        replacement: ``replacement(original, patch)`` builds the new value once, when the first user
            arrives; a wrapper closes over ``original`` and finds its capture with ``patch.active()``.
    """

    _registry: dict = {}
    _lock = threading.RLock()

    def __init__(self, key, get, put, replacement) -> None:
        self.key, self.get, self.put, self.replacement = key, get, put, replacement
        self.users: list = []
        self.original = _MISSING
        self.value = _MISSING

    @classmethod
    def acquire(cls, key, session, get, put, replacement) -> SharedPatch:
        """Join (or create and install) the patch named ``key`` for ``session``."""
        with cls._lock:
            patch = cls._registry.get(key)
            if patch is None:
                patch = cls._registry[key] = cls(key, get, put, replacement)
                patch.original = get()
                patch.value = replacement(patch.original, patch)
                put(patch.value)
            patch.users.append(session)
            return patch

    def release(self, session) -> None:
        """Leave the patch; the last user puts the original back unless someone replaced our value since."""
        with self._lock:
            self.users = [s for s in self.users if s is not session]
            if self.users or self._registry.get(self.key) is not self:
                return
            del self._registry[self.key]
            if self.get() is self.value:
                self.put(self.original)

    def active(self):
        """The user (capture session) the current call belongs to, or ``None``."""
        return first_active(list(self.users), session_of=lambda s: s)


MISSING = _MISSING


def original_value(obj, name: str, current):
    """``current``, or the value ``obj.name`` had before a capture's :func:`attribute_patch` changed it."""
    patch = SharedPatch._registry.get(("attr", id(obj), name))
    if patch is None or patch.original is MISSING or patch.original is None:
        return current
    return patch.original


def attribute_patch(obj, name: str, session, replacement, *, instance: bool = False) -> SharedPatch:
    """A :class:`SharedPatch` of ``obj.name`` (``instance``: of the instance attribute only; absent
    before means deleted after)."""
    if instance:

        def get():
            return vars(obj).get(name, MISSING)
    else:

        def get():
            return getattr(obj, name, MISSING)

    def put(value):
        if value is MISSING:
            vars(obj).pop(name, None)
        else:
            setattr(obj, name, value)

    return SharedPatch.acquire(("attr", id(obj), name), session, get, put, replacement)


def item_patch(mapping, name: str, session, replacement) -> SharedPatch:
    """A :class:`SharedPatch` of ``mapping[name]``."""

    def put(value):
        if value is MISSING:
            mapping.pop(name, None)
        else:
            mapping[name] = value

    return SharedPatch.acquire(
        ("item", id(mapping), name), session, lambda: mapping.get(name, MISSING), put, replacement
    )
