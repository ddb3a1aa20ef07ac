"""Turning what users hand to a saliency exporter into instances and method tables.

Exporters accept:

* a :class:`TokenSaliency` (one instance, one field);
* a list of them (one instance each) or of tuples/lists of them (one instance with several
  fields in the order the model embeds them, e.g. the two sides of a similarity explanation);
* ``{method: list}`` (several methods over the same instances; the comparison view's input);
* an :class:`~attn_plugins.record.AttentionRecord` (attention-based saliency computed on the spot
  with ``method=`` ``"rollout"`` (default), ``"attention"`` or ``"flow"`` and ``query=``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .result import TokenSaliency

Instance = list[TokenSaliency]


def _is_record(obj: Any) -> bool:
    return type(obj).__name__ == "AttentionRecord" and hasattr(obj, "layers")


def as_instances(
    obj: Any, *, method: str | None = None, query: Any = 0, merge_words: bool | str = False, **options: Any
) -> list[Instance]:
    """A list of instances, each a list of fields (one :class:`TokenSaliency` per field).

    Args:
        obj: what an exporter was given (see the module docstring).
        method: the method of a ``{method: list}`` table, or of attention saliency from a record.
        query: the attention row, for a record (an int among the real tokens, ``"cls"``, ``"last"``).
        merge_words: ``True``/``"sum"``/``"mean"``/``"max"`` merges word pieces into words.
        **options: passed to the attention method, for a record.

    Returns:
        The instances.
    """
    if _is_record(obj):
        from .record_saliency import attention_saliency

        obj = attention_saliency(obj, method or "rollout", query=query, **options)
    elif isinstance(obj, Mapping):
        if method is None:
            if len(obj) != 1:
                raise ValueError(f"several methods given ({', '.join(obj)}): pass method= to pick one")
            method = next(iter(obj))
        if method not in obj:
            raise KeyError(f"no results for method {method!r}; have {', '.join(obj)}")
        obj = obj[method]
    if isinstance(obj, TokenSaliency):
        obj = [obj]
    instances: list[Instance] = []
    for item in obj:
        fields = [item] if isinstance(item, TokenSaliency) else list(item)
        if not fields or not all(isinstance(f, TokenSaliency) for f in fields):
            raise TypeError(f"expected TokenSaliency results, got {type(item).__name__}")
        instances.append(fields)
    if merge_words:
        how = "sum" if merge_words is True else merge_words
        instances = [[f.to_words(how) for f in fields] for fields in instances]
    return instances


def as_method_table(
    obj: Any, *, methods: Any = None, query: Any = 0, merge_words: bool | str = False, **options: Any
) -> dict[str, list[Instance]]:
    """``{method: [instance]}`` with the same instances (and tokens) under every method.

    Args:
        obj: a ``{method: list}`` table, a list of results, or a record.
        methods: the methods to keep (for a record: to compute; default attention, rollout, flow).
        query: the attention row, for a record.
        merge_words: ``True``/``"sum"``/``"mean"``/``"max"`` merges word pieces into words.
        **options: per-method options ``{method: {option: value}}``, for a record.

    Returns:
        The table; every method covers the same instances with the same tokens.
    """
    if _is_record(obj):
        from .record_saliency import attention_saliency

        names = list(methods or ("attention", "rollout", "flow"))
        table = {
            name: as_instances(attention_saliency(obj, name, query=query, **options.get(name, {}))) for name in names
        }
    elif isinstance(obj, Mapping):
        table = {name: as_instances(value) for name, value in obj.items()}
        if methods is not None:
            table = {name: table[name] for name in methods}
    else:
        instances = as_instances(obj)
        table = {}
        for fields in instances:
            name = fields[0].method
            table.setdefault(name, []).append(fields)
    if merge_words:
        how = "sum" if merge_words is True else merge_words
        table = {name: [[f.to_words(how) for f in fields] for fields in insts] for name, insts in table.items()}
    counts = {name: len(insts) for name, insts in table.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"methods cover different numbers of instances: {counts}")
    names = list(table)
    for i in range(len(table[names[0]]) if names else 0):
        reference = [f.tokens for f in table[names[0]][i]]
        for name in names[1:]:
            if [f.tokens for f in table[name][i]] != reference:
                raise ValueError(
                    f"instance {i + 1}: method {name!r} has other tokens than {names[0]!r} "
                    "(compare results of the same inputs, merged the same way)"
                )
    return table
