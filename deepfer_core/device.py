"""Where a model runs (``auto`` takes the GPU when there is one), and how a batch gets there (``HostStaging``)."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def pick_device(name: str, setting: str = "device") -> torch.device:
    """A ``torch.device`` for ``auto``, ``cpu`` or ``cuda``; ``ValueError`` naming ``setting`` when CUDA is missing."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{setting} is 'cuda' but no CUDA GPU is available")
    return torch.device(name)


class HostStaging:
    """A batch's arrays (frames of several cameras, or face crops) stacked once into a reused host buffer, then put
    on ``device``. On CUDA the buffer is page-locked (pinned) and the upload a ``non_blocking`` copy: one DMA with no
    pageable bounce buffer, and the host goes on while it runs (a CUDA event keeps the buffer until the copy is
    done). On the CPU the tensor is the buffer itself (no allocation per batch). Each worker thread has its own
    buffer, grown to the largest batch it has seen. ``enabled=False``, or a CUDA device while CUDA is unavailable
    (pinning needs the driver), is the plain path: ``torch.from_numpy(np.stack(arrays)).to(device)``."""

    def __init__(self, device: torch.device, enabled: bool = True):
        import torch

        self.device = device
        self.enabled = enabled and (device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_available()))
        self.pinned = self.enabled and device.type == "cuda"
        self._local = threading.local()

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "reused_buffer": self.enabled, "pinned": self.pinned,
                "non_blocking": self.pinned}

    def upload(self, arrays: Sequence[np.ndarray]) -> torch.Tensor:
        """``[len(arrays), *shape]`` on the device, from arrays of one shape and dtype. On the CPU it is this thread's
        buffer: valid until the thread's next upload (a batch call uses it and lets it go)."""
        import torch

        if not self.enabled:
            return torch.from_numpy(np.stack(arrays)).to(self.device)
        host = self._host((len(arrays), *arrays[0].shape), arrays[0].dtype)
        np.stack(arrays, out=host.numpy())
        return self._send(host)

    def upload_concat(self, arrays: Sequence[np.ndarray]) -> torch.Tensor:
        """The arrays joined along their first axis, on the device (face crops of several frames)."""
        import torch

        if not self.enabled:
            return torch.from_numpy(np.ascontiguousarray(np.concatenate(arrays))).to(self.device)
        host = self._host((sum(len(a) for a in arrays), *arrays[0].shape[1:]), arrays[0].dtype)
        np.concatenate(arrays, out=host.numpy())
        return self._send(host)

    def stage(self, arrays: Sequence[np.ndarray]) -> torch.Tensor:
        """The stacked host tensor alone (what ``upload`` sends), for tests: a view of this thread's buffer."""
        host = self._host((len(arrays), *arrays[0].shape), arrays[0].dtype)
        np.stack(arrays, out=host.numpy())
        return host

    def _host(self, shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
        import torch

        tdtype = torch.from_numpy(np.empty(0, dtype)).dtype
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        local = self._local
        event = getattr(local, "event", None)
        if event is not None:
            event.synchronize()  # the last copy out of this buffer has finished: it may be written again
            local.event = None
        buf = getattr(local, "buffer", None)
        if buf is None or buf.numel() < nbytes:
            buf = None  # the old buffer goes before the new one is made
            local.buffer = None
            try:
                buf = torch.empty(nbytes, dtype=torch.uint8, pin_memory=self.pinned)
            except RuntimeError as exc:  # a driver that cannot pin: the plain path from now on
                log.warning("cannot pin %d bytes of host memory (%s); uploading unpinned", nbytes, exc)
                self.pinned = False
                buf = torch.empty(nbytes, dtype=torch.uint8)
            local.buffer = buf
        return buf[:nbytes].view(tdtype).view(shape)

    def _send(self, host: torch.Tensor) -> torch.Tensor:
        import torch

        if self.device.type == "cpu":
            return host
        out = host.to(self.device, non_blocking=self.pinned)
        if self.pinned:
            event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            event.record()
            self._local.event = event
        return out
