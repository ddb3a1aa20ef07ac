"""attn-plugins: exact attention capture from any PyTorch model, one record type, many views."""

from .capture import capture
from .collector import CaptureError
from .integrations import export
from .record import AttentionRecord, LayerAttention, RecordFormatError

__version__ = "0.1.0"

__all__ = [
    "AttentionRecord",
    "CaptureError",
    "LayerAttention",
    "RecordFormatError",
    "__version__",
    "capture",
    "export",
]
