"""Compatibility patches that let the archived AllenNLP 2.10.1 (and allennlp-models 2.10.1) run on
attn-plugins' stack: Python 3.11, torch 2.13 (CPU, no torchvision), transformers 5.x and
huggingface_hub 1.x/2.x.

Nothing in site-packages is edited. The import hook in :mod:`attn_plugins.compat._bootstrap`
calls :func:`before_exec` just before each ``allennlp``/``allennlp_models`` module's code runs and
:func:`after_exec` right after; the top-level ``allennlp`` triggers the global patches. Each patch
is listed in :data:`PATCHES` with what it fixes; :func:`applied` tells which ones ran in this process.

Patches that change a third-party library's behaviour do so only where that behaviour was removed
(a missing attribute is added back) or only for calls made from AllenNLP's own code (the caller's
module is checked), so the rest of the process keeps the new libraries' defaults.
"""

from __future__ import annotations

import functools
import math
import sys
import types
from dataclasses import dataclass

ALLENNLP_ROOTS = ("allennlp", "allennlp_models")


@dataclass(frozen=True)
class Patch:
    name: str
    fixes: str
    when: str  # "before allennlp" or the module it is applied after


PATCHES: tuple[Patch, ...] = (
    Patch(
        "huggingface_hub_legacy_names",
        "huggingface_hub 1.x removed HfFolder and Repository, which allennlp/common/push_to_hf.py imports at "
        "module level (so `import allennlp` fails). HfFolder is given back as a thin wrapper over "
        "huggingface_hub.get_token/login/logout; Repository (git-based, removed upstream) raises a clear error "
        "when instantiated (only `allennlp push-to-hf` uses it).",
        "before allennlp",
    ),
    Patch(
        "transformers_adamw",
        "transformers 5 removed transformers.AdamW, which allennlp/training/optimizers.py subclasses at import "
        "time. The removed class is restored verbatim (including correct_bias). Setting the attribute alone is "
        "lost: the first import of transformers.processing_utils re-executes transformers/__init__ and replaces "
        "sys.modules['transformers'], so that import is triggered first.",
        "before allennlp",
    ),
    Patch(
        "tokenizer_encode_plus",
        "transformers 5 removed PreTrainedTokenizerBase.encode_plus/batch_encode_plus (used by "
        "PretrainedTransformerTokenizer and several allennlp-models readers): added back as calls to "
        "tokenizer(...), which is what they were.",
        "before allennlp",
    ),
    Patch(
        "tokenizer_build_inputs_with_special_tokens",
        "transformers 5 fast tokenizers (TokenizersBackend) lost build_inputs_with_special_tokens, used by "
        "PretrainedTransformerIndexer when max_length is set: added back, reading the special tokens the "
        "tokenizer's own post-processor puts before, between and after the sequences.",
        "before allennlp",
    ),
    Patch(
        "tokenizer_from_pretrained_add_special_tokens",
        "transformers 5 raises on from_pretrained(..., add_special_tokens=...) (it now clashes with the method of "
        "that name); allennlp and allennlp-models pass it (it was an ignored init kwarg). Dropped for calls made "
        "from allennlp code only.",
        "before allennlp",
    ),
    Patch(
        "torch_load_weights_only",
        "torch >= 2.6 loads with weights_only=True, which rejects AllenNLP's own trainer checkpoints (numpy "
        "scalars in training_state) and TensorCache entries. torch.load calls made from allennlp code without an "
        "explicit weights_only get weights_only=False (AllenNLP's previous behaviour: its archives are pickles by "
        "design); every other caller keeps torch's safe default.",
        "before allennlp",
    ),
    Patch(
        "torchvision_optional",
        "Without torchvision (no CPU build matches torch 2.13 here) allennlp/data/image_loader.py and "
        "allennlp/modules/vision/* fail at import, which breaks `import allennlp.data`. While exactly those "
        "modules execute, a placeholder torchvision is visible; it is removed from sys.modules right after, so "
        "nothing else (transformers' availability checks included) ever sees it. Using an image loader or "
        "region detector raises ImportError naming torchvision. With a real torchvision installed, nothing is done.",
        "allennlp.data.image_loader, allennlp.modules.vision.*",
    ),
    Patch(
        "reduce_on_plateau_verbose",
        "torch 2.7+ removed ReduceLROnPlateau(verbose=...); allennlp's ReduceOnPlateauLearningRateScheduler always "
        "passes it. Its __init__ is replaced by one that passes every other argument unchanged.",
        "allennlp.training.learning_rate_schedulers.pytorch_lr_schedulers",
    ),
    Patch(
        "multiprocess_loader_spawn",
        "MultiProcessDataLoader(start_method='spawn') fails on Python 3.11 with 'SemLock created in a fork "
        "context is being shared with a process in a spawn context': allennlp builds its queues with "
        "the loader's context, but the tqdm lock handed to every worker is mp.RLock() from the default (fork) "
        "context. While the workers start, that lock comes from the loader's context.",
        "allennlp.data.data_loaders.multiprocess_data_loader",
    ),
    Patch(
        "nltk_download_offline",
        "allennlp_models/rc/tools/narrativeqa.py calls nltk.download('punkt'/'wordnet') at import time, which "
        "`import_plugins()` triggers; offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE set) that is a network "
        "attempt and error output on every start. Offline, the download is skipped while that module executes "
        "(the NarrativeQA metric then raises nltk's usual LookupError if the data is missing).",
        "allennlp_models.rc.tools.narrativeqa (offline only)",
    ),
)

