"""AllenNLP add-on: predictions with their attention, and attention-based saliency interpreters.

From the command line (any archived AllenNLP model)::

    allennlp predict MODEL.tar.gz INPUT.jsonl \\
        --include-package attn_plugins.integrations.allennlp_predictor --predictor attn_plugins

The ``attn_plugins`` predictor runs the model's own default predictor (or the one named with
``--predictor-args '{"inner": "seq2seq"}'``) and adds an ``"attention"`` entry to each prediction:
every captured layer with its heads' weights (``[head][query][key]``, padding removed) and the
tokens of its queries and keys. In Python, :func:`with_attention` wraps any existing ``Predictor``.

Interpreters (AllenNLP's ``SaliencyInterpreter`` API, so ``allennlp.interpret`` tooling works with
attention): ``attn_plugins_attention`` (raw attention of one query row), ``attn_plugins_rollout``
and ``attn_plugins_flow`` (attention rollout / flow over the self-attention layers, from
:mod:`attn_plugins.saliency`). Records with only cross-attention (a seq2seq decoder's alignment)
give each source token its attention averaged over the output steps. Output follows AllenNLP's
gradient interpreters: ``{"instance_1": {"grad_input_1": [...]}}`` with L1-normalised scores.
"""

from __future__ import annotations

from typing import Any

from ..compat import install_allennlp_compat

install_allennlp_compat()

import torch  # noqa: E402
from allennlp.common.util import JsonDict, sanitize  # noqa: E402
from allennlp.data.fields.text_field import TextField  # noqa: E402
from allennlp.data.instance import Instance  # noqa: E402
from allennlp.interpret.saliency_interpreters.saliency_interpreter import SaliencyInterpreter  # noqa: E402
from allennlp.predictors.predictor import Predictor  # noqa: E402

import attn_plugins  # noqa: E402

from ..record import AttentionRecord  # noqa: E402

__all__ = ["AttentionPredictor", "AttentionSaliencyInterpreter", "attention_json", "with_attention"]

PREDICTOR_NAME = "attn_plugins"


def _text_fields(instance: Instance) -> list[tuple[str, TextField]]:
    return [(name, field) for name, field in instance.fields.items() if isinstance(field, TextField)]


def _strip_row_tokens(tokens: list[str] | None, length: int) -> list[str] | None:
    return None if tokens is None else list(tokens[:length])


def attention_json(
    record: AttentionRecord,
    instances: list[Instance] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    decimals: int | None = 6,
) -> list[dict[str, Any]]:
    """One JSON-able ``{"layers": [...], "tokens": ..., ...}`` per batch item of ``record``.

    Padding is removed per item (the key length of its source field; decoder rows end after the
    first ``@end@``). Each layer has ``name``, ``stack``, ``kind``, ``index``, ``heads`` (model head
    indices), ``weights`` (``[head][query][key]``), ``query_tokens`` and ``key_tokens``.

    Args:
        record: the record of one batch.
        instances: the batch's AllenNLP instances (their first text field gives the source tokens).
        outputs: the predictor's outputs (accepted for symmetry with the predictor; not read).
        decimals: round the weights (``None``: full precision).

    Returns:
        One dict per batch item.
    """
    out = []
    batch = record.batch_size
    mask = record.inputs.get("attention_mask")
    for b in range(batch):
        instance = instances[b] if instances else None
        fields = _text_fields(instance) if instance is not None else []
        source_tokens: list[str] | None = [str(t.text) for t in fields[0][1].tokens] if fields else None
        if mask is not None and mask.dim() == 2:
            source_len = int(mask[b].sum())
        elif source_tokens is not None:
            source_len = len(source_tokens)
        else:
            source_len = None
        record_tokens = record.tokens[b] if record.tokens else None
        if source_tokens is None or (source_len is not None and len(source_tokens) != source_len):
            source_tokens = _strip_row_tokens(list(record_tokens), source_len or 0) if record_tokens else source_tokens
        decoder_tokens = record.decoder_tokens[b] if record.decoder_tokens else None
        decoder_len = None
        if decoder_tokens is not None:
            decoder_len = decoder_tokens.index("@end@") + 1 if "@end@" in decoder_tokens else len(decoder_tokens)
            decoder_tokens = decoder_tokens[:decoder_len]
        layers = []
        for layer in record.layers:
            w = layer.weights[b].detach().to(torch.float64).cpu()
            q_len, k_len = w.shape[-2], w.shape[-1]
            keys = source_len if source_len is not None and k_len >= source_len else k_len
            if layer.stack == "decoder" and layer.kind == "cross":
                queries = decoder_len if decoder_len is not None else q_len
                query_tokens = decoder_tokens
            elif q_len == k_len:
                queries = keys
                query_tokens = source_tokens
            else:
                queries = q_len
                query_tokens = None
            w = w[:, :queries, :keys]
            if decimals is not None:
                w = torch.round(w, decimals=decimals)
            layers.append(
                {
                    "name": layer.name,
                    "stack": layer.stack,
                    "kind": layer.kind,
                    "index": layer.index,
                    "heads": layer.head_indices,
                    "weights": w.tolist(),
                    "query_tokens": query_tokens,
                    "key_tokens": source_tokens,
                }
            )
        item: dict[str, Any] = {
            "tokens": source_tokens,
            "layers": layers,
            "metadata": {k: v for k, v in record.metadata.items() if k != "stored_dtype"},
        }
        if decoder_tokens is not None:
            item["decoder_tokens"] = decoder_tokens
        out.append(item)
    return out


