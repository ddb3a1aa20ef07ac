"""The JavaScript libraries that BertViz's view scripts need, shipped inside the package for offline pages.

BertViz's templates load require.js, d3 and jQuery from a CDN, so its pages stay blank offline.
The exact files (from the npm registry), their licence texts and a SHA-256 manifest are vendored in
``attn_plugins/integrations/static/vendor/`` and ship in the wheel and the sdist: a fresh
``pip install`` exports pages that draw with no network and no script to run, and every build of
the wheel carries the same bytes. Exported pages inline them; nothing is fetched when a page is
built or viewed. Maintainers update them with ``scripts/fetch_js_assets.sh``.

``ATTN_PLUGINS_ASSETS_DIR`` points elsewhere (e.g. a maintainer trying other versions).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
from importlib import resources
from importlib.resources.abc import Traversable

from ..errors import AssetsMissingError

# file name -> (npm package spec it comes from, what it is)
LIBRARIES = {
    "require.js": ("requirejs@2.3.6", "require.js"),
    "d3.min.js": ("d3@5.7.0", "d3"),
    # BertViz names jQuery 2.0.0, which was never published to npm; 2.2.4 is the last 2.x (same API).
    "jquery.min.js": ("jquery@2.2.4", "jQuery"),
}
UPDATE_COMMAND = "scripts/fetch_js_assets.sh"
VENDOR = ("static", "vendor")  # inside this package


def asset_dir() -> Traversable:
    """Where the libraries are read from: the package's vendored folder, or ``ATTN_PLUGINS_ASSETS_DIR``."""
    override = os.environ.get("ATTN_PLUGINS_ASSETS_DIR")
    if override:
        return pathlib.Path(override)
    return resources.files(__package__).joinpath(*VENDOR)


def missing() -> list[str]:
    """Names of the libraries that are not there (empty for a complete installation)."""
    base = asset_dir()
    return [name for name in LIBRARIES if not _is_file(base / name)]


def _is_file(resource: Traversable) -> bool:
    if isinstance(resource, pathlib.Path):
        return resource.is_file() and resource.stat().st_size > 0
    return resource.is_file() and len(resource.read_bytes()) > 0


def check() -> None:
    """Raise :class:`AssetsMissingError` unless every library is present."""
    absent = missing()
    if absent:
        specs = ", ".join(LIBRARIES[name][0] for name in absent)
        raise AssetsMissingError(
            f"the JavaScript libraries that offline BertViz pages inline are missing ({specs}) from "
            f"{str(asset_dir())!r}. They ship inside the attn-plugins package: reinstall it "
            "(`pip install --force-reinstall attn-plugins`), or unset ATTN_PLUGINS_ASSETS_DIR if it "
            f"points elsewhere. In a checkout, `{UPDATE_COMMAND}` fetches them again from the npm "
            "registry. Pages never fetch anything when they are viewed."
        )


@functools.cache
def _read(location: str, stamp: float) -> str:
    # keyed on the location and its modification time, so an updated file is read again
    return pathlib.Path(location).read_text(encoding="utf-8")


def load(name: str) -> str:
    """The source text of one library (``"require.js"``, ``"d3.min.js"`` or ``"jquery.min.js"``).

    Args:
        name: a key of :data:`LIBRARIES`.

    Returns:
        The file's JavaScript source.
    """
    if name not in LIBRARIES:
        raise KeyError(f"unknown asset {name!r}; known: {sorted(LIBRARIES)}")
    check()
    resource = asset_dir() / name
    if isinstance(resource, pathlib.Path):
        return _read(str(resource), resource.stat().st_mtime)
    return resource.read_text(encoding="utf-8")  # e.g. inside a zip: read each time


def manifest() -> dict[str, dict[str, str]]:
    """The vendored files' manifest (npm package, licence, SHA-256 of each file), or ``{}``."""
    try:
        found: dict[str, dict[str, str]] = json.loads((asset_dir() / "manifest.json").read_text(encoding="utf-8"))
        return found
    except (OSError, ValueError):
        return {}


def amd_prelude() -> str:
    """JavaScript that, run inside a function scope, gives that scope its own require.js loader
    with ``jquery`` and ``d3`` already defined, and touches no global name.

    require.js is evaluated inside the caller's function, so ``require``/``requirejs``/``define`` are
    locals of that function (a notebook's own global require.js is left alone, and several views on
    one page do not see each other's modules). jQuery and d3 are evaluated with a private CommonJS
    ``module`` object, so they register no ``window.$``/``window.d3`` either.
    """
    check()
    return (
        "var require = {skipDataMain: true};\n"  # read by require.js as its initial config
        + load("require.js")
        + "\nvar __attnPluginsJq = (function (module, exports, define) {\n"
        + load("jquery.min.js")
        + "\nreturn module.exports;\n}).call(window, {exports: {}}, undefined, undefined);\n"
        + "var __attnPluginsD3 = (function (module, exports, define) {\n"
        + load("d3.min.js")
        + "\nreturn exports;\n}).call(window, {exports: {}}, {}, undefined);\n"
        + "define('jquery', [], function () { return __attnPluginsJq; });\n"
        + "define('d3', [], function () { return __attnPluginsD3; });\n"
    )
