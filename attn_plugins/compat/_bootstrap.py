"""Import hook that applies attn-plugins' compatibility patches before a legacy library loads.

Standard library only, and importable without importing :mod:`attn_plugins` (which imports torch):
the ``attn_plugins_allennlp_compat.pth`` file written by ``python -m attn_plugins.compat install``
executes this file at interpreter start-up, so processes that never import attn-plugins (the
``allennlp`` console script, spawned data-loader workers) get the patches too.

:func:`install` puts :class:`CompatFinder` first on ``sys.meta_path``. The finder lets the normal
finders locate every ``allennlp``/``allennlp_models`` module and wraps its loader: just before the
module's code runs, ``attn_plugins.compat.allennlp_patches.before_exec(name)`` is called (the
top-level ``allennlp`` triggers the global patches), and right after it ran,
``after_exec(name, module)`` patches that module. Nothing in site-packages is edited. Set
``ATTN_PLUGINS_NO_COMPAT=1`` to disable the hook.
"""

from __future__ import annotations

import importlib
import importlib.abc
import os
import sys
import threading

MARKER = "_attn_plugins_compat_finder"
PATCHED_ROOTS = ("allennlp", "allennlp_models")
PATCHES_MODULE = "attn_plugins.compat.allennlp_patches"
_local = threading.local()


def _watched(fullname: str) -> bool:
    return any(fullname == root or fullname.startswith(root + ".") for root in PATCHED_ROOTS)


def _patches():
    """The patch module; makes attn-plugins importable from this file's checkout when it is not."""
    try:
        return importlib.import_module(PATCHES_MODULE)
    except ImportError:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if not os.path.exists(os.path.join(root, "attn_plugins", "compat", "allennlp_patches.py")):
            raise
        if root not in sys.path:
            sys.path.append(root)
        return importlib.import_module(PATCHES_MODULE)


class _PatchingLoader(importlib.abc.Loader):
    """Wraps the real loader of a watched module; everything else is delegated to it."""

    def __init__(self, loader, fullname: str) -> None:
        self._loader = loader
        self._fullname = fullname

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        patches = _patches()
        patches.before_exec(self._fullname)
        try:
            self._loader.exec_module(module)
        finally:
            patches.cleanup_exec(self._fullname)
        patches.after_exec(self._fullname, module)

    def __getattr__(self, name):  # get_source, get_code, is_package, get_resource_reader, ...
        return getattr(self._loader, name)


class CompatFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader that the other finders return for watched modules."""

    _attn_plugins_compat_finder = True

    def find_spec(self, fullname, path, target=None):
        if os.environ.get("ATTN_PLUGINS_NO_COMPAT") or not _watched(fullname):
            return None
        busy = getattr(_local, "busy", None)
        if busy is None:
            busy = _local.busy = set()
        if fullname in busy:
            return None
        busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or getattr(finder, MARKER, False):
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            busy.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _PatchingLoader(spec.loader, fullname)
        return spec


def installed() -> bool:
    return any(getattr(finder, MARKER, False) for finder in sys.meta_path)


def install() -> bool:
    """Put the finder first on ``sys.meta_path`` (once per process). True when it was added now."""
    if os.environ.get("ATTN_PLUGINS_NO_COMPAT") or installed():
        return False
    sys.meta_path.insert(0, CompatFinder())
    return True


def uninstall() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not getattr(finder, MARKER, False)]


if __name__ == "_attn_plugins_compat_bootstrap":  # executed from the .pth file at start-up
    try:
        install()
    except Exception as exc:  # noqa: BLE001 - never break interpreter start-up
        sys.stderr.write(f"attn-plugins: the compatibility hook was not installed ({exc})\n")