class AttentionPredictor(Predictor):
    """Runs another predictor and adds the model's captured attention to every prediction.

    Args:
        model: the AllenNLP model.
        dataset_reader: its dataset reader.
        frozen: put the model in eval mode (AllenNLP's ``Predictor`` argument).
        inner: a ``Predictor`` instance, or a registered predictor name (default: the model's
            ``default_predictor``).
        layers: what is captured, as in ``capture()``.
        heads: the heads captured, as in ``capture()``.
        decimals: rounds the weights in the JSON (``None`` keeps full precision).
    """

    def __init__(
        self,
        model: Any,
        dataset_reader: Any,
        frozen: bool = True,
        inner: str | Predictor | None = None,
        layers: Any = None,
        heads: Any = None,
        decimals: int | None = 6,
    ) -> None:
        if isinstance(inner, Predictor):
            self.inner: Predictor = inner
        else:
            name = inner or getattr(model, "default_predictor", None)
            if name is None or name == PREDICTOR_NAME:
                raise ValueError(
                    f"{type(model).__name__} names no default predictor: pass the inner predictor's name, e.g. "
                    '--predictor-args \'{"inner": "text_classifier"}\''
                )
            self.inner = Predictor.by_name(name)(model, dataset_reader, frozen=frozen)
        super().__init__(model, dataset_reader, frozen=frozen)
        self.layers = layers
        self.heads = heads
        self.decimals = decimals

    # ----- what the CLI and users call -------------------------------------------------------------
    def _json_to_instance(self, json_dict: JsonDict) -> Instance:
        return self.inner._json_to_instance(json_dict)

    def load_line(self, line: str) -> JsonDict:
        return self.inner.load_line(line)

    def predict_json(self, inputs: JsonDict) -> JsonDict:
        return self.predict_batch_json([inputs])[0]

    def predict_batch_json(self, inputs: list[JsonDict]) -> list[JsonDict]:
        instances = self.inner._batch_json_to_instances(inputs)
        return self.predict_batch_instance(instances)

    def predict_instance(self, instance: Instance) -> JsonDict:
        return self.predict_batch_instance([instance])[0]

    def predict_batch_instance(self, instances: list[Instance]) -> list[JsonDict]:
        for instance in instances:
            self._dataset_reader.apply_token_indexers(instance)
        with attn_plugins.capture(self._model, layers=self.layers, heads=self.heads) as cap:
            outputs = self.inner.predict_batch_instance(instances)
        records = cap.records
        outputs = [dict(o) for o in outputs]
        if not records:
            for o in outputs:
                o["attention"] = None
            return outputs
        items = attention_json(records[-1], instances, outputs, self.decimals)
        for output, item in zip(outputs, items, strict=True):
            output["attention"] = item
        sanitized: list[JsonDict] = sanitize(outputs)
        return sanitized

    def dump_line(self, outputs: JsonDict) -> str:
        return self.inner.dump_line(outputs)


Predictor.register(PREDICTOR_NAME)(AttentionPredictor)


