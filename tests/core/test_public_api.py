import attn_plugins

PUBLIC = {"AttentionRecord", "CaptureError", "LayerAttention", "MemoryBudgetError", "RecordFormatError", "__version__", "capture", "export",
          "show", "heatmap", "explain", "compare",
          "attention_output", "register_attention_module", "unregister_attention_module"}


def test_all_is_exactly_the_public_names():
    assert set(attn_plugins.__all__) == PUBLIC
    assert len(attn_plugins.__all__) == len(PUBLIC)
    for name in PUBLIC:
        assert hasattr(attn_plugins, name)


def test_registries_list_choices_on_a_wrong_name():
    import pytest

    from attn_plugins.adapters import ADAPTERS
    from attn_plugins.integrations import EXPORTERS

    with pytest.raises(KeyError, match="unknown exporter 'nope'; available:"):
        EXPORTERS.get("nope")
    with pytest.raises(KeyError, match="unknown adapter 'x'; available: .*'huggingface'"):
        ADAPTERS.get("x")


def test_third_party_entries_through_entry_points(tmp_path, monkeypatch):
    """A plugin package declares `attn_plugins.exporters` / `attn_plugins.adapters` entry points."""
    from attn_plugins.registry import Registry

    package = tmp_path / "my_attn_plugin.py"
    package.write_text("def make(record, **options):\n    return ('exported', record, options)\n")
    dist = tmp_path / "my_attn_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-attn-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[attn_plugins.exporters]\nmine = my_attn_plugin:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("exporter", "attn_plugins.exporters")
    registry.register("builtin", lambda record: record)
    assert "mine" in registry.names() and "builtin" in registry.names()
    assert registry.get("mine")("rec", view="x") == ("exported", "rec", {"view": "x"})
