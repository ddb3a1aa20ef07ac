"""Compatibility layers that let archived libraries run on attn-plugins' stack.

AllenNLP 2.10.1 pins torch<1.13 and transformers<4.21; with the patches listed in
:data:`attn_plugins.compat.allennlp_patches.PATCHES` it runs on Python 3.11, torch 2.13 and
transformers 5. The patches are applied by an import hook just before ``allennlp`` loads:

* in this process: :func:`install_allennlp_compat` (the AllenNLP adapter and predictor call it);
* in every process of a virtual environment, also those that never import attn-plugins (the
  ``allennlp`` console script, spawned data-loader workers): ``python -m attn_plugins.compat install``
  writes ``attn_plugins_allennlp_compat.pth`` into site-packages (``scripts/install_allennlp.sh``
  does it). ``python -m attn_plugins.compat uninstall`` removes it, ``status`` reports.

``ATTN_PLUGINS_NO_COMPAT=1`` disables the hook.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import warnings

from . import _bootstrap

PTH_NAME = "attn_plugins_allennlp_compat.pth"

__all__ = ["PTH_NAME", "install_allennlp_compat", "install_pth", "pth_path", "uninstall_pth", "patch_list"]


def install_allennlp_compat() -> None:
    """Make sure the AllenNLP patches apply in this process (idempotent).

    Installs the import hook when the ``.pth`` file did not already. If ``allennlp`` was imported
    before the hook, the patches are applied to what is loaded (a warning says that modules which
    already failed to import cannot be repaired).
    """
    _bootstrap.install()
    if "allennlp" in sys.modules and _bootstrap.installed():
        from . import allennlp_patches

        if not allennlp_patches._GLOBAL_DONE:
            warnings.warn(
                "allennlp was imported before attn-plugins' compatibility hook; the patches are applied now, "
                "but run `python -m attn_plugins.compat install` so that they apply before allennlp loads",
                stacklevel=2,
            )
        allennlp_patches.apply_global()
        allennlp_patches.patch_loaded_modules()


def patch_list() -> list[tuple[str, str, str]]:
    """(name, what it fixes, when it is applied) for every AllenNLP patch."""
    from .allennlp_patches import PATCHES

    return [(p.name, p.fixes, p.when) for p in PATCHES]


def _site_packages() -> str:
    return sysconfig.get_paths()["purelib"]


def pth_path(site_dir: str | None = None) -> str:
    return os.path.join(site_dir or _site_packages(), PTH_NAME)


def pth_line(bootstrap: str | None = None) -> str:
    """The one line of the .pth file: runs the (stdlib-only) bootstrap file, if it still exists."""
    path = os.path.abspath(bootstrap or _bootstrap.__file__)
    name = "_attn_plugins_compat_bootstrap"
    return (
        f"import os, sys; _p = {path!r}; "
        f"_m = sys.modules.setdefault({name!r}, type(sys)({name!r})); _m.__file__ = _p; "
        "os.path.exists(_p) and exec(compile(open(_p, encoding='utf-8').read(), _p, 'exec'), vars(_m))\n"
    )


def install_pth(site_dir: str | None = None) -> str:
    """Write the start-up hook into ``site_dir`` (default: this interpreter's site-packages)."""
    target = pth_path(site_dir)
    from ..atomic import write_text

    return write_text(target, pth_line())


def uninstall_pth(site_dir: str | None = None) -> bool:
    target = pth_path(site_dir)
    if os.path.exists(target):
        os.remove(target)
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m attn_plugins.compat", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["install", "uninstall", "status", "patches"])
    parser.add_argument("--site-dir", default=None, help="site-packages directory (default: this interpreter's)")
    args = parser.parse_args(argv)
    if args.action == "install":
        print(f"installed {install_pth(args.site_dir)}")
    elif args.action == "uninstall":
        print("removed" if uninstall_pth(args.site_dir) else "no hook file was installed")
    elif args.action == "status":
        target = pth_path(args.site_dir)
        print(f"{target}: {'present' if os.path.exists(target) else 'absent'}")
        print(f"hook active in this process: {_bootstrap.installed()}")
    else:
        for name, fixes, when in patch_list():
            print(f"{name} [{when}]\n    {fixes}\n")
    return 0
