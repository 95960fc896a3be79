"""Check 1: systolic GEMM cycles on real cores against DESIGN.md §7 / npu.md §6.

A small rig (CP, error unit, interrupts, a fixed-latency HBM behind a router) holds one
performance-mode :class:`~models.core.Core` per (array size, GEMM mode). Each GEMM runs as a
``[GEMM, END]`` program; its duration comes from simulated time (:class:`CoreProbe`) and must
agree with the core's ``matrix_busy_ps`` counter. The rig's clock is 1 GHz (a cycle is exactly
1000 ps, so a fractional cycle would show) and its SRAM bandwidth is made non-binding, so what is
measured is the matrix unit alone. Expected values are this file's own transcription of the
formulas, independent of ``models/core_timing.py``:

* ``ws``:        ``ceil(K/R) · ceil(N/C) · (2R + C + M − 2)``  (SCALE-Sim, folds in series)
* ``pipelined``: ``ceil(K/R) · ceil(N/C) · max(M, R) + R + C − 2``
"""

from __future__ import annotations

import numpy as np

from models.core import Core
from models.core_sync import Cluster
from models.core_timing import CoreParams
from models.cp import CommandProcessor
from models.error_unit import ErrorUnit
from models.irq import InterruptController
from models.regblock import RegisterBlock
from vp.kernel import NS, SEC, US, MemoryTarget, Module, Router, Simulator
from vp.spec.regmap import REGMAP
from vp.validation.check import Check, exact
from vp.validation.probe import CoreProbe

CLOCK_HZ = 1_000_000_000
CYCLE_PS = SEC // CLOCK_HZ
HBM_BASE, HBM_SIZE = 0, 64 << 20
PROGRAMS = 0x10_0000                  # program of core i at PROGRAMS + i * 64 KiB

#: (R, C) arrays: small, the CA size, the CF size, and a non-square one.
ARRAYS = ((8, 8), (32, 32), (128, 128), (16, 64))
#: (M, N, K): unit, GEMV, ragged, exact fits, larger than the array in every dimension.
SHAPES = ((1, 1, 1), (1, 512, 256), (7, 13, 29), (32, 32, 32), (100, 300, 200),
          (128, 128, 128), (513, 129, 257), (1024, 256, 512))
QUICK_ARRAYS = ARRAYS[:3]
QUICK_SHAPES = ((1, 512, 256), (7, 13, 29), (100, 300, 200), (513, 129, 257))
MODES = ("ws", "pipelined")


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def formula_cycles(m: int, n: int, k: int, r: int, c: int, mode: str) -> int:
    """DESIGN.md §7 (``ws``) and npu.md §6 (``pipelined``), transcribed independently."""
    folds = _cdiv(k, r) * _cdiv(n, c)
    if mode == "ws":
        return folds * (2 * r + c + m - 2)
    return folds * max(m, r) + r + c - 2


class _Rig:
    """One core per (R, C, mode) behind a router, in its own simulator."""

    def __init__(self, configs):
        self.sim = Simulator("validate-gemm")
        try:
            top = Module(self.sim, "rig")
            irq = InterruptController(top, "irq")
            errors = ErrorUnit(top, "err", irq)
            self.hbm = MemoryTarget("hbm", HBM_SIZE, latency_ps=100 * NS, bandwidth=64 * 10**9)
            bus = Router(top, "bus")
            bus.map(HBM_BASE, HBM_SIZE, self.hbm.target_socket, "hbm")
            cp = CommandProcessor(top, "cp", irq=irq, errors=errors,
                                  doorbells=RegisterBlock(REGMAP.block("db")),
                                  mem_base=HBM_BASE, mem_size=HBM_SIZE, packet_ps=0,
                                  watchdog_ps=100 * US)
            cp.socket.bind(bus.target_socket)
            cluster = Cluster(cp=cp, errors=errors, irq=irq, hbm_base=HBM_BASE,
                              hbm_size=HBM_SIZE)
            self.cores = []
            for i, (r, c, mode) in enumerate(configs):
                # SRAM bandwidth far above any GEMM's traffic: the matrix unit alone is timed.
                params = CoreParams(kind="unified", matrix_rows=r, matrix_cols=c,
                                    vector_lanes=64, sram_bytes=1 << 32,
                                    sram_bytes_per_cycle=1 << 40, gemm_mode=mode,
                                    clock_hz=CLOCK_HZ)
                core = Core(top, f"core{i}", core_id=i, params=params, cluster=cluster,
                            timing_only=True)
                core.socket.bind(bus.target_socket)
                self.cores.append(core)
            cp.attach(self.cores, None)
            self.sim.settle()
            write = lambda address, data: self.hbm.store.write(  # noqa: E731
                address - HBM_BASE, np.frombuffer(data, np.uint8))
            self.probes = [CoreProbe(self.sim, core, write, PROGRAMS + i * 0x1_0000)
                           for i, core in enumerate(self.cores)]
        except BaseException:
            self.sim.close()
            raise

    def close(self) -> None:
        self.sim.close()


def _operands(m: int, n: int, k: int) -> dict[str, int]:
    a_bytes, b_bytes = 4 * m * k, 4 * k * n
    b = _cdiv(a_bytes, 4096) * 4096
    c = b + _cdiv(b_bytes, 4096) * 4096
    return {"a": 0, "b": b, "c": c}


def gemm_checks(quick: bool = False) -> list[Check]:
    """One row per (mode, array, shape): measured cycles == formula exactly."""
    arrays, shapes = (QUICK_ARRAYS, QUICK_SHAPES) if quick else (ARRAYS, SHAPES)
    configs = [(r, c, mode) for mode in MODES for r, c in arrays]
    rig = _Rig(configs)
    out = []
    try:
        for (r, c, mode), probe in zip(configs, rig.probes):
            for m, n, k in shapes:
                name = f"gemm {mode} {r}x{c} M={m} N={n} K={k}"
                op_ps, d = probe.measure("GEMM", m=m, n=n, k=k, **_operands(m, n, k), scale=0,
                                         dtype_a="FP32", dtype_b="FP32")
                measured = op_ps / CYCLE_PS
                if measured == int(measured):
                    measured = int(measured)
                want = formula_cycles(m, n, k, r, c, mode)
                detail = "cycles; measured from simulated time (run − fetch − 2·END)"
                chk = exact(name, want, measured, detail)
                if d["matrix_busy_ps"] != op_ps:
                    chk.passed = False
                    chk.detail += (f"; matrix_busy_ps counter {d['matrix_busy_ps']} ps != "
                                   f"measured {op_ps} ps")
                if d["macs_fp32"] != m * n * k:
                    chk.passed = False
                    chk.detail += f"; macs_fp32 counter {d['macs_fp32']} != M·N·K {m * n * k}"
                out.append(chk)
    finally:
        rig.close()
    return out
