"""What every section of the report shares: the section record, escaping and number formatting,
and whether an optional part is installed."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

from ..integrations.html_page import escape


class SectionUnavailableError(Exception):
    """A section whose part is not installed, or that does not apply to this model (not an error)."""


@dataclass
class Section:
    """One built section: its HTML body, or why it is missing (``status`` ``"unavailable"``/``"failed"``)."""

    id: str
    title: str
    body: str = ""
    status: str = "ok"  # "ok", "unavailable" (not installed / does not apply) or "failed"
    note: str = ""
    seconds: float = 0.0


# every token and text on the page goes through the package's one escaping helper
esc = escape


def fmt(value, digits: int = 3) -> str:
    """A number for a table cell (``-`` for NaN); anything else escaped as text."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if math.isnan(v):
        return "-"
    return f"{v:.{digits}f}"


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def has_exporter(name: str) -> bool:
    """Whether the exporter ``name`` is registered (a broken third-party entry point counts as no)."""
    from ..integrations import EXPORTERS

    try:
        return name in EXPORTERS.names()
    except Exception:  # noqa: BLE001 - a broken third-party entry point must not stop the report
        return False


def version(dist: str) -> str:
    """The installed version of a distribution, or ``?``."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"