_applied: list[str] = []
_vision_stub_names: list[str] = []


def applied() -> list[str]:
    """Names of the patches applied in this process, in order."""
    return list(_applied)


def _mark(name: str) -> None:
    if name not in _applied:
        _applied.append(name)


def _from_allennlp(depth: int) -> bool:
    """Whether the frame ``depth`` levels above the caller belongs to allennlp or allennlp_models."""
    try:
        frame = sys._getframe(depth + 1)
    except ValueError:
        return False
    name = frame.f_globals.get("__name__", "") or ""
    return any(name == root or name.startswith(root + ".") for root in ALLENNLP_ROOTS)


# ---------------------------------------------------------------------------------------------
# global patches, applied once before `allennlp` executes
# ---------------------------------------------------------------------------------------------
def _patch_huggingface_hub() -> None:
    import huggingface_hub

    if not hasattr(huggingface_hub, "HfFolder"):

        class HfFolder:
            """The token store of huggingface_hub < 1.0, as a wrapper over its replacements."""

            @classmethod
            def get_token(cls):
                return huggingface_hub.get_token()

            @classmethod
            def save_token(cls, token):
                huggingface_hub.login(token=token, add_to_git_credential=False)

            @classmethod
            def delete_token(cls):
                huggingface_hub.logout()

        HfFolder.__module__ = "huggingface_hub"
        huggingface_hub.HfFolder = HfFolder
    if not hasattr(huggingface_hub, "Repository"):

        class Repository:
            """Placeholder for the git-based ``Repository`` removed in huggingface_hub 1.0."""

            def __init__(self, *args, **kwargs):
                raise NotImplementedError(
                    "huggingface_hub.Repository was removed in huggingface_hub 1.0, so `allennlp push-to-hf` cannot "
                    "run on this stack; upload the archive with huggingface_hub.HfApi().upload_folder(...) instead"
                )

        Repository.__module__ = "huggingface_hub"
        huggingface_hub.Repository = Repository
    _mark("huggingface_hub_legacy_names")


def _make_adamw():
    import torch

    class AdamW(torch.optim.Optimizer):
        """transformers' AdamW (removed in transformers 5), restored as it was in transformers 4.x.

        Adam with decoupled weight decay; ``correct_bias=False`` skips the bias correction (as in BERT's
        original TensorFlow optimizer).
        """

        def __init__(
            self,
            params,
            lr: float = 1e-3,
            betas=(0.9, 0.999),
            eps: float = 1e-6,
            weight_decay: float = 0.0,
            correct_bias: bool = True,
            no_deprecation_warning: bool = False,
        ):
            if lr < 0.0:
                raise ValueError(f"Invalid learning rate: {lr} - should be >= 0.0")
            if not 0.0 <= betas[0] < 1.0:
                raise ValueError(f"Invalid beta parameter: {betas[0]} - should be in [0.0, 1.0)")
            if not 0.0 <= betas[1] < 1.0:
                raise ValueError(f"Invalid beta parameter: {betas[1]} - should be in [0.0, 1.0)")
            if not 0.0 <= eps:
                raise ValueError(f"Invalid epsilon value: {eps} - should be >= 0.0")
            defaults = {
                "lr": lr,
                "betas": betas,
                "eps": eps,
                "weight_decay": weight_decay,
                "correct_bias": correct_bias,
            }
            super().__init__(params, defaults)

        @torch.no_grad()
        def step(self, closure=None):
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    grad = p.grad
                    if grad.is_sparse:
                        raise RuntimeError("Adam does not support sparse gradients, please consider SparseAdam instead")
                    state = self.state[p]
                    if len(state) == 0:
                        state["step"] = 0
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                    beta1, beta2 = group["betas"]
                    state["step"] += 1
                    exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                    denom = exp_avg_sq.sqrt().add_(group["eps"])
                    step_size = group["lr"]
                    if group["correct_bias"]:
                        bias_correction1 = 1.0 - beta1 ** state["step"]
                        bias_correction2 = 1.0 - beta2 ** state["step"]
                        step_size = step_size * math.sqrt(bias_correction2) / bias_correction1
                    p.addcdiv_(exp_avg, denom, value=-step_size)
                    if group["weight_decay"] > 0.0:
                        p.add_(p, alpha=-group["lr"] * group["weight_decay"])
            return loss

    AdamW.__module__ = "transformers.optimization"
    AdamW.__qualname__ = "AdamW"
    return AdamW


