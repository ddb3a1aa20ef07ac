"""Copies from an accelerator to host memory that overlap the model's compute.

On CUDA each tensor is copied into pinned host memory on a side stream (ordered after the kernels
that produced it), and the caller waits only when it needs the bytes. On CPU, or for CPU targets of
CPU tensors, it is a plain ``.to()``.
"""

from __future__ import annotations

import torch


class HostCopier:
    def __init__(self) -> None:
        self._streams: dict = {}
        self._events: list = []

    def _stream(self, device: torch.device):
        if device not in self._streams:
            self._streams[device] = torch.cuda.Stream(device=device)
        return self._streams[device]

    def to_host(self, tensor: torch.Tensor, dtype: torch.dtype | None = None):
        """A host copy of ``tensor`` and an event to wait on (``None`` when the copy is already done)."""
        dtype = dtype or tensor.dtype
        if tensor.device.type != "cuda":
            return tensor.to(device="cpu", dtype=dtype), None
        if tensor.dtype != dtype:
            tensor = tensor.to(dtype)  # on the device, before the copy: fewer bytes over PCIe
        side = self._stream(tensor.device)
        side.wait_stream(torch.cuda.current_stream(tensor.device))
        host = torch.empty(tensor.shape, dtype=dtype, pin_memory=True)
        with torch.cuda.stream(side):
            host.copy_(tensor, non_blocking=True)
            event = torch.cuda.Event()
            event.record(side)
        tensor.record_stream(side)  # the device memory stays allocated until the copy has run
        self._events.append(event)
        return host, event

    def synchronize(self) -> None:
        """Wait for every copy started so far."""
        for event in self._events:
            event.synchronize()
        self._events.clear()
