"""The AllenNLP compatibility layer, against the real allennlp 2.10.1 and allennlp-models 2.10.1."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from attn_plugins.compat import PTH_NAME, install_allennlp_compat, patch_list, pth_path

install_allennlp_compat()
allennlp = pytest.importorskip("allennlp")

import torch  # noqa: E402

from attn_plugins.compat import allennlp_patches  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_patch_is_documented_and_applied():
    import allennlp.commands  # noqa: F401
    import allennlp.data.data_loaders.multiprocess_data_loader  # noqa: F401
    import allennlp.training.learning_rate_schedulers  # noqa: F401

    names = [name for name, fixes, when in patch_list()]
    assert len(names) == len(set(names)) >= 9
    assert all(fixes and when for _, fixes, when in patch_list())
    applied = allennlp_patches.applied()
    for name in names:
        if name == "nltk_download_offline" and "allennlp_models.rc.tools.narrativeqa" not in sys.modules:
            continue
        if name == "torchvision_optional" and importlib.util.find_spec("torchvision") is not None:
            continue
        assert name in applied, name


def test_console_script_and_fresh_processes_get_the_patches_through_the_pth_hook():
    assert os.path.exists(pth_path()), f"{PTH_NAME} is not installed: run scripts/install_allennlp.sh"
    code = textwrap.dedent("""
        import sys
        import allennlp.commands, allennlp.data, allennlp.training.optimizers
        import transformers
        assert 'attn_plugins' not in sys.modules or True
        print('ok', hasattr(transformers, 'AdamW'), '_attn_plugins_compat_bootstrap' in sys.modules)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], cwd="/", env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ok", "True", "True"]
    script = os.path.join(os.path.dirname(sys.executable), "allennlp")
    out = subprocess.run([script, "--help"], cwd="/", env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "predict" in out.stdout and "interpret" not in out.stderr


def test_huggingface_hub_legacy_names():
    import huggingface_hub
    from allennlp.common.push_to_hf import push_to_hf  # noqa: F401 - imported HfFolder/Repository

    assert huggingface_hub.HfFolder.get_token() == huggingface_hub.get_token()
    with pytest.raises(NotImplementedError, match="upload_folder"):
        huggingface_hub.Repository("x", clone_from="y")


def test_transformers_adamw_survives_the_lazy_module_reload_and_trains():
    import transformers
    from allennlp.training.optimizers import Optimizer

    assert sys.modules["transformers"].AdamW is transformers.AdamW
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 1)
    optimizer = Optimizer.from_params(
        model_parameters=list(layer.named_parameters()),
        params=allennlp.common.Params(
            {"type": "huggingface_adamw", "lr": 0.05, "correct_bias": False, "weight_decay": 0.01}
        ),
    )
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(layer(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8


def test_reduce_on_plateau_accepts_verbose():
    from allennlp.common import Params
    from allennlp.training.learning_rate_schedulers import LearningRateScheduler

    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    scheduler = LearningRateScheduler.from_params(
        optimizer=optimizer, params=Params({"type": "reduce_on_plateau", "verbose": True, "patience": 0, "factor": 0.5})
    )
    scheduler.step(1.0)
    scheduler.step(2.0)
    assert optimizer.param_groups[0]["lr"] == 0.5


def test_torch_load_keeps_the_safe_default_outside_allennlp(tmp_path):
    import numpy as np

    path = tmp_path / "state.th"
    torch.save({"epoch": np.int64(3), "metric": np.float64(0.5)}, path)
    with pytest.raises(Exception, match="weights_only"):
        torch.load(path)  # called from here: torch's default (weights_only=True) is kept
    scope = {"__name__": "allennlp.training.checkpointer", "torch": torch, "path": path}
    exec("state = torch.load(path)", scope)  # a call made from allennlp code
    assert int(scope["state"]["epoch"]) == 3


def test_tokenizer_patches_with_a_real_fast_tokenizer(minilm_path):
    from allennlp.data.token_indexers import PretrainedTransformerIndexer
    from allennlp.data.tokenizers import PretrainedTransformerTokenizer
    from allennlp.data.vocabulary import Vocabulary
    from transformers import AutoTokenizer

    tokenizer = PretrainedTransformerTokenizer(minilm_path)  # from_pretrained(add_special_tokens=...) + encode_plus
    tokens = tokenizer.tokenize("Attention is all you need")
    assert tokens[0].text == "[CLS]" and tokens[-1].text == "[SEP]"
    hf = AutoTokenizer.from_pretrained(minilm_path)
    with pytest.raises(AttributeError):  # outside allennlp, transformers 5's behaviour is unchanged
        AutoTokenizer.from_pretrained(minilm_path, add_special_tokens=False)
    a = hf("attention weights", add_special_tokens=False)["input_ids"]
    b = hf("are not explanations", add_special_tokens=False)["input_ids"]
    assert hf.build_inputs_with_special_tokens(a) == hf("attention weights")["input_ids"]
    assert hf.build_inputs_with_special_tokens(a, b) == hf("attention weights", "are not explanations")["input_ids"]
    assert hf.encode_plus("attention weights")["input_ids"] == hf("attention weights")["input_ids"]
    indexer = PretrainedTransformerIndexer(minilm_path, max_length=4)  # folds with build_inputs_with_special_tokens
    indexed = indexer.tokens_to_indices(tokenizer.tokenize("one two three four five six seven"), Vocabulary())
    assert indexed["token_ids"][0] == hf.cls_token_id and len(indexed["token_ids"]) > 9


def test_vision_modules_import_without_torchvision():
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: the placeholder is not used")
    import allennlp.data  # noqa: F401
    import allennlp.modules.vision  # noqa: F401
    from allennlp.data.image_loader import TorchImageLoader

    assert "torchvision" not in sys.modules
    assert importlib.util.find_spec("torchvision") is None
    with pytest.raises(ImportError, match="torchvision"):
        TorchImageLoader().load("image.png")


def test_import_plugins_loads_allennlp_models_offline():
    from allennlp.common.plugins import import_plugins
    from allennlp.models import Model

    import_plugins()
    assert "simple_seq2seq" in Model.list_available()
    assert "rouge" in sys.modules  # py-rouge needs pkg_resources (setuptools < 81)


def test_spawn_data_loader(tmp_path):
    from allennlp.data.data_loaders import MultiProcessDataLoader
    from allennlp.data.tokenizers import WhitespaceTokenizer
    from allennlp.data.vocabulary import Vocabulary
    from allennlp_models.generation.dataset_readers import Seq2SeqDatasetReader

    data = tmp_path / "data.tsv"
    data.write_text("".join(f"a b {i}\tc {i}\n" for i in range(8)))
    reader = Seq2SeqDatasetReader(source_tokenizer=WhitespaceTokenizer())
    loader = MultiProcessDataLoader(reader, str(data), batch_size=4, num_workers=1, start_method="spawn")
    loader.index_with(Vocabulary.from_instances(reader.read(str(data))))
    batches = list(loader)
    assert sum(len(b["source_tokens"]["tokens"]["tokens"]) for b in batches) == 8