def _patch_transformers_adamw() -> None:
    # Importing processing_utils re-executes transformers/__init__ once and replaces sys.modules["transformers"];
    # an attribute set before that would be lost.
    import transformers.processing_utils  # noqa: F401

    transformers = sys.modules["transformers"]
    try:
        present = "AdamW" in dir(transformers) and transformers.AdamW is not None
    except (AttributeError, ImportError, RuntimeError):
        present = False
    if not present:
        adamw = _make_adamw()
        transformers.AdamW = adamw
        try:
            import transformers.optimization as optimization

            if not hasattr(optimization, "AdamW"):
                optimization.AdamW = adamw
        except ImportError:
            pass
    _mark("transformers_adamw")


def _special_token_template(tokenizer, pair: bool):
    """(prefix, middle, suffix) special-token ids the tokenizer's post-processor adds."""
    import copy

    cache = tokenizer.__dict__.setdefault("_attn_plugins_special_templates", {})
    if pair in cache:
        return cache[pair]
    backend = copy.deepcopy(tokenizer._tokenizer)  # without the padding/truncation the tokenizer may carry
    backend.no_padding()
    backend.no_truncation()
    if pair:
        enc = backend.encode(["a"], ["b"], is_pretokenized=True, add_special_tokens=True)
    else:
        enc = backend.encode(["a"], is_pretokenized=True, add_special_tokens=True)
    # special tokens before the first sequence, between the two, and after the last
    parts: list[list[int]] = [[]]
    previous_special = True
    for token_id, special in zip(enc.ids, enc.special_tokens_mask, strict=True):
        if special:
            if not previous_special:
                parts.append([])
            parts[-1].append(token_id)
        previous_special = bool(special)
    if not previous_special:
        parts.append([])
    if not pair:
        parts = [parts[0], [], parts[-1]]
    cache[pair] = tuple(tuple(p) for p in parts[:3]) if len(parts) >= 3 else (tuple(parts[0]), (), tuple(parts[-1]))
    return cache[pair]


def _build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
    """Add the tokenizer's special tokens to one sequence or a pair of sequences of ids."""
    if getattr(self, "_tokenizer", None) is None or self._tokenizer.post_processor is None:
        return list(token_ids_0) + (list(token_ids_1) if token_ids_1 is not None else [])
    prefix, middle, suffix = _special_token_template(self, token_ids_1 is not None)
    if token_ids_1 is None:
        return [*prefix, *token_ids_0, *suffix]
    return [*prefix, *token_ids_0, *middle, *token_ids_1, *suffix]


