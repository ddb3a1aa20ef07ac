"""The attention record: one result type, one file format, and its readers and writers.

    types.py      AttentionRecord, LayerAttention (what every part of attn-plugins reads and writes)
    format.py     the format: name, version, metadata schema and its validation, size limits
    file.py       single-file records (one safetensors file, JSON in its header)
    directory.py  record directories (record.json + one shard per layer), memory-mapped
    shards.py     safetensors shards: plain writes, preallocate-and-fill, memory-mapped reads
    stream.py     the streaming writer of ``capture(stream_to=...)``

Record files and directories are treated as untrusted input: see :mod:`.format` and :mod:`.directory`.
"""

from .types import AttentionRecord, LayerAttention

__all__ = ["AttentionRecord", "LayerAttention"]
