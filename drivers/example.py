"""Driver example: the programming sequence of the DMA engine, start to finish.

This is what a driver developer does first on a new board: identify it, move data into HBM,
program a DMA copy, wait for its interrupt, check the bytes and the time it took, and see how
the board reports a bad access. ``npuvp demo`` runs it; it works over any device URL.
"""

from __future__ import annotations

import numpy as np

from drivers.device import Device, open_device
from drivers.errors import DeviceError
from vp.spec.units import format_size, format_time, transfer_ps

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
        try:
            dev.write_reg("id.ID", 0)
        except DeviceError as exc:
            echo(f"writing a read-only register is refused as hardware would: {exc}")
        err = dev.last_error()
        dev.clear_error()
        echo(f"error record: {err['code'].name} at 0x{err['address']:x}; cleared. "
             f"Board time {format_time(dev.now_ps)}")
        return {"board": info.board_name, "bytes": nbytes, "dma_ps": took,
                "bytes_equal": equal, "now_ps": dev.now_ps,
                "link_write_ps": info.link_latency_ps + transfer_ps(nbytes, info.link_bytes_per_s)}
