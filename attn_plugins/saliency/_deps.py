"""Optional dependencies, imported where they are needed, with an error that names the extra."""

from __future__ import annotations

import importlib

# what to install for each optional top-level package
EXTRAS = {"captum": 'pip install "attn-plugins[captum]"', "scipy": 'pip install "attn-plugins[saliency]"',
          "matplotlib": 'pip install "attn-plugins[plots]"', "networkx": "pip install networkx",
          "IPython": 'pip install "attn-plugins[notebook]"'}


def optional(module: str, purpose: str):
    """``importlib.import_module(module)``, or an ImportError saying what to install for ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        hint = EXTRAS.get(top, f"pip install {top}")
        raise ImportError(f"{purpose} needs {top}: {hint}") from exc
