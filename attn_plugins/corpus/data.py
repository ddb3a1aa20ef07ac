"""Reading the texts of a corpus job: a JSONL file, one JSON object per line.

Each object carries the text in ``text`` (``text_field=``) and optionally an ``id`` (a string or
an integer, unique in the file); without one the text's id is its 0-based line number. Blank
lines are skipped (they still count for line numbers). Error messages name the file and the
1-based line, as editors show them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from .errors import CorpusError

ID_FIELD = "id"


@dataclass(frozen=True)
class Text:
    """One text of the corpus: its 0-based ``line`` in the file, its id (as a string) and the text."""

    line: int
    text_id: str
    text: str


def read_texts(path, text_field: str = "text") -> list[Text]:
    """The texts of a JSONL file, in file order; a :class:`CorpusError` names the line of any bad entry."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CorpusError(f"no data file at {path!r}")
    if os.path.isdir(path):
        raise CorpusError(f"{path!r} is a directory; --data takes a JSONL file (one JSON object per line)")
    texts: list[Text] = []
    seen: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line, raw in enumerate(handle):
                if not raw.strip():
                    continue
                where = f"{path}:{line + 1}"
                try:
                    obj = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise CorpusError(
                        f"{where}: expected a JSON object with a {text_field!r} field, got {type(obj).__name__}"
                    )
                if text_field not in obj:
                    fields = ", ".join(repr(k) for k in list(obj)[:8]) or "none"
                    raise CorpusError(
                        f"{where}: no {text_field!r} field (fields: {fields}); choose the field with --text-field"
                    )
                text = obj[text_field]
                if not isinstance(text, str):
                    raise CorpusError(f"{where}: {text_field!r} must be a string, got {type(text).__name__}")
                if not text.strip():
                    raise CorpusError(f"{where}: the text is empty")
                text_id = _text_id(obj.get(ID_FIELD, line), where)
                if text_id in seen:
                    raise CorpusError(
                        f"{where}: id {text_id!r} was already used on line {seen[text_id] + 1}; ids must be unique"
                    )
                seen[text_id] = line
                texts.append(Text(line, text_id, text))
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path!r} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise CorpusError(f"cannot read the data file {path!r}: {exc}") from None
    if not texts:
        raise CorpusError(f"the data file {path!r} holds no texts (it is empty or blank)")
    return texts


def _text_id(value, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CorpusError(f"{where}: {ID_FIELD!r} must be a string or an integer, got {type(value).__name__}")
    value = str(value)
    if not value:
        raise CorpusError(f"{where}: {ID_FIELD!r} is empty")
    return value


def file_fingerprint(path) -> dict:
    """``{"size", "sha256"}`` of a file: what makes a resumed run sure it reads the same data."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": os.path.getsize(path), "sha256": digest.hexdigest()}