def with_attention(predictor: Predictor, **options: Any) -> AttentionPredictor:
    """Wrap an existing AllenNLP ``Predictor``: its predictions gain an ``"attention"`` entry.

    Args:
        predictor: the predictor to wrap (its model and dataset reader are reused).
        **options: :class:`AttentionPredictor` options (``layers``, ``heads``, ``decimals``).

    Returns:
        The wrapping predictor.
    """
    return AttentionPredictor(predictor._model, predictor._dataset_reader, frozen=False, inner=predictor, **options)


# ---------------------------------------------------------------------------------------------
# saliency interpreters
# ---------------------------------------------------------------------------------------------
class AttentionSaliencyInterpreter(SaliencyInterpreter):
    """Attention-based token saliency through AllenNLP's interpret API.

    The class attribute ``method`` is ``"attention"`` (raw attention of the ``query`` row,
    ``layer``/``head`` as in :func:`attn_plugins.analysis.rollout.raw_attention`), ``"rollout"`` or
    ``"flow"`` (the registered subclasses).

    Args:
        predictor: the AllenNLP predictor (or an :class:`AttentionPredictor`).
        query: the attention row read: an int among the real tokens, ``"cls"`` or ``"last"``.
        **options: passed to the saliency method (``layer=``, ``head=``, ``head_fusion=`` ...).
    """

    method = "attention"

    def __init__(self, predictor: Predictor, query: int | str = 0, **options: Any) -> None:
        super().__init__(predictor)
        self.query = query
        self.options = options

    def _instances(self, inputs: JsonDict) -> list[Instance]:
        predictor = self.predictor.inner if isinstance(self.predictor, AttentionPredictor) else self.predictor
        try:
            labeled: list[Instance] = predictor.json_to_labeled_instances(inputs)
            return labeled
        except (NotImplementedError, RuntimeError, KeyError, AttributeError):  # "implement this method ..."
            return [predictor._json_to_instance(inputs)]

    def saliency_interpret_from_json(self, inputs: JsonDict) -> JsonDict:
        """AllenNLP's interpreter API: attention saliency of each labelled instance of ``inputs``.

        Args:
            inputs: the predictor's JSON input.

        Returns:
            ``{"instance_1": {"grad_input_1": [...]}, ...}``, scores L1-normalised.
        """
        model = self.predictor._model
        reader = self.predictor._dataset_reader
        results: dict[str, Any] = {}
        for idx, instance in enumerate(self._instances(inputs)):
            reader.apply_token_indexers(instance)
            with attn_plugins.capture(model) as cap:
                model.forward_on_instance(instance)
            record = cap.records[-1]
            scores = self._scores(record)
            total = scores.abs().sum()
            normalised = (scores.abs() / total if total > 0 else scores).tolist()
            results[f"instance_{idx + 1}"] = {"grad_input_1": normalised}
        sanitized: JsonDict = sanitize(results)
        return sanitized

    def _scores(self, record: AttentionRecord) -> torch.Tensor:
        mask = record.inputs.get("attention_mask")
        if record.select(None, "self") or record.select("encoder", "self"):
            from ..saliency import attention_saliency

            result = attention_saliency(record, self.method, query=self.query, **self.options)[0]
            return torch.as_tensor(result.scores, dtype=torch.float64)
        cross = record.select("decoder", "cross") or record.select(None, "cross")
        if not cross:
            raise ValueError("the model's record holds no attention to interpret")
        layer = cross[-1]
        w = layer.weights[0].to(torch.float64).mean(dim=0)  # [steps, source]
        steps = w.shape[0]
        if record.decoder_tokens and "@end@" in record.decoder_tokens[0]:
            steps = record.decoder_tokens[0].index("@end@") + 1
        scores: torch.Tensor = w[:steps].mean(dim=0)
        if mask is not None and mask.dim() == 2:
            scores = scores[: int(mask[0].sum())]
        return scores


@SaliencyInterpreter.register("attn_plugins_attention")
class RawAttentionInterpreter(AttentionSaliencyInterpreter):
    method = "attention"


@SaliencyInterpreter.register("attn_plugins_rollout")
class RolloutInterpreter(AttentionSaliencyInterpreter):
    method = "rollout"


@SaliencyInterpreter.register("attn_plugins_flow")
class FlowInterpreter(AttentionSaliencyInterpreter):
    method = "flow"
