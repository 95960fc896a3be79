"""Check 6: conservation of bytes and energy, and utilisation bounds, on a real board run.

The shipped AFD board (as shipped: functional mode; the full run repeats it in performance mode,
rows prefixed ``func`` / ``perf``) runs a small two-core job through the host port exactly as a
driver would: programs and ring written over the host link, ring registers set, doorbell rung,
fence interrupt awaited. The job: a DMA HBM→SRAM, LAUNCH of core 0 (a CA core: LOAD contiguous
+ strided, SOFTMAX, GEMM, SEND, STORE) and of the first core of another kind (a CF core: LOAD,
RECV, GEMM, GELU, STORE), WAIT_CORES, a DMA SRAM→HBM, TIMESTAMP, FENCE. Then ``board.stats()``
is checked.

HBM byte accounting (what the counters support; the host makes no memory reads in the run)::

    hbm.bytes_read    = Σ_cores (hbm_read_bytes + fetch_bytes) + DMA bytes whose source is HBM
                        + cp.ring_read_bytes
    hbm.bytes_written = Σ_cores hbm_write_bytes + DMA bytes whose destination is HBM
                        + cp.timestamp_bytes + hostif.mem_write_bytes

The CP's ring reads are also derived from the packets submitted (one fetch of up to
``FETCH_BYTES`` or what is left of the ring's valid bytes per packet, plus the rest of a longer
packet: ``CommandProcessor._fetch``) and checked against its counter. DMA bytes by direction
come from the descriptors and are cross-checked against the engines' ``bytes`` counter. The work counters are also checked against
the programs (Σ LOAD/STORE bytes, Σ M·N·K, SEND bytes).

Energy: ``total = Σ actions + static`` and every action equals its recomputation from the raw
unit counters × the board's energy table (Accelergy-style), static = Σ static W × elapsed ps.
"""

from __future__ import annotations

import dataclasses

from models.cp import FETCH_BYTES
from models.irq import IRQ_BIT
from vp.board import Board
from vp.host_port import HostPort
from vp.spec import isa
from vp.spec.board_config import MODES, BoardConfig
from vp.spec.host import RegOp
from vp.spec.memory_map import sram_base
from vp.spec.regmap import REGMAP
from vp.validation.check import Check, at_most, exact, within

SEC = 10 ** 12
RING, RING_SIZE = 0x1000, 4096
PROG = (0x10_0000, 0x11_0000)
DATA, OUT, STAMP = 0x100_0000, 0x200_0000, 0x300_0000
TOL = 1e-9                                 # float rounding of pJ sums


def _programs(first: int, second: int):
    """(program of ``first``, program of ``second``, LOAD bytes, STORE bytes, MACs, SEND
    bytes); ``first`` sends its GEMM result to ``second``."""
    rows, cols = 64, 256                    # softmax input, also GEMM A (M=64, K=256)
    m, k1, n1, n2 = rows, cols, 64, 128
    x_bytes, b1_bytes, c1_bytes = 4 * rows * cols, 4 * k1 * n1, 4 * m * n1
    w2_bytes, c2_bytes = 4 * n1 * n2, 4 * m * n2
    p = isa.Program()
    p.LOAD(hbm=DATA, sram=0, row_bytes=x_bytes, rows=1, hbm_stride=x_bytes, sram_stride=x_bytes)
    p.LOAD(hbm=DATA + 0x10_0000, sram=0x10_0000, row_bytes=256, rows=64, hbm_stride=1024,
           sram_stride=256)                                             # strided: 16 KiB
    p.SOFTMAX(rows=rows, cols=cols, a=0, out=0x2_0000, scale=0.0625, pos0=0)
    p.LOAD(hbm=DATA + 0x20_0000, sram=0x4_0000, row_bytes=b1_bytes, rows=1,
           hbm_stride=b1_bytes, sram_stride=b1_bytes)
    p.GEMM(m=m, n=n1, k=k1, a=0x2_0000, b=0x4_0000, c=0x6_0000, scale=0, dtype_a="FP32",
           dtype_b="FP32")
    p.SEND(core=second, sram=0x6_0000, bytes=c1_bytes, tag=1)
    p.STORE(hbm=OUT, sram=0x6_0000, row_bytes=c1_bytes, rows=1, hbm_stride=c1_bytes,
            sram_stride=c1_bytes)
    p.END()
    q = isa.Program()
    q.LOAD(hbm=DATA + 0x30_0000, sram=0x1_0000, row_bytes=w2_bytes, rows=1, hbm_stride=w2_bytes,
           sram_stride=w2_bytes)
    q.RECV(core=first, sram=0, bytes=c1_bytes, tag=1)
    q.GEMM(m=m, n=n2, k=n1, a=0, b=0x1_0000, c=0x2_0000, scale=0, dtype_a="FP32",
           dtype_b="FP32")
    q.GELU(n=m * n2, a=0x2_0000, out=0x3_0000)
    q.STORE(hbm=OUT + 0x10_0000, sram=0x3_0000, row_bytes=c2_bytes, rows=1, hbm_stride=c2_bytes,
            sram_stride=c2_bytes)
    q.END()
    loads = x_bytes + 256 * 64 + b1_bytes + w2_bytes
    stores = c1_bytes + c2_bytes
    return p, q, loads, stores, m * n1 * k1 + m * n2 * n1, c1_bytes


