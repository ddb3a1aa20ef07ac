"""The adapter contract (attn_plugins/adapters/base.py) and the adapter registry.

A third-party adapter, written against ``adapters/base.py`` alone (the README's "Extending"
example, taken from the README itself), is installed through the ``attn_plugins.adapters`` entry
point group and run in a fresh interpreter, as a user's installed plugin would be.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from attn_plugins.adapters import ADAPTERS
from attn_plugins.registry import Registry

REPO = Path(__file__).resolve().parents[2]


def _readme_adapter() -> str:
    """The Python blocks of the README's "Extending" section, joined into one module."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Extending", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "the section shows the library's layer, then the adapter"
    assert len(blocks[1].strip().splitlines()) < 40, "the adapter stays under 40 lines"
    return "\n\n".join(blocks)


def _install_plugin(tmp_path: Path) -> None:
    source = _readme_adapter()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"torch", "attn_plugins.adapters.base"}  # nothing else of attn_plugins
    (tmp_path / "tiny_attn_plugin.py").write_text(source, encoding="utf-8")
    dist = tmp_path / "tiny_attn_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-attn-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[attn_plugins.adapters]\ntiny = tiny_attn_plugin:TinyAdapter\n")


_USE_PLUGIN = textwrap.dedent("""
    import torch
    import attn_plugins
    from attn_plugins.adapters import ADAPTERS, adapter_for
    from tiny_attn_plugin import TinyAdapter, TinyAttention

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([TinyAttention(), TinyAttention()])

        def forward(self, x):
            probs = []
            for block in self.blocks:
                x, p = block(x)
                probs.append(p)
            return x, probs

    torch.manual_seed(0)
    model = Model().eval()
    x = torch.randn(3, 5, 8)
    assert "tiny" in ADAPTERS.names() and adapter_for(model) is TinyAdapter
    with torch.no_grad():
        with attn_plugins.capture(model) as cap:
            _, probs = model(x)
            _, again = model(x[:2])
        assert len(cap.records) == 2  # one record per forward: the pass restarts the layer count
        layers = cap.records[0].layers
        assert [l.name for l in layers] == ["blocks.0", "blocks.1"] and [l.index for l in layers] == [0, 1]
        assert all(torch.equal(l.weights, p) for l, p in zip(layers, probs))
        assert all(torch.equal(l.weights, p) for l, p in zip(cap.records[1].layers, again))
        with attn_plugins.capture(model, layers=[1], heads=[1], dtype=torch.float16) as cap:
            _, probs = model(x)
        (layer,) = cap.record.layers
        assert layer.index == 1 and layer.heads == [1] and layer.weights.dtype == torch.float16
        assert torch.equal(layer.weights, probs[1][:, [1]].half())
        try:
            with attn_plugins.capture(model, heads=[2]):
                model(x)
        except ValueError as exc:
            assert "head 2 does not exist" in str(exc)
        else:
            raise AssertionError("a head the module does not have was accepted")
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    print("plugin ok")
""")


def test_third_party_adapter_through_the_entry_point_group(tmp_path):
    _install_plugin(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-c", _USE_PLUGIN], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "plugin ok" in done.stdout


def test_importing_the_package_imports_no_adapter_or_framework():
    """Built-in adapters are lazy references: resolved on first use, never at import."""
    code = (
        "import sys, attn_plugins\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'allennlp')\n"
        "      or m in ('attn_plugins.adapters.huggingface', 'attn_plugins.adapters.allennlp',\n"
        "               'attn_plugins.adapters.torch')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


def test_registry_refuses_a_name_already_registered():
    registry = Registry("adapter", "attn_plugins.test_group_nobody_uses")
    first, second = (lambda session: "first"), (lambda session: "second")
    registry.register("mine", first)
    with pytest.raises(ValueError, match="adapter named 'mine' is already registered.*replace=True"):
        registry.register("mine", second)
    assert registry.get("mine") is first  # the first entry is untouched
    registry.register("mine", second, replace=True)
    assert registry.get("mine") is second
    with pytest.raises(ValueError, match="'huggingface' is already registered"):
        ADAPTERS.register("huggingface", second)
    assert ADAPTERS.get("huggingface").__name__ == "HuggingFaceAdapter"


def test_lazy_references_resolve_on_first_use():
    registry = Registry("thing", "attn_plugins.test_group_nobody_uses")
    registry.register("sqrt", "math:sqrt")
    registry.register("broken", "not_a_module_anywhere:thing")
    assert registry.names() == ["broken", "sqrt"]  # listed without being imported
    assert registry.get("sqrt")(9.0) == 3.0
    with pytest.raises(ModuleNotFoundError):
        registry.get("broken")
    with pytest.raises(ValueError, match="'package.module:attr'"):
        registry.register("bad", "no_colon_here")
    with pytest.raises(TypeError, match="callable"):
        registry.register("bad", 42)


def test_builtin_adapters_are_classes_of_the_contract():
    import attn_plugins
    from attn_plugins.adapters.base import Adapter, Session

    assert isinstance(attn_plugins.capture(torch.nn.MultiheadAttention(4, 2)), Session)  # the capture is the session
    adapters = {name: ADAPTERS.get(name) for name in ADAPTERS.names() if name in ("huggingface", "allennlp", "torch")}
    assert set(adapters) == {"huggingface", "allennlp", "torch"}
    assert all(isinstance(cls, type) and issubclass(cls, Adapter) for cls in adapters.values())
    assert {name: cls.priority for name, cls in adapters.items()} == {"huggingface": 10, "allennlp": 20, "torch": 90}
    assert all(cls.name == name for name, cls in adapters.items())
    assert not adapters["huggingface"].matches(torch.nn.MultiheadAttention(4, 2))
    assert adapters["torch"].matches(torch.nn.MultiheadAttention(4, 2))