def _patch_tokenizers() -> None:
    from transformers import tokenization_utils_base

    base = tokenization_utils_base.PreTrainedTokenizerBase
    if not hasattr(base, "encode_plus"):

        def encode_plus(self, text, text_pair=None, **kwargs):
            """transformers 4's encode_plus: one text (or pair) encoded with ``tokenizer(...)``."""
            return self(text, text_pair=text_pair, **kwargs)

        base.encode_plus = encode_plus
    if not hasattr(base, "batch_encode_plus"):

        def batch_encode_plus(self, batch_text_or_text_pairs, **kwargs):
            """transformers 4's batch_encode_plus: a batch of texts (or pairs) encoded with ``tokenizer(...)``."""
            if batch_text_or_text_pairs and isinstance(batch_text_or_text_pairs[0], tuple):
                texts = [pair[0] for pair in batch_text_or_text_pairs]
                pairs = [pair[1] for pair in batch_text_or_text_pairs]
                return self(texts, text_pair=pairs, **kwargs)
            return self(batch_text_or_text_pairs, **kwargs)

        base.batch_encode_plus = batch_encode_plus
    _mark("tokenizer_encode_plus")

    try:
        from transformers.tokenization_utils_tokenizers import TokenizersBackend as FastTokenizer
    except ImportError:  # pragma: no cover - older layouts
        from transformers import PreTrainedTokenizerFast as FastTokenizer
    if not hasattr(FastTokenizer, "build_inputs_with_special_tokens"):
        FastTokenizer.build_inputs_with_special_tokens = _build_inputs_with_special_tokens
    _mark("tokenizer_build_inputs_with_special_tokens")

    import transformers

    def drop_add_special_tokens(owner, attr):
        original = owner.__dict__[attr]
        func = original.__func__

        @functools.wraps(func)
        def from_pretrained(cls, *args, **kwargs):
            if "add_special_tokens" in kwargs and _from_allennlp(1):
                kwargs.pop("add_special_tokens")
            return func(cls, *args, **kwargs)

        from_pretrained._attn_plugins_original = original
        setattr(owner, attr, classmethod(from_pretrained))

    for owner in (transformers.AutoTokenizer, base):
        if not hasattr(owner.__dict__.get("from_pretrained"), "__func__"):
            continue
        if hasattr(owner.__dict__["from_pretrained"].__func__, "_attn_plugins_original"):
            continue
        drop_add_special_tokens(owner, "from_pretrained")
    _mark("tokenizer_from_pretrained_add_special_tokens")


def _patch_torch_load() -> None:
    import torch

    if getattr(torch.load, "_attn_plugins_patched", False):
        return
    original = torch.load

    @functools.wraps(original)
    def load(*args, **kwargs):
        if "weights_only" not in kwargs and _from_allennlp(1):
            kwargs["weights_only"] = False
        return original(*args, **kwargs)

    load._attn_plugins_patched = True
    load._attn_plugins_original = original
    torch.load = load
    _mark("torch_load_weights_only")


_GLOBAL_DONE = False


def apply_global() -> None:
    """The patches that must be in place before ``allennlp`` loads (idempotent)."""
    global _GLOBAL_DONE
    if _GLOBAL_DONE:
        return
    _GLOBAL_DONE = True
    _patch_huggingface_hub()
    _patch_transformers_adamw()
    _patch_tokenizers()
    _patch_torch_load()


# ---------------------------------------------------------------------------------------------
# torchvision placeholder for the vision modules
# ---------------------------------------------------------------------------------------------
_VISION_MODULES = ("allennlp.data.image_loader", "allennlp.modules.vision")


def _needs_vision_stub(fullname: str) -> bool:
    return any(fullname == m or fullname.startswith(m + ".") for m in _VISION_MODULES)


