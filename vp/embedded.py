"""The embedded transport: the board runs inside the caller's process.

The driver loads this module by name for ``embedded://`` URLs; it is the one piece of the
device side the host side ever reaches, and only through the :class:`Transport` interface.
Calls are serialised by a lock (one simulation thread at a time), like the gRPC server's single
simulation thread. MyHDL allows one simulation per process: a second embedded board in the same
process is refused with a clear message until the first is closed.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from vp.host_port import HostPort
from vp.kernel import SimulationError
from vp.spec.host import DeviceInfo, RegBatchReply, RegOp
from vp.spec.transport import Transport, TransportError


class EmbeddedTransport(Transport):
    """Runs the board described by ``board_path`` (None: the default board) in-process."""

    def __init__(self, board_path: str | None = None):
        try:
            self._port = HostPort.open(board_path)
        except SimulationError as exc:
            raise TransportError(f"cannot open an embedded board: {exc}") from None
        self._lock = threading.Lock()
        self._closed = False

    def _call(self, fn, *args):
        with self._lock:
            if self._closed:
                raise TransportError("the embedded board is closed")
            return fn(*args)

    def info(self) -> DeviceInfo:
        return self._call(self._port.info)

    def reg_batch(self, ops: Sequence[RegOp]) -> RegBatchReply:
        return self._call(self._port.reg_batch, ops)

    def write_mem(self, address: int, data: np.ndarray) -> int:
        return self._call(self._port.write_mem, address, data.nbytes, (data,))

    def read_mem(self, address: int, nbytes: int,
                 out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        return self._call(self._port.read_mem, address, nbytes, out)

    def wait_irq(self, mask: int, timeout_ps: int) -> tuple[int, int]:
        return self._call(self._port.wait_irq, mask, timeout_ps)

    def stats(self) -> dict:
        return self._call(self._port.stats)

    def reset(self) -> int:
        return self._call(self._port.reset)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._port.close()


def open_transport(board_path: str | None = None) -> EmbeddedTransport:
    """Entry point the driver looks up by name."""
    return EmbeddedTransport(board_path)
