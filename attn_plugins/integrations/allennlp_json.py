"""Exporter ``"allennlp"``: saliency in exactly the JSON of AllenNLP Interpret.

AllenNLP's saliency interpreters (``SimpleGradient``, ``IntegratedGradient``, ``SmoothGradient``)
return, for the labelled instances of one input::

    {"instance_1": {"grad_input_1": [s_1, ..., s_n], "grad_input_2": [...]}, "instance_2": {...}}

with one list per embedded text field, each value ``|e| / sum(|e|)`` (absolute, L1-normalised).
``grad_input_k`` follows AllenNLP's numbering: gradients are collected by a backward hook, so
they arrive in the reverse order of the embedding calls; ``grad_input_1`` is the field embedded
last. An instance given here as several fields lists them in the order the model embeds them,
and they are numbered the same way. Keys come out in AllenNLP's order (``grad_input_1`` first).

One deviation, on purpose: an all-zero score vector (AllenNLP divides 0 by 0 and writes NaN,
which is not JSON) is written as zeros.

Which of our methods equals which interpreter (for the same model and the loss of the
predicted label, ``Explainer(..., output="loss")``):

* ``SimpleGradient``  = ``input_x_gradient`` (gradient . embedding, summed over the embedding;
  allennlp 2.10.1 itself dots every token's gradient with the first token's embedding, a defect
  described in :mod:`attn_plugins.saliency.allennlp`);
* ``IntegratedGradient`` = ``integrated_gradients`` with ``n_steps=10, integration="riemann_left"``
  and the zero baseline.

(:class:`attn_plugins.saliency.allennlp.AllenNLPExplainer` runs them on an AllenNLP predictor.)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..atomic import write_text
from ..saliency.collect import Instance, as_instances
from .html_page import escape


def normalize_l1(scores: Sequence[float] | np.ndarray) -> list[float]:
    """AllenNLP's normalisation: ``[abs(e) / L1(e) for e in scores]`` (zeros stay zeros).

    Args:
        scores: one score per token.

    Returns:
        The normalised scores (all zeros when the norm is 0 or not finite).
    """
    values = np.asarray(scores, dtype=np.float64)
    norm = float(np.linalg.norm(values, ord=1))
    if norm == 0 or not math.isfinite(norm):
        return [0.0 for _ in values]
    return [math.fabs(float(v)) / norm for v in values]


def allennlp_dict(instances: list[Instance]) -> dict[str, dict[str, list[float]]]:
    """The AllenNLP Interpret dict of some instances.

    Args:
        instances: each a list of fields, in the order the model embeds them.

    Returns:
        ``{"instance_1": {"grad_input_1": [...], ...}, ...}`` (see the module docstring).
    """
    out = {}
    for i, fields in enumerate(instances):
        grads = {}
        for k, sal in enumerate(reversed(fields)):
            grads[f"grad_input_{k + 1}"] = normalize_l1(sal.scores)
        out[f"instance_{i + 1}"] = grads
    return out


class AllenNLPExport:
    """The AllenNLP Interpret dict (``data``); ``save(path)`` writes it as JSON.

    Args:
        data: the dict :func:`allennlp_dict` made.
        instances: the saliency results it was made from.
    """

    def __init__(self, data: dict[str, dict[str, list[float]]], instances: list[Instance]) -> None:
        self.data = data
        self.instances = instances

    def to_json(self, indent: int | None = None) -> str:
        """The dict as JSON text.

        Args:
            indent: ``json.dumps``'s indent (None: one line).

        Returns:
            The JSON text.
        """
        return json.dumps(self.data, indent=indent)

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write :meth:`to_json` to ``path`` (atomically).

        Args:
            path: the ``.json`` file.

        Returns:
            The path written.
        """
        return write_text(path, self.to_json())

    def _repr_html_(self) -> str:
        return f"<pre>{escape(self.to_json(indent=2))}</pre>"

    def __getitem__(self, key: str) -> dict[str, list[float]]:
        return self.data[key]

    def __repr__(self) -> str:
        return f"AllenNLPExport({len(self.data)} instances)"


def export_allennlp(
    obj: Any, *, method: str | None = None, query: Any = 0, merge_words: bool | str = False, **options: Any
) -> AllenNLPExport:
    """Saliency results (or a record, with ``method=``) as AllenNLP Interpret JSON.

    Args:
        obj: saliency results (see :mod:`attn_plugins.saliency.collect`) or a record.
        method: the method to pick from a ``{method: list}`` table, or to run on a record.
        query: the attention row, for a record.
        merge_words: ``True``/``"sum"``/``"mean"``/``"max"`` merges word pieces into words.
        **options: passed to the attention method, for a record.

    Returns:
        The export (``data``, ``to_json()``, ``save(path)``).
    """
    instances = as_instances(obj, method=method, query=query, merge_words=merge_words, **options)
    return AllenNLPExport(allennlp_dict(instances), instances)
