"""The report's texts: the caller's, a text file's, or the fixture sentences by default."""

from __future__ import annotations

import os

from .. import inputs
from ..errors import InputError, ReportError

# The sentences of ``fixtures/report_sentences.txt`` (the default input when no text is given).
# Kept here too so that an installed package (without the repository's fixtures) has them.
DEFAULT_SENTENCES = (
    "The animal didn't cross the street because it was too tired.",
    "The tired animal stayed on this side of the road.",
    "A man is playing a guitar on the stage.",
    "Someone is performing music for a crowd.",
)
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE_SENTENCES = os.path.join(_PACKAGE_ROOT, "fixtures", "report_sentences.txt")


def read_text_file(path) -> list[str]:
    """The non-empty lines of a UTF-8 text file, one text each (see :func:`attn_plugins.inputs.read_text_file`);
    a :class:`ReportError` when it cannot be read or holds no text."""
    try:
        return inputs.read_text_file(path)
    except InputError as exc:
        raise ReportError(str(exc)) from None


def default_texts() -> list[str]:
    """The fixture sentences (``fixtures/report_sentences.txt`` in a checkout, else the same built in)."""
    if os.path.isfile(FIXTURE_SENTENCES):
        try:
            return read_text_file(FIXTURE_SENTENCES)
        except ReportError:
            pass
    return list(DEFAULT_SENTENCES)


def report_texts(texts=None, text_file=None) -> list[str]:
    """The texts of a report: ``texts`` (a text or a list), then the lines of ``text_file``; the
    fixture sentences when neither is given."""
    if texts is None and text_file is None:
        return default_texts()
    try:
        given = inputs.check_texts(texts) if texts is not None else []
    except InputError as exc:
        raise ReportError(str(exc)) from None
    return given + (read_text_file(text_file) if text_file is not None else [])
