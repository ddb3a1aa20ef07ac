"""The JavaScript libraries that BertViz's view scripts need, kept on local disk for offline pages.

BertViz's templates load require.js, d3 and jQuery from a CDN, so its pages stay blank offline.
``scripts/fetch_js_assets.sh`` (run by the set-up script) fetches those libraries once from the npm
registry into ``attn_plugins/integrations/_assets/`` (gitignored: no third-party code is committed);
exported pages inline them from there. Nothing is fetched when a page is built or viewed: a missing
library is an :class:`AssetsMissingError` that says which command to run.

``ATTN_PLUGINS_ASSETS_DIR`` points elsewhere (e.g. a shared read-only copy).
"""

from __future__ import annotations

import functools
import json
import os

from ..errors import AssetsMissingError

# file name -> (npm package spec it comes from, what it is)
LIBRARIES = {
    "require.js": ("requirejs@2.3.6", "require.js"),
    "d3.min.js": ("d3@5.7.0", "d3"),
    # BertViz names jQuery 2.0.0, which was never published to npm; 2.2.4 is the last 2.x (same API).
    "jquery.min.js": ("jquery@2.2.4", "jQuery"),
}
SETUP_COMMAND = "scripts/fetch_js_assets.sh"


def asset_dir() -> str:
    return os.environ.get("ATTN_PLUGINS_ASSETS_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "_assets")


def missing() -> list[str]:
    """Names of the libraries that are not on disk."""
    base = asset_dir()
    return [name for name in LIBRARIES if not _is_file(os.path.join(base, name))]


def _is_file(path: str) -> bool:
    return os.path.isfile(path) and os.path.getsize(path) > 0


def check() -> None:
    """Raise :class:`AssetsMissingError` unless every library is present."""
    absent = missing()
    if absent:
        specs = ", ".join(LIBRARIES[name][0] for name in absent)
        raise AssetsMissingError(
            f"the JavaScript libraries that offline BertViz pages inline are missing ({specs}) from "
            f"{asset_dir()!r}. Run the set-up script once to fetch them from the npm registry: "
            f"`{SETUP_COMMAND}` (also run by scripts/setup_env.sh / `make setup`). Pages never fetch "
            "anything when they are viewed."
        )


@functools.lru_cache(maxsize=None)
def _read(path: str, mtime: float) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def load(name: str) -> str:
    """The source text of one library (``"require.js"``, ``"d3.min.js"`` or ``"jquery.min.js"``)."""
    if name not in LIBRARIES:
        raise KeyError(f"unknown asset {name!r}; known: {sorted(LIBRARIES)}")
    check()
    path = os.path.join(asset_dir(), name)
    return _read(path, os.path.getmtime(path))


def manifest() -> dict:
    """What the fetch script recorded (package and sha256 of each file), or ``{}``."""
    path = os.path.join(asset_dir(), "manifest.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
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