class _MissingTorchvision(types.ModuleType):
    """Stands in for torchvision: any attribute is another placeholder; calling one raises ImportError."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        child = _MissingTorchvision(f"{self.__name__}.{name}")
        setattr(self, name, child)
        return child

    def __call__(self, *args, **kwargs):
        raise ImportError(
            f"{self.__name__} needs torchvision, which is not installed (allennlp's image loader and vision "
            "modules use it); install a torchvision build matching your torch"
        )

    def __mro_entries__(self, bases):  # used as a base class: fail at use, not at import
        return (_MissingBase,)


class _MissingBase:
    def __init__(self, *args, **kwargs):
        raise ImportError("this allennlp vision component needs torchvision, which is not installed")


def _torchvision_installed() -> bool:
    import importlib.util

    if isinstance(sys.modules.get("torchvision"), _MissingTorchvision):
        return False
    try:
        return importlib.util.find_spec("torchvision") is not None
    except (ImportError, ValueError):
        return False


_vision_stub_owner: list[str] = []


def _install_vision_stub(owner: str) -> None:
    if _vision_stub_names or _torchvision_installed():
        return
    _vision_stub_owner[:] = [owner]
    root = _MissingTorchvision("torchvision")
    for name in (
        "torchvision",
        "torchvision.ops",
        "torchvision.ops.boxes",
        "torchvision.models",
        "torchvision.models.detection",
        "torchvision.io",
        "torchvision.transforms",
    ):
        module = root
        for part in name.split(".")[1:]:
            module = getattr(module, part)
        if name not in sys.modules:
            sys.modules[name] = module
            _vision_stub_names.append(name)
    _mark("torchvision_optional")


def _remove_vision_stub() -> None:
    while _vision_stub_names:
        name = _vision_stub_names.pop()
        if isinstance(sys.modules.get(name), _MissingTorchvision):
            del sys.modules[name]


# ---------------------------------------------------------------------------------------------
# nltk.download at import time, offline
# ---------------------------------------------------------------------------------------------
_NLTK_MODULE = "allennlp_models.rc.tools.narrativeqa"
_nltk_saved: list = []


def _offline() -> bool:
    import os

    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _skip_nltk_download() -> None:
    if not _offline():
        return
    try:
        import nltk
    except ImportError:
        return

    def download(*args, **kwargs):
        return False

    _nltk_saved[:] = [nltk, nltk.download]
    nltk.download = download
    _mark("nltk_download_offline")


def _restore_nltk_download() -> None:
    if _nltk_saved:
        nltk, original = _nltk_saved
        nltk.download = original
        _nltk_saved.clear()


# ---------------------------------------------------------------------------------------------
# per-module patches, applied right after the module executed
# ---------------------------------------------------------------------------------------------
def _patch_reduce_on_plateau(module) -> None:
    import inspect

    import torch

    cls = getattr(module, "ReduceOnPlateauLearningRateScheduler", None)
    if cls is None or "verbose" in inspect.signature(torch.optim.lr_scheduler.ReduceLROnPlateau).parameters:
        return
    base = cls.__mro__[1]

    def init(
        self,
        optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        verbose: bool = False,
        threshold_mode: str = "rel",
        threshold: float = 1e-4,
        cooldown: int = 0,
        min_lr=0,
        eps: float = 1e-8,
    ) -> None:
        lr_scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer=optimizer,
            mode=mode,
            factor=factor,
            patience=patience,
            threshold_mode=threshold_mode,
            threshold=threshold,
            cooldown=cooldown,
            min_lr=min_lr,
            eps=eps,
        )
        base.__init__(self, lr_scheduler)

    init.__signature__ = inspect.signature(cls.__init__)  # allennlp's FromParams reads the signature
    init.__doc__ = cls.__init__.__doc__
    init.__name__ = "__init__"  # named as the method it replaces
    cls.__init__ = init
    _mark("reduce_on_plateau_verbose")


def _patch_multiprocess_loader(module) -> None:
    loader = getattr(module, "MultiProcessDataLoader", None)
    if loader is None or getattr(loader, "_attn_plugins_patched", False):
        return
    mp = module.mp  # torch.multiprocessing, as allennlp imports it

    def context_aware(method):
        @functools.wraps(method)
        def wrapper(self, queue, ctx):
            # allennlp creates the workers' tqdm lock with mp.RLock() (the default, fork, context) and
            # hands it to processes of `ctx`; make mp.RLock the loader context's for the duration.
            saved = {name: getattr(mp, name) for name in ("RLock", "Lock") if hasattr(mp, name)}
            try:
                for name in saved:
                    setattr(mp, name, getattr(ctx, name))
                return method(self, queue, ctx)
            finally:
                for name, value in saved.items():
                    setattr(mp, name, value)

        return wrapper

    for name in ("_start_instance_workers", "_start_batch_workers"):
        if hasattr(loader, name):
            setattr(loader, name, context_aware(getattr(loader, name)))
    loader._attn_plugins_patched = True
    _mark("multiprocess_loader_spawn")


_AFTER = {
    "allennlp.training.learning_rate_schedulers.pytorch_lr_schedulers": _patch_reduce_on_plateau,
    "allennlp.data.data_loaders.multiprocess_data_loader": _patch_multiprocess_loader,
}


# ---------------------------------------------------------------------------------------------
# called by the import hook
# ---------------------------------------------------------------------------------------------
def before_exec(fullname: str) -> None:
    """Called just before the code of ``fullname`` (an allennlp or allennlp_models module) runs."""
    if fullname.split(".")[0] in ALLENNLP_ROOTS:
        apply_global()
    if _needs_vision_stub(fullname):
        _install_vision_stub(fullname)
    if fullname == _NLTK_MODULE:
        _skip_nltk_download()


def cleanup_exec(fullname: str) -> None:
    """Called when the module's code finished (also when it raised)."""
    if fullname == _NLTK_MODULE:
        _restore_nltk_download()
    if _vision_stub_owner and _vision_stub_owner[0] == fullname:
        _vision_stub_owner.clear()
        _remove_vision_stub()


def after_exec(fullname: str, module) -> None:
    """Called right after the code of ``fullname`` ran successfully."""
    patch = _AFTER.get(fullname)
    if patch is not None:
        patch(module)


def patch_loaded_modules() -> None:
    """Apply the per-module patches to allennlp modules imported before the hook was installed."""
    for fullname, patch in _AFTER.items():
        module = sys.modules.get(fullname)
        if module is not None:
            patch(module)
