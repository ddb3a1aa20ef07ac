"""The package version and the transformers releases it supports, in one place.

``setup.py`` reads this file without importing the package (so it holds only the standard library),
and ``import attn_plugins`` calls :func:`check_transformers_version`, so an unsupported transformers
fails at import with the supported range instead of deep inside a capture.
"""

from __future__ import annotations

import re
from importlib import metadata

__version__ = "0.1.0"

# [lowest supported, first unsupported). The version matrix (scripts/version_matrix.py, run by
# tests/release/) passes with 5.15 to 5.24; older 5.x releases fail core capture tests (tested: 5.0,
# 5.12, 5.13 and 5.14 lose T5's encoder attention under generate(); 5.0 also has no
# transformers.utils.output_capturing, records nothing for GPT-2 and BART and changes ModernBERT's
# outputs). 4.x is refused as well.
TRANSFORMERS_SUPPORTED = ((5, 15), (6, 0))
TRANSFORMERS_REQUIREMENT = "transformers>={}.{},<{}".format(*TRANSFORMERS_SUPPORTED[0], TRANSFORMERS_SUPPORTED[1][0])


def check_transformers_version(version: str | None = None) -> None:
    """Raise :class:`~attn_plugins.errors.MissingDependencyError` unless the installed transformers is supported.

    Reads the installed distribution's version (transformers itself is not imported, so
    ``import attn_plugins`` stays fast). No installed transformers is left to the code that needs it.

    Args:
        version: the version to check; the installed one when ``None``.
    """
    if version is None:
        try:
            version = metadata.version("transformers")
        except metadata.PackageNotFoundError:
            return
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        return  # a source build with an odd version string: trust the user
    found = (int(match.group(1)), int(match.group(2)))
    low, high = TRANSFORMERS_SUPPORTED
    if low <= found < high:
        return
    from .errors import MissingDependencyError

    raise MissingDependencyError(
        f"attn-plugins {__version__} supports {TRANSFORMERS_REQUIREMENT} (the releases its version matrix "
        f"tests), but transformers {version} is installed. Install a supported release: "
        f'pip install "{TRANSFORMERS_REQUIREMENT}"'
    )
