"""gRPC link benchmark: what a host driver gets from a board served by ``npuvp serve``.

A real server runs in a child process (``python -m vp.cli serve`` on loopback); this process
connects with :class:`drivers.transport_grpc.GrpcTransport`, the driver's transport, and
measures (medians of several repetitions):

* ``reg_ops_per_s`` -- register reads per second in batches of ``REG_BATCH`` ops (reads of
  ``id.SCRATCH``, a valid register), i.e. round trips x ops per batch. Target >= 50,000.
* ``write_gb_per_s`` / ``read_gb_per_s`` -- bulk host->HBM and HBM->host copies of one
  ``BUFFER_BYTES`` buffer (GB = 10**9 bytes) the way the gRPC transport moves them to a board on
  this machine by default: through the shared-memory window (DESIGN.md §5), gRPC carrying one
  small control message per request. Reads land in a reused host buffer
  (``read_mem(..., out=)``), as a driver reads into a pinned buffer. Target >= 1 GB/s.
* ``stream_write_gb_per_s`` / ``stream_read_gb_per_s`` -- the same transfers streamed over gRPC
  in ``MEM_CHUNK_BYTES`` chunks (``grpc://...?shm=0``; what a remote host gets);
  ``stream_read_fresh_gb_per_s`` returns a newly allocated array.
* ``memcpy_gb_per_s`` -- a numpy copy of the same buffer into an already-touched buffer in
  this process, in the same run: the machine's ceiling, to read the link figures against.
* ``memcpy_fresh_gb_per_s`` -- the same copy into newly allocated memory (``np.array``): what
  page faults cost on this machine; ``stream_read_fresh_gb_per_s`` pays this too (on VMs that hand
  freed memory back to the host it can be several times slower).

Wall-clock figures of the simulator, not simulated time. Run ``python -m vp.bench.grpc_bench``
or ``npuvp bench grpc`` to print them.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from drivers.transport_grpc import GrpcTransport
from vp.bench import print_figures
from vp.server import server_subprocess
from vp.spec.host import MEM_CHUNK_BYTES, RegOp
from vp.spec.regmap import REGMAP

#: Register ops per batch.
REG_BATCH = 256
#: Bulk transfer size (bytes).
BUFFER_BYTES = 256 << 20
#: Repetitions of each measurement (the median is reported).
REPEATS = 7
#: Wall-clock seconds of register traffic per repetition.
REG_SECONDS = 0.5
#: Register read in every op (any valid register would do; SCRATCH has no side effects).
REG_ADDRESS = REGMAP.reg("id.SCRATCH").address


def _reg_ops_per_s(t: GrpcTransport, seconds: float) -> float:
    ops = [RegOp(False, REG_ADDRESS)] * REG_BATCH
    count, start = 0, time.perf_counter()
    while True:
        reply = t.reg_batch(ops)
        count += len(reply.results)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def run(board_path: str | os.PathLike | None = None, *, repeats: int = REPEATS,
        buffer_bytes: int = BUFFER_BYTES, reg_seconds: float = REG_SECONDS) -> dict:
    """Start a server, measure, stop it; returns the figures (see module doc) plus the
    conditions they were measured under."""
    data = np.frombuffer(np.random.default_rng(0).bytes(buffer_bytes), dtype=np.uint8)
    copy = np.empty_like(data)
    copy[:] = 0                                   # touch the pages before timing memcpy
    received = np.empty_like(data)                # a reused host buffer, as drivers pin one
    received[:] = 0
    with server_subprocess(board_path) as (address, _proc):
        with GrpcTransport(address, shm=False) as t, GrpcTransport(address, shm=True) as w:
            info = t.info()
            base = info.hbm_base
            if buffer_bytes > info.hbm_size:
                raise ValueError(f"buffer of {buffer_bytes} bytes exceeds the board's HBM")
            # warm up: connection, code paths, the server's HBM pages, the shared window
            _reg_ops_per_s(t, 0.1)
            for link in (t, w):
                link.write_mem(base, data)
                if not np.array_equal(link.read_mem(base, buffer_bytes, received)[0], data):
                    raise AssertionError("gRPC bench: data read back differs from data written")

            f = {k: [] for k in ("reg", "write", "read", "read_fresh", "shm_write", "shm_read",
                                 "memcpy", "fresh")}
            rate = lambda fn, *a: buffer_bytes / _timed(fn, *a) / 1e9     # noqa: E731
            for _ in range(repeats):           # interleaved, so drifts hit every figure alike
                f["reg"].append(_reg_ops_per_s(t, reg_seconds))
                f["write"].append(rate(t.write_mem, base, data))
                f["read"].append(rate(t.read_mem, base, buffer_bytes, received))
                f["read_fresh"].append(rate(t.read_mem, base, buffer_bytes))
                f["shm_write"].append(rate(w.write_mem, base, data))
                f["shm_read"].append(rate(w.read_mem, base, buffer_bytes, received))
                f["memcpy"].append(rate(np.copyto, copy, data))
                f["fresh"].append(rate(np.array, data))
            now_ps = t.info().now_ps
    med = {k: statistics.median(v) for k, v in f.items()}
    return {
        "reg_ops_per_s": med["reg"],
        "write_gb_per_s": med["shm_write"],
        "read_gb_per_s": med["shm_read"],
        "stream_write_gb_per_s": med["write"],
        "stream_read_gb_per_s": med["read"],
        "stream_read_fresh_gb_per_s": med["read_fresh"],
        "memcpy_gb_per_s": med["memcpy"],
        "memcpy_fresh_gb_per_s": med["fresh"],
        "reg_batch_us": REG_BATCH / med["reg"] * 1e6,
        "reg_batch_ops": REG_BATCH,
        "buffer_bytes": buffer_bytes,
        "chunk_bytes": MEM_CHUNK_BYTES,
        "repeats": repeats,
        "board": info.board_name,
        "board_now_ps": now_ps,
    }


def main() -> None:
    print_figures(run())


if __name__ == "__main__":
    main()
