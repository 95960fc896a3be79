"""Driver example: the programming sequences of the board, start to finish.

This is what a driver developer does first on a new board: identify it, move data into HBM,
program a DMA copy and wait for its interrupt, run a program on a core through a command queue
(a GEMM on a context-free core, checked bit for bit against the op numerics), read the
counters and energy, and see how the board reports a bad access. ``npuvp demo`` runs it; it
works over any device URL.
"""

from __future__ import annotations

import numpy as np

from drivers.device import Device, open_device
from drivers.errors import DeviceError
from drivers.queue import CommandQueue
from vp.spec import isa, numerics
from vp.spec.units import MS, format_size, format_time, transfer_ps

MiB = 1 << 20


def dma_copy(dev: Device, src: int, dst: int, nbytes: int, timeout_ps: int = 10**12) -> int:
    """Copy ``nbytes`` inside HBM with the DMA engine; returns the simulated time it took (ps)
    from the START write to the completion interrupt."""
    b = dev.batch()
    for reg, value in (("dma.SRC_LO", src & 0xFFFF_FFFF), ("dma.SRC_HI", src >> 32),
                       ("dma.DST_LO", dst & 0xFFFF_FFFF), ("dma.DST_HI", dst >> 32),
                       ("dma.LEN", nbytes)):
        b.write(reg, value)
    b.execute()
    dev.write_fields("dma.CTRL", START=1, IRQ_EN=1)
    started = dev.now_ps
    done = dev.irq_mask("DMA_DONE", "DMA_ERROR")
    pending = dev.wait_irq(done, timeout_ps)
    took = dev.now_ps - started
    dev.write_fields("dma.STATUS", DONE=1, ERROR=1)   # W1C: acknowledge at the source
    dev.ack_irq(done)
    if pending & dev.irq_mask("DMA_ERROR"):
        err = dev.last_error()
        raise DeviceError(err["code"], err["address"], err["syndrome"],
                          f"DMA copy failed: {err['code'].name} at 0x{err['address']:x}")
    return took


def gemm_on_core(dev: Device, core: int, a: np.ndarray, b: np.ndarray, scratch: int) -> tuple[np.ndarray, int]:
    """C = A·B on ``core``: a program of LOAD, LOAD, GEMM, STORE, END placed in HBM at
    ``scratch`` and launched through command queue 0. Returns (C, simulated ps it took)."""
    m, k = a.shape
    n = b.shape[1]
    a_at, b_at, c_at, prog_at, ring = (scratch + i * MiB for i in range(5))
    dev.write_mem(a_at, a)
    dev.write_mem(b_at, b)
    prog = isa.Program()
    for hbm, sram, size in ((a_at, 0, a.nbytes), (b_at, a.nbytes, b.nbytes)):
        prog.append("LOAD", hbm=hbm, sram=sram, row_bytes=size, rows=1, hbm_stride=size,
                    sram_stride=size)
    c_sram = a.nbytes + b.nbytes
    prog.append("GEMM", m=m, n=n, k=k, a=0, b=a.nbytes, c=c_sram, scale=0, dtype_a="FP32",
                dtype_b="FP32")
    prog.append("STORE", hbm=c_at, sram=c_sram, row_bytes=m * n * 4, rows=1,
                hbm_stride=m * n * 4, sram_stride=m * n * 4)
    prog.append("END")
    dev.write_mem(prog_at, np.frombuffer(prog.to_bytes(), np.uint8))
    queue = CommandQueue(dev, 0, ring, 4096)
    started = dev.now_ps
    queue.submit(isa.encode_packet("LAUNCH", core_mask=1 << core, program=prog_at, arg=0),
                 isa.encode_packet("WAIT_CORES", core_mask=1 << core))
    queue.sync(timeout_ps=100 * MS)
    took = dev.now_ps - started
    return dev.read_mem(c_at, m * n * 4).view(np.float32).reshape(m, n), took


def run(url: str = "embedded://", nbytes: int = 16 * MiB, seed: int = 0, echo=print) -> dict:
    """Run the example on the board at ``url``; returns its figures."""
    with open_device(url) as dev:
        info = dev.info
        echo(f"board '{info.board_name}' at {url}: id 0x{info.device_id:08x}, register map "
             f"v{'.'.join(map(str, info.version))}, HBM {format_size(info.hbm_size)}")
        data = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)
        src, dst = info.hbm_base + 0x1000, info.hbm_base + nbytes + 0x2000
        t = dev.now_ps
        dev.write_mem(src, data)
        echo(f"host wrote {format_size(nbytes)} to HBM 0x{src:x} in {format_time(dev.now_ps - t)}")
        took = dma_copy(dev, src, dst, nbytes)
        copied = dev.read_mem(dst, nbytes)
        equal = bool(np.array_equal(copied, data))
        echo(f"DMA copied {format_size(nbytes)} 0x{src:x} -> 0x{dst:x} in {format_time(took)} "
             f"of simulated time; bytes {'match' if equal else 'DIFFER'}")
        cores = dev.read_reg("cp.CORES")
        gemm_equal = True
        if cores:
            rng = np.random.default_rng(seed)
            a = rng.standard_normal((8, 256), dtype=np.float32)
            b = rng.standard_normal((256, 512), dtype=np.float32)
            core = cores - 1
            c, gemm_ps = gemm_on_core(dev, core, a, b, dst + nbytes + MiB)
            gemm_equal = bool(np.array_equal(c, numerics.gemm(a, b)))
            stats = dev.stats()
            unit = stats["units"][f"core{core}"]
            echo(f"core {core} ran LOAD, LOAD, GEMM 8x256x512, STORE in {format_time(gemm_ps)} "
                 f"(queue to fence); {unit['macs_fp32']:,} MACs; result "
                 f"{'bit-exact with the op numerics' if gemm_equal else 'DIFFERS'}; board "
                 f"energy so far {stats['energy_pj']['total'] / 1e9:.2f} mJ "
                 f"(static {stats['energy_pj']['static'] / 1e9:.2f} mJ)")
        try:
            dev.write_reg("id.ID", 0)
        except DeviceError as exc:
            echo(f"writing a read-only register is refused as hardware would: {exc}")
        err = dev.last_error()
        dev.clear_error()
        echo(f"error record: {err['code'].name} at 0x{err['address']:x}; cleared. "
             f"Board time {format_time(dev.now_ps)}")
        return {"board": info.board_name, "bytes": nbytes, "dma_ps": took,
                "bytes_equal": equal and gemm_equal, "now_ps": dev.now_ps,
                "link_write_ps": info.link_latency_ps + transfer_ps(nbytes, info.link_bytes_per_s)}
