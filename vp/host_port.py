"""The host port: the board as the host sees it, behind every transport.

Transports (embedded, gRPC) are thin adapters over :class:`HostPort`; all host-visible logic
lives here and in the host interface model, so the board answers the same way, with the same
simulated times, whichever transport carries the request.

Time is driven by the host (DESIGN.md §3): each register access first lets the link latency
pass, each memory request the latency plus bytes over link bandwidth, and the board runs
meanwhile; an interrupt wait runs the board until an interrupt in the mask is pending or the
timeout (simulated ps) passes. Polling therefore never hangs the board. Requests are checked
before they touch the board: a malformed or oversized one raises ``RequestError``; an access the
hardware refuses is reported the way hardware does (error record + interrupt) and raises
``GuestError``. Either way the board keeps its state and keeps serving.
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator, Sequence

import numpy as np

from vp.board import Board
from vp.kernel import as_bytes
from vp.spec.board_config import to_document
from vp.spec.errors import GuestError, RequestError
from vp.spec.host import (MAX_BATCH_OPS, MAX_MEM_REQUEST_BYTES, DeviceInfo, RegBatchReply,
                          RegOp, RegResult, check_out_buffer)
from vp.spec.regmap import DEVICE_ID, REGMAP, VERSION_MAJOR, VERSION_MINOR, VERSION_PATCH

_U32 = 0xFFFF_FFFF
_U64 = (1 << 64) - 1


class HostPort:
    """Host-side entry points of one board. Times are simulated picoseconds."""

    def __init__(self, board: Board):
        self.board = board
        self.sim = board.sim
        self.hostif = board.hostif

    @classmethod
    def open(cls, board_path: str | None = None) -> "HostPort":
        """Build the board described by ``board_path`` (None: the default board)."""
        return cls(Board.from_file(board_path))

    def info(self) -> DeviceInfo:
        cfg = self.board.config
        return DeviceInfo(
            board_name=cfg.name, device_id=DEVICE_ID,
            version=(VERSION_MAJOR, VERSION_MINOR, VERSION_PATCH),
            features=REGMAP.reg("id.FEATURES").reset, bar_size=REGMAP.size,
            hbm_base=cfg.hbm.base, hbm_size=cfg.hbm.size,
            link_latency_ps=cfg.host_link.latency_ps, link_bytes_per_s=cfg.host_link.bandwidth,
            now_ps=self.sim.now, extra={"board_file": str(cfg.source or ""),
                   "board": json.dumps(to_document(cfg))})

    # -- registers ---------------------------------------------------------------------------
    def reg_batch(self, ops: Sequence[RegOp]) -> RegBatchReply:
        """Execute ``ops`` in order; stop after the first one the board refuses."""
        if len(ops) > MAX_BATCH_OPS:
            raise RequestError(f"register batch of {len(ops)} operations exceeds the limit "
                               f"of {MAX_BATCH_OPS}")
        for i, op in enumerate(ops):
            if not (isinstance(op.address, int) and 0 <= op.address <= _U64):
                raise RequestError(f"operation {i}: address {op.address!r} is not a 64-bit "
                                   "unsigned integer")
            if op.write and not (isinstance(op.value, int) and 0 <= op.value <= _U32):
                raise RequestError(f"operation {i}: value {op.value!r} does not fit a 32-bit "
                                   "register")
        results: list[RegResult] = []
        cost = self.hostif.reg_cost_ps()
        advance, access = self.sim.advance, self.hostif.reg_access
        for op in ops:
            advance(cost)
            status, value = access(op.write, op.address, op.value)
            results.append(RegResult(status, value))
            if status:
                break
        return RegBatchReply(results, self.sim.now)

    # -- memory ------------------------------------------------------------------------------
    def write_mem(self, address: int, nbytes: int,
                  chunks: Iterable[bytes | memoryview | np.ndarray]) -> int:
        """Write ``nbytes`` arriving as ``chunks`` to HBM at ``address``; returns now (ps).

        The whole range is checked before any byte is written."""
        self._check_mem_request(address, nbytes, write=True)
        self.sim.advance(self.hostif.mem_cost_ps(nbytes))
        written = 0
        for chunk in chunks:
            data = as_bytes(chunk)
            if written + len(data) > nbytes:
                raise RequestError(f"memory write at 0x{address:x} announced {nbytes} bytes "
                                   f"but sent more; the first {written} bytes were written")
            self.hostif.write_mem(address + written, data)
            written += len(data)
        if written != nbytes:
            raise RequestError(f"memory write at 0x{address:x} announced {nbytes} bytes but "
                               f"sent {written}; those {written} bytes were written")
        return self.sim.now

    def read_mem(self, address: int, nbytes: int,
                 out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Read ``nbytes`` of HBM from ``address`` into ``out`` (a C-contiguous uint8 array of
        ``nbytes``, or a new one); returns (the array, now in ps)."""
        self._check_mem_request(address, nbytes, write=False)
        out = check_out_buffer(out, nbytes)
        self.sim.advance(self.hostif.mem_cost_ps(nbytes))
        self.hostif.read_mem_into(address, out)
        return out, self.sim.now

    def read_mem_chunks(self, address: int, nbytes: int,
                        chunk_bytes: int) -> tuple[int, Iterator[np.ndarray]]:
        """Like :meth:`read_mem`, for streaming: the request is checked and its link time
        charged now; returns (now in ps, iterator of chunks of at most ``chunk_bytes``).

        Each chunk is read from HBM when the iterator is advanced, into one reused buffer: a
        chunk is valid until the next one is taken. Advance it on the simulation thread."""
        self._check_mem_request(address, nbytes, write=False)
        self.sim.advance(self.hostif.mem_cost_ps(nbytes))
        return self.sim.now, self._chunks(address, nbytes, chunk_bytes)

    def _chunks(self, address: int, nbytes: int, chunk_bytes: int) -> Iterator[np.ndarray]:
        buf = np.empty(min(chunk_bytes, nbytes), dtype=np.uint8)
        for lo in range(0, nbytes, chunk_bytes):
            view = buf[:min(chunk_bytes, nbytes - lo)]
            self.hostif.read_mem_into(address + lo, view)
            yield view

    def _check_mem_request(self, address: int, nbytes: int, write: bool) -> None:
        what = "write" if write else "read"
        if not isinstance(address, int) or not 0 <= address <= _U64:
            raise RequestError(f"memory {what}: address {address!r} is not a 64-bit unsigned integer")
        if not isinstance(nbytes, int) or nbytes <= 0:
            raise RequestError(f"memory {what} at 0x{address:x}: length {nbytes!r} must be a "
                               "positive integer")
        if nbytes > MAX_MEM_REQUEST_BYTES:
            raise RequestError(f"memory {what} of {nbytes} bytes exceeds the per-request limit "
                               f"of {MAX_MEM_REQUEST_BYTES} bytes; split it")
        record = self.hostif.check_mem(address, nbytes, write)
        if record is not None:
            windows = ", ".join(f"[0x{b:x}, 0x{b + s:x})" for b, s in self.hostif.mem_windows)
            raise GuestError(record.code, address, record.syndrome,
                             f"{record.code.name}: memory {what} of {nbytes} bytes at "
                             f"0x{address:x} is outside HBM and the host window ({windows})")

    # -- interrupts and reset ----------------------------------------------------------------
    def wait_irq(self, mask: int, timeout_ps: int) -> tuple[int, int]:
        """Run until ``pending & mask`` is non-zero or ``timeout_ps`` pass.

        Returns (pending & mask, 0 on timeout; now in ps)."""
        if not isinstance(mask, int) or not 0 < mask <= _U32:
            raise RequestError(f"interrupt mask {mask!r} must be a non-zero 32-bit value")
        if not isinstance(timeout_ps, int) or timeout_ps < 0:
            raise RequestError(f"interrupt timeout {timeout_ps!r} must be a non-negative "
                               "integer of picoseconds")
        irq = self.board.irq
        self.sim.settle()
        deadline = self.sim.now + timeout_ps
        while not irq.pending & mask and self.sim.now < deadline:
            self.sim.run(deadline - self.sim.now, until=irq.line_changed)
        return irq.pending & mask, self.sim.now

    def stats(self) -> dict:
        """The board's statistics now (see ``Transport.stats``)."""
        self.sim.settle()
        return {"now_ps": self.sim.now, **self.board.stats()}

    def reset(self) -> int:
        """Power-on reset of the board (simulated time keeps running); returns now (ps)."""
        self.board.power_on_reset()
        self.sim.settle()
        return self.sim.now

    def close(self) -> None:
        self.board.close()