def _ring_read_bytes(packets: list[bytes]) -> int:
    """Bytes the CP reads from the ring for ``packets`` submitted at once: per packet one fetch
    of min(FETCH_BYTES, bytes left up to the tail), then the rest of the packet if longer."""
    total, offset, end = 0, 0, sum(len(p) for p in packets)
    for p in packets:
        fetched = min(FETCH_BYTES, end - offset)
        total += fetched + max(0, len(p) - fetched)
        offset += len(p)
    return total


def _run(port: HostPort, cfg: BoardConfig):
    """Submit the job and wait for its fence; returns the facts the accounting needs."""
    base = cfg.hbm.base
    kinds = cfg.cores.kinds()
    # Two cores of different kinds when the board has them (AFD: a CA and a CF core).
    first = 0
    second = next((i for i, k in enumerate(kinds) if k != kinds[0]), 1)
    prog_first, prog_second, loads, stores, macs, sent = _programs(first, second)
    for address, prog in zip(PROG, (prog_first, prog_second)):
        data = prog.to_bytes()
        port.write_mem(base + address, len(data), [data])
    dma_in = (base + DATA + 0x40_0000, sram_base(second) + 0x10_0000, 4096, 4)  # HBM -> SRAM
    dma_out = (sram_base(first) + 0x6_0000, base + OUT + 0x20_0000, 8192, 2)    # SRAM -> HBM
    packets = [
        isa.encode_packet("DMA", src=dma_in[0], dst=dma_in[1], row_bytes=dma_in[2],
                          rows=dma_in[3], src_stride=dma_in[2], dst_stride=dma_in[2]),
        isa.encode_packet("LAUNCH", core_mask=1 << first, program=base + PROG[0], arg=0),
        isa.encode_packet("LAUNCH", core_mask=1 << second, program=base + PROG[1], arg=0),
        isa.encode_packet("WAIT_CORES", core_mask=1 << first | 1 << second),
        isa.encode_packet("DMA", src=dma_out[0], dst=dma_out[1], row_bytes=dma_out[2],
                          rows=dma_out[3], src_stride=dma_out[2], dst_stride=dma_out[2]),
        isa.encode_packet("TIMESTAMP", address=base + STAMP),
        isa.encode_packet("FENCE", flags={"irq": True}, value=1),
    ]
    ring = b"".join(packets)
    port.write_mem(base + RING, len(ring), [ring])
    reg = lambda name: REGMAP.reg(name).address                        # noqa: E731
    enable = REGMAP.reg("cp.Q_CTRL[0]").field("ENABLE").mask
    port.reg_batch([RegOp(True, reg("cp.RING_BASE_LO[0]"), (base + RING) & 0xFFFF_FFFF),
                    RegOp(True, reg("cp.RING_BASE_HI[0]"), (base + RING) >> 32),
                    RegOp(True, reg("cp.RING_SIZE[0]"), RING_SIZE),
                    RegOp(True, reg("cp.Q_CTRL[0]"), enable),
                    RegOp(True, reg("db.DOORBELL[0]"), len(ring))])
    mask = sum(1 << IRQ_BIT[s] for s in ("CP_FENCE", "CP_ERROR", "CORE_ERROR"))
    pending, _ = port.wait_irq(mask, 10 ** 10)                         # 10 ms simulated
    fence, status = (r.value for r in port.reg_batch(
        [RegOp(False, reg("cp.FENCE[0]")), RegOp(False, reg("cp.Q_STATUS[0]"))]).results)
    if fence != 1 or pending != 1 << IRQ_BIT["CP_FENCE"]:
        errs = [c.error for c in port.board.cores]
        raise RuntimeError(f"the job did not complete: FENCE={fence}, Q_STATUS=0x{status:x}, "
                           f"pending irq 0x{pending:x}, core errors {errs}")
    dma_hbm_read = dma_in[2] * dma_in[3]
    dma_hbm_write = dma_out[2] * dma_out[3]
    return {"cores": (first, second), "loads": loads, "stores": stores, "macs": macs, "sent": sent,
            "cp_ring_read": _ring_read_bytes(packets), "timestamps": 1,
            "dma_hbm_read": dma_hbm_read, "dma_hbm_write": dma_hbm_write,
            "dma_total": dma_hbm_read + dma_hbm_write}


