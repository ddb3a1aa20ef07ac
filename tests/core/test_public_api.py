import attn_plugins

PUBLIC = {"AttentionRecord", "CaptureError", "LayerAttention", "RecordFormatError", "__version__", "capture", "export"}


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
