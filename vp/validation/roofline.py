"""Check 5: every compute op takes at least ``max(FLOPs / peak, bytes / bandwidth)`` on the core
that ran it (DESIGN.md §7 roofline).

The shipped AFD board is built in performance mode and each op runs as an ``[OP, END]``
program on the first core of every kind (:class:`CoreProbe`: simulated time minus fetch minus
two lone ``END``\\ s). The bound uses that core's parameters: matrix peak ``2·R·C·clock``
FLOP/s for GEMM, vector peak ``lanes·clock`` element-operations/s for vector ops, SRAM bandwidth
``sram_bytes_per_cycle·clock`` B/s. FLOPs and bytes are the larger of this file's own count of
the op's operands (GEMM ``2·M·N·K`` and A + B + C [+ scales]; vector ops one operation per
output element and their operand bytes) and what the core counted (``macs_*``,
``vector_element_ops``, ``sram_read_bytes + sram_write_bytes``), so a model that under-counts
cannot loosen its own bound. One row per (core kind, op): the worst shape of its sweep.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vp.board import Board
from vp.spec.board_config import CORE_KINDS, BoardConfig
from vp.validation.check import Check, at_least
from vp.validation.probe import CoreProbe

SEC = 10 ** 12
PROGRAM_OFFSET = 1 << 30              # HBM offset of the probe programs
TABLE_OFFSET = 2 << 30                # HBM offset of the EMBED table


def _align(nbytes: int) -> int:
    return -(-nbytes // 4096) * 4096


def _region(elements: int) -> int:
    """SRAM bytes reserved for ``elements`` fp32 values (4 KiB aligned)."""
    return _align(4 * elements)


def _cases(quick: bool, table: int):
    """(label, op, fields, flops, bytes, unit) per op and shape; flops/bytes are this file's
    own operand counts."""
    vec_n = (65536,) if quick else (1000, 65536, 1 << 20)
    rc = ((64, 1024),) if quick else ((1, 1000), (64, 1024), (1024, 1024))
    rope = ((64, 8, 128),) if quick else ((1, 32, 128), (64, 32, 128))
    embed = ((64, 4096),) if quick else ((16, 16384), (256, 4096))
    gemm = ((1, 4096, 1024), (256, 256, 256)) if quick else \
        ((1, 4096, 1024), (7, 13, 29), (256, 256, 256), (512, 1024, 768))
    gemm_bf16 = ((128, 1024, 1024),)
    gemm_int8 = ((16, 4096, 1024),)
    size = {"FP32": 4, "BF16": 2, "INT8": 1}
    for label, shapes, da, db in (("GEMM fp32", gemm, "FP32", "FP32"),
                                  ("GEMM bf16", gemm_bf16, "BF16", "BF16"),
                                  ("GEMM bf16×int8", gemm_int8, "BF16", "INT8")):
        for m, n, k in shapes:
            sa, sb = size[da], size[db]
            b = _align(m * k * sa)
            c = b + _align(k * n * sb)
            scale = c + _align(4 * m * n)
            scaled = db == "INT8"
            nbytes = m * k * sa + k * n * sb + 4 * m * n + (4 * n if scaled else 0)
            yield (label, "GEMM", dict(m=m, n=n, k=k, a=0, b=b, c=c, scale=scale if scaled else 0,
                                       dtype_a=da, dtype_b=db),
                   2 * m * n * k, nbytes, "matrix", f"M={m} N={n} K={k}")
    for n in vec_n:
        r = _region(n)
        for op in ("ADD", "MUL"):
            yield op, op, dict(n=n, a=0, b=r, out=2 * r), n, 12 * n, "vector", f"n={n}"
        yield "SCALE", "SCALE", dict(n=n, a=0, out=r, factor=0.5), n, 8 * n, "vector", f"n={n}"
        for op in ("GELU", "GELU_ERF", "SILU"):
            yield op, op, dict(n=n, a=0, out=r), n, 8 * n, "vector", f"n={n}"
        yield ("CONVERT fp32→bf16", "CONVERT", dict(n=n, a=0, out=r, from_dtype="FP32",
                                                    to_dtype="BF16", scale=1.0),
               n, 6 * n, "vector", f"n={n}")
        yield ("CONVERT fp32→int8", "CONVERT", dict(n=n, a=0, out=r, from_dtype="FP32",
                                                    to_dtype="INT8", scale=0.02),
               n, 5 * n, "vector", f"n={n}")
    for rows, cols in rc:
        n, r = rows * cols, _region(rows * cols)
        shape = f"{rows}×{cols}"
        yield ("SOFTMAX", "SOFTMAX", dict(rows=rows, cols=cols, a=0, out=r, scale=0.125, pos0=0),
               n, 8 * n, "vector", shape)
        yield ("LAYERNORM", "LAYERNORM", dict(rows=rows, cols=cols, a=0, gamma=2 * r,
                                              beta=3 * r, out=r, eps=1e-5),
               n, 8 * n + 8 * cols, "vector", shape)
        yield ("RMSNORM", "RMSNORM", dict(rows=rows, cols=cols, a=0, gamma=2 * r, out=r,
                                          eps=1e-6), n, 8 * n + 4 * cols, "vector", shape)
    for rows, heads, hd in rope:
        n, r = rows * heads * hd, _region(rows * heads * hd)
        yield ("ROPE", "ROPE", dict(rows=rows, heads=heads, head_dim=hd, a=0, out=r,
                                    positions=2 * r, theta=10000.0),
               n, 8 * n + 4 * rows, "vector", f"{rows}×{heads}×{hd}")
    for n, row_bytes in embed:
        yield ("EMBED", "EMBED", dict(n=n, ids=0, table=table, row_bytes=row_bytes, out=4096),
               n, 4 * n + n * row_bytes, "vector", f"n={n} row={row_bytes} B")


def roofline_checks(cfg: BoardConfig, quick: bool = False) -> list[Check]:
    """One row per (core kind, op): the op's measured time ≥ its roofline bound, worst shape."""
    board = Board(dataclasses.replace(cfg, mode="performance"))
    out: list[Check] = []
    try:
        base = cfg.hbm.base
        write = lambda address, data: board.hbm.store.write(  # noqa: E731
            address - base, np.frombuffer(data, np.uint8))
        kinds = cfg.cores.kinds()
        for kind in CORE_KINDS:
            if kind not in kinds:
                continue
            core = board.cores[kinds.index(kind)]
            p = core.params
            probe = CoreProbe(board.sim, core, write, base + PROGRAM_OFFSET)
            peaks = {"matrix": 2 * p.matrix_rows * p.matrix_cols * p.clock_hz,
                     "vector": p.vector_lanes * p.clock_hz}
            sram_bw = p.sram_bytes_per_cycle * p.clock_hz
            worst: dict[str, tuple] = {}
            count: dict[str, int] = {}
            for label, op, fields, flops, nbytes, unit, shape in _cases(quick,
                                                                        base + TABLE_OFFSET):
                op_ps, d = probe.measure(op, **fields)
                counted_flops = 2 * (d["macs_fp32"] + d["macs_bf16"] + d["macs_int8"]) \
                    if unit == "matrix" else d["vector_element_ops"]
                counted_bytes = d["sram_read_bytes"] + d["sram_write_bytes"]
                f, b = max(flops, counted_flops), max(nbytes, counted_bytes)
                compute, memory = f * SEC / peaks[unit], b * SEC / sram_bw
                bound = max(compute, memory)
                margin = (op_ps - bound) / bound
                count[label] = count.get(label, 0) + 1
                if label not in worst or margin < worst[label][0]:
                    which = "compute" if compute >= memory else "SRAM"
                    worst[label] = (margin, bound, op_ps, shape, which, f, b)
            for label, (margin, bound, op_ps, shape, which, f, b) in worst.items():
                out.append(at_least(
                    f"roofline {kind} {label} ({count[label]} shape{'s' * (count[label] > 1)})",
                    bound, op_ps,
                    f"ps; core{kinds.index(kind)}; worst {shape}: {f} FLOPs, {b} B, "
                    f"{which}-bound"))
    finally:
        board.close()
    return out