def conservation_checks(cfg: BoardConfig, quick: bool = False) -> list[Check]:
    """Bytes, work and energy conserved; utilisation ≤ 1 (see the module docstring). The board
    in its own mode; the full run repeats the job in the other mode."""
    modes = [cfg.mode] + ([] if quick else [m for m in MODES if m != cfg.mode])
    out = []
    for mode in modes:
        for chk in _checks(dataclasses.replace(cfg, mode=mode)):
            chk.check = f"{mode[:4]} {chk.check}"
            out.append(chk)
    return out


def _checks(cfg: BoardConfig) -> list[Check]:
    port = HostPort(Board(cfg))
    try:
        job = _run(port, cfg)
        board = port.board
        stats = board.stats()
        host_bytes = board.hostif.mem_write_bytes
    finally:
        port.close()
    units, elapsed = stats["units"], stats["elapsed_ps"]
    kinds = cfg.cores.kinds()
    cores = [units[f"core{i}"] for i in range(len(kinds))]
    hbm, noc, dma = units["hbm"], units["noc"], units["dma_engines"]
    total = lambda name: sum(c[name] for c in cores)                      # noqa: E731
    out: list[Check] = []

    # -- bytes and work ---------------------------------------------------------------------
    read_terms = {"cores hbm_read_bytes": total("hbm_read_bytes"),
                  "cores fetch_bytes": total("fetch_bytes"),
                  "DMA from HBM": job["dma_hbm_read"],
                  "CP ring reads": units["cp"]["ring_read_bytes"]}
    out.append(exact("bytes: hbm.bytes_read = Σ readers", sum(read_terms.values()),
                     hbm["bytes_read"],
                     "bytes; " + " + ".join(f"{k} {v}" for k, v in read_terms.items())))
    write_terms = {"cores hbm_write_bytes": total("hbm_write_bytes"),
                   "DMA to HBM": job["dma_hbm_write"],
                   "TIMESTAMP": units["cp"]["timestamp_bytes"],
                   "host link": host_bytes}
    out.append(exact("bytes: hbm.bytes_written = Σ writers", sum(write_terms.values()),
                     hbm["bytes_written"],
                     "bytes; " + " + ".join(f"{k} {v}" for k, v in write_terms.items())))
    out.append(exact("bytes: DMA engines moved = Σ descriptors", job["dma_total"], dma["bytes"],
                     "bytes; dma_engines.bytes"))
    out.append(exact("bytes: CP ring reads = Σ packet fetches", job["cp_ring_read"],
                     units["cp"]["ring_read_bytes"], "bytes; cp.ring_read_bytes"))
    out.append(exact("bytes: CP timestamps = 8 B each", 8 * job["timestamps"],
                     units["cp"]["timestamp_bytes"], "bytes; cp.timestamp_bytes"))
    out.append(exact("work: Σ cores hbm_read_bytes = Σ LOAD bytes", job["loads"],
                     total("hbm_read_bytes"), "bytes; the programs' LOAD instructions"))
    out.append(exact("work: Σ cores hbm_write_bytes = Σ STORE bytes", job["stores"],
                     total("hbm_write_bytes"), "bytes; the programs' STORE instructions"))
    out.append(exact("work: Σ cores MACs = Σ M·N·K", job["macs"],
                     total("macs_fp32") + total("macs_bf16") + total("macs_int8"),
                     "MACs; the programs' GEMMs"))
    out.append(exact("work: Σ cores noc_sent_bytes = SEND bytes", job["sent"],
                     total("noc_sent_bytes"), "bytes"))

    # -- energy -----------------------------------------------------------------------------
    e = cfg.energy
    energy = stats["energy_pj"]
    recomputed = {
        "mac": sum(c["macs_fp32"] * e.mac_fp32_pj + c["macs_bf16"] * e.mac_bf16_pj
                   + c["macs_int8"] * e.mac_int8_pj for c in cores),
        "vector": sum(c["vector_element_ops"] for c in cores) * e.vector_op_pj,
        "sram": sum(c["sram_read_bytes"] + c["sram_write_bytes"] for c in cores)
        * e.sram_pj_per_byte,
        "hbm": (hbm["bytes_read"] + hbm["bytes_written"]) * e.hbm_pj_per_byte,
        "noc": noc["byte_hops"] * e.noc_pj_per_byte_hop,
        "static": (sum(getattr(e, f"static_{k}_w") for k in kinds) + e.static_hbm_w) * elapsed,
    }
    parts = sum(v for k, v in energy.items() if k != "total")
    out.append(within("energy: total = Σ actions + static", parts, energy["total"], TOL,
                      f"pJ; actions {', '.join(k for k in energy if k != 'total')}"))
    for action, want in recomputed.items():
        out.append(within(f"energy: {action} = counters × energy table", want,
                          energy.get(action), TOL, "pJ; recomputed from the raw unit counters"))
    out.append(within("energy: total = recomputation", sum(recomputed.values()),
                      energy["total"], TOL, "pJ"))

    # -- utilisation ------------------------------------------------------------------------
    for kind, summary in stats["kinds"].items():
        out.append(at_most(f"utilisation: {kind} cores ≤ 1", 1.0, summary["utilisation"],
                           f"busy_ps / (cores × elapsed), {summary['cores']} cores"))
    worst = max(range(len(cores)), key=lambda i: cores[i]["busy_ps"] + cores[i]["stall_ps"])
    out.append(at_most("utilisation: per-core busy + stall ≤ elapsed", elapsed,
                       cores[worst]["busy_ps"] + cores[worst]["stall_ps"],
                       f"ps; worst core{worst}"))
    ratios = []
    for i, c in enumerate(cores):
        p = board.cores[i].params
        macs = c["macs_fp32"] + c["macs_bf16"] + c["macs_int8"]
        if macs:
            ratios.append((macs * SEC / (c["matrix_busy_ps"] * p.clock_hz
                                          * p.matrix_rows * p.matrix_cols), i))
    util, i = max(ratios)
    out.append(at_most("utilisation: matrix MACs / (cycles·R·C) ≤ 1", 1.0, util,
                       f"worst core{i} over the run"))
    link_cycles = elapsed * cfg.chip.clock / SEC
    out.append(at_most("utilisation: busiest NoC link ≤ elapsed", link_cycles,
                       noc["max_link_busy_cycles"], "NoC cycles"))
    h = cfg.hbm
    out.append(at_most("utilisation: busiest HBM channel ≤ pseudo-channels × elapsed",
                       h.pseudo_channels * elapsed, hbm["max_channel_busy_ps"], "ps"))
    out.append(at_most("utilisation: DMA engines busy ≤ engines × elapsed",
                       cfg.dma.engines * elapsed, dma["busy_ps"], "ps"))
    return out
