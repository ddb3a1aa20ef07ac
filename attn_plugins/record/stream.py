"""Streaming capture: each layer is written to disk as it is produced (``capture(stream_to=dir)``).

A background thread writes the blocks (at most ``max_pending`` wait in memory, so the model is
slowed down only when the disk is slower than the model), each into its own safetensors shard of
a record directory (see :mod:`attn_plugins.record.directory`). Generation steps go to step files that
are merged into the layer's file at the end, block by block through a memory map, so memory
stays at about one layer whatever the record's size. If the capture fails, what it wrote is removed.
Every final file (layer shards, merged layers, inputs, ``record.json``) is written atomically.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Callable
from typing import Any

import torch

from ..atomic import atomic_path
from ..errors import StreamError
from ..offload import HostCopier
from . import shards
from .directory import INPUTS_FILE, LAYER_DIR, layer_file, write_json
from .format import record_meta

_STEPS = ".steps"


class StreamSink:
    def __init__(self, root: str, max_pending: int = 2) -> None:
        root = os.fspath(root)
        if os.path.isfile(root):
            raise FileExistsError(f"stream_to={root!r} is a file; give a directory")
        if os.path.isdir(root) and os.listdir(root):
            raise FileExistsError(f"stream_to={root!r} is not empty; give a new or empty directory")
        self.root = root
        self._created_root = not os.path.exists(root)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._copier = HostCopier()
        self._dirs: dict[int, str] = {}

    # ----- writing ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                path, tensors, events = item
                if self._error is None:
                    for event in events:
                        if event is not None:
                            event.synchronize()
                    shards.save_tensors(path, tensors)
            except BaseException as exc:  # noqa: BLE001 - reported to the capturing thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise StreamError(f"writing the streamed record under {self.root!r} failed: {self._error}") from self._error

    def record_dir(self, segment_no: int) -> str:
        if segment_no not in self._dirs:
            path = os.path.join(self.root, f"record-{segment_no:04d}")
            os.makedirs(os.path.join(path, LAYER_DIR, _STEPS), exist_ok=True)
            self._dirs[segment_no] = path
        return self._dirs[segment_no]

    def put(self, segment_no: int, key: tuple[Any, ...], block_no: int, tensors: dict[str, torch.Tensor]) -> str:
        """Queue one block for writing; returns its file (relative to the record directory)."""
        self._raise_error()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="attn-plugins-stream", daemon=True)
            self._thread.start()
        directory = self.record_dir(segment_no)
        final = layer_file(*key)
        relative = (
            final
            if block_no == 0
            else (f"{LAYER_DIR}/{_STEPS}/{os.path.basename(final)[: -len('.safetensors')]}-{block_no:05d}.safetensors")
        )
        host, events = {}, []
        for name, tensor in tensors.items():
            host[name], event = self._copier.to_host(tensor.detach())
            events.append(event)
        self._queue.put((os.path.join(directory, relative), host, events))
        return relative

    def flush(self) -> None:
        if self._thread is not None:
            self._queue.join()
        self._raise_error()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    # ----- finishing ----------------------------------------------------------------------------
    def merge(
        self,
        segment_no: int,
        key: tuple[Any, ...],
        files: list[str],
        shape_of: Callable[..., Any],
        place: Callable[..., Any],
    ) -> str:
        """Merge a layer's step files into its own file with ``place(blocks, out)``; returns that file."""
        directory = self.record_dir(segment_no)
        opened = [shards.open_tensors(os.path.join(directory, f)) for f in files]
        specs = {}
        for name in opened[0]:
            specs[name] = (opened[0][name].dtype, shape_of(name, [o[name] for o in opened]))
        final = layer_file(*key)
        with atomic_path(os.path.join(directory, final)) as tmp:
            out = shards.preallocate(tmp, specs)
            for name, target in out.items():
                place(name, [o[name] for o in opened], target)
            del out, opened
        for f in files[1:]:
            os.remove(os.path.join(directory, f))
        return final

    def write_record(self, segment_no: int, record: Any, entries: list[dict[str, Any]]) -> str:
        directory = self.record_dir(segment_no)
        shards.save_tensors(os.path.join(directory, INPUTS_FILE), {k: v.detach() for k, v in record.inputs.items()})
        shutil.rmtree(os.path.join(directory, LAYER_DIR, _STEPS), ignore_errors=True)
        write_json(directory, record_meta(record, entries))
        return directory

    def abort(self) -> None:
        """Stop writing and remove everything this capture wrote."""
        self._error = self._error or StreamError("capture aborted")
        try:
            self.close()
        finally:
            for path in self._dirs.values():
                shutil.rmtree(path, ignore_errors=True)
            if self._created_root and os.path.isdir(self.root) and not os.listdir(self.root):
                os.rmdir(self.root)
