import types

import attn_plugins
from attn_plugins import errors


def test_all_is_derived_from_the_module():
    """Every public name of the package namespace is in ``__all__`` and nothing else is (as httpx's
    ``test_exported_members``): a helper module imported into ``attn_plugins`` shows up here."""
    exported = {
        name
        for name, value in vars(attn_plugins).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    exported.add("__version__")
    assert set(attn_plugins.__all__) == exported
    assert len(attn_plugins.__all__) == len(set(attn_plugins.__all__))
    leaked = sorted(
        name
        for name, value in vars(attn_plugins).items()
        if isinstance(value, types.ModuleType) and not name.startswith("_")
    )
    # submodules appear as attributes once imported; they must be modules of the package itself
    assert all(getattr(attn_plugins, name).__name__ == f"attn_plugins.{name}" for name in leaked)


def test_every_public_error_is_in_one_tree_and_exported():
    classes = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    assert classes and all(issubclass(cls, errors.AttnPluginsError) for cls in classes)
    for cls in classes:
        assert getattr(attn_plugins, cls.__name__) is cls
    # each error is also the built-in exception callers already catch
    assert issubclass(errors.RecordFormatError, ValueError) and issubclass(errors.CaptureError, RuntimeError)
    assert issubclass(errors.MissingDependencyError, ImportError) and issubclass(errors.UnknownNameError, KeyError)


def test_missing_optional_dependency_names_the_extra():
    import pytest

    with pytest.raises(errors.MissingDependencyError, match=r'pip install "attn-plugins\[captum\]"'):
        errors.import_optional("captum.definitely_not_a_module", "this check")
    with pytest.raises(ImportError, match="pip install some_unknown_pkg"):
        errors.import_optional("some_unknown_pkg", "this check")


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
