"""Shared-memory windows attached by the gRPC server (DESIGN.md §5: when host and board share
a machine, bulk bytes move through shared memory instead of the socket).

The client creates a POSIX shared-memory segment and asks the server to attach it by name; the
server only maps it, so the client owns its lifetime. A server holds at most
``MAX_SEGMENTS`` attachments at a time.
"""

from __future__ import annotations

import threading
from multiprocessing import resource_tracker, shared_memory

import numpy as np

from vp.spec.errors import RequestError

MAX_SEGMENTS = 64


class ShmWindows:
    """The segments clients have attached, by name. Thread-safe."""

    def __init__(self):
        self._segments: dict[str, shared_memory.SharedMemory] = {}
        self._lock = threading.Lock()

    def attach(self, name: str, nbytes: int) -> None:
        """Map the client's segment ``name`` of at least ``nbytes`` bytes."""
        with self._lock:
            if name in self._segments:
                return
            if len(self._segments) >= MAX_SEGMENTS:
                raise RequestError(f"too many shared-memory segments attached "
                                   f"({MAX_SEGMENTS}); detach one first")
            try:
                seg = shared_memory.SharedMemory(name=name)
            except (FileNotFoundError, OSError, ValueError) as exc:
                raise RequestError(f"cannot attach shared memory {name!r}: {exc} (is the "
                                   "client on this machine?)") from None
            # Python 3.11 registers attached segments for unlinking at exit: the client owns
            # this one, so the server must not remove it.
            resource_tracker.unregister(seg._name, "shared_memory")
            if seg.size < nbytes:
                seg.close()
                raise RequestError(f"shared memory {name!r} holds {seg.size} bytes, not the "
                                   f"{nbytes} announced")
            self._segments[name] = seg

    def view(self, name: str, nbytes: int) -> np.ndarray:
        """The first ``nbytes`` of segment ``name`` as a uint8 array."""
        with self._lock:
            seg = self._segments.get(name)
        if seg is None:
            raise RequestError(f"shared memory {name!r} is not attached (AttachShm first)")
        if nbytes > seg.size:
            raise RequestError(f"transfer of {nbytes} bytes exceeds shared memory {name!r} of "
                               f"{seg.size} bytes")
        return np.frombuffer(seg.buf, dtype=np.uint8, count=nbytes)

    def detach(self, name: str) -> None:
        with self._lock:
            seg = self._segments.pop(name, None)
        if seg is not None:
            _close(seg)

    def close(self) -> None:
        with self._lock:
            segments, self._segments = list(self._segments.values()), {}
        for seg in segments:
            _close(seg)


def _close(seg: shared_memory.SharedMemory) -> None:
    try:
        seg.close()
    except BufferError:          # a view is still alive (a request in flight): unmapped at exit
        pass
