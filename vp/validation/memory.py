"""Checks 2-4: HBM latency and throughput, NoC zero-load latency and saturation knee, each on
the shipped AFD board's parameters (``vp/boards/afd.yaml``).

Measurements come from the models' own probes, which build a fresh model and time real
transactions (``models.hbm.unloaded_row_miss_latency_ps`` & co., ``vp.bench.noc_check``).
Expected values are computed here from the board file's raw numbers, not from the models'
formula helpers:

* HBM row miss ``(tRP + tRCD + tCL) · tCK``, each parameter rounded up to whole ``tCK`` as a
  memory controller programs it. The probe times one 64 B read *to its last byte*, so it also
  contains one burst on the pseudo-channel's data bus (``burst_bytes / channel_bandwidth``);
  two rows compare honestly: to the last byte against formula + burst, and first data
  (measured − burst) against the bare formula, both within ±5 %.
* HBM refresh-limited peak ``pseudo-channels · channel_bandwidth · (1 − tRFC / tREFI)``.
* NoC zero load ``(hops · (router_cycles + link_cycles) + ceil(bytes / flit_bytes)) · cycle``,
  hops = Manhattan distance, rounded up to whole ps once; every (src, dst) pair of the mesh.
"""

from __future__ import annotations

from models.hbm import (HbmGeometry, HbmTiming, random_read_throughput,
                        sequential_read_throughput, unloaded_row_hit_latency_ps,
                        unloaded_row_miss_latency_ps)
from vp.bench.noc_check import injection_sweep, saturation_knee, zero_load_check
from vp.spec.board_config import BoardConfig
from vp.validation.check import Check, at_least, at_most, exact, within

SEC = 10 ** 12
#: NoC packet sizes (bytes) checked at zero load: below, at and above one flit, and bulk.
NOC_SIZES = (1, 64, 255, 256, 257, 1024, 4096, 65536)
QUICK_NOC_SIZES = (1, 256, 257, 4096)
#: Offered loads, fractions of one link's bandwidth per node (uniform random traffic).
NOC_LOADS = (0.05, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0)
QUICK_NOC_LOADS = (0.05, 0.5, 0.8, 1.0)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def hbm_model(cfg: BoardConfig) -> tuple[HbmGeometry, HbmTiming]:
    """The HBM geometry and timing the board file describes (as ``Hbm.from_config`` does)."""
    h = cfg.hbm
    geometry = HbmGeometry(stacks=h.stacks, channels_per_stack=h.channels_per_stack,
                           pseudo_channels=h.pseudo_channels, banks=h.banks,
                           row_bytes=h.row_bytes, interleave_bytes=h.interleave_bytes,
                           burst_bytes=h.burst_bytes)
    timing = HbmTiming(clock_hz=h.clock, tRCD=h.tRCD, tCL=h.tCL, tRP=h.tRP, tRAS=h.tRAS,
                       tREFI=h.tREFI, tRFC=h.tRFC, channel_bandwidth=h.channel_bandwidth,
                       tRRD=h.tRRD, tFAW=h.tFAW)
    return geometry, timing


def hbm_checks(cfg: BoardConfig, quick: bool = False) -> list[Check]:
    """Row-miss and row-hit latency (±5 %), sequential ≥ 90 % of the refresh-limited peak,
    sequential ≤ raw peak, random rows < 50 % of sequential."""
    h = cfg.hbm
    geometry, timing = hbm_model(cfg)
    clk = h.clock
    tck = SEC / clk

    def ck(t_ps: int) -> int:                   # a parameter in whole tCK (rounded up)
        return _cdiv(t_ps * clk, SEC)

    miss = (ck(h.tRP) + ck(h.tRCD) + ck(h.tCL)) * tck
    hit = ck(h.tCL) * tck
    burst = h.burst_bytes * SEC / h.channel_bandwidth
    raw_ns = (h.tRP + h.tRCD + h.tCL) / 1000
    measured_miss = unloaded_row_miss_latency_ps(geometry, timing)
    measured_hit = unloaded_row_hit_latency_ps(geometry, timing)
    out = [
        within("hbm row miss, to last byte, vs (tRP+tRCD+tCL)·tCK + 1 burst", miss + burst,
               measured_miss, 0.05,
               f"ps; one {h.burst_bytes} B read, other row open, idle, no refresh near; "
               f"burst = {h.burst_bytes} B / channel bandwidth = {burst:.0f} ps"),
        within("hbm row miss, first data, vs (tRP+tRCD+tCL)·tCK", miss, measured_miss - burst,
               0.05, f"ps; measured minus the {burst:.0f} ps burst; parameters rounded up to "
                     f"whole tCK = {tck:.1f} ps (raw sum {raw_ns:g} ns)"),
        within("hbm row hit, to last byte, vs tCL·tCK + 1 burst", hit + burst, measured_hit,
               0.05, "ps; same read to the open row"),
    ]
    n_pc = h.stacks * h.channels_per_stack * h.pseudo_channels
    peak = n_pc * h.channel_bandwidth
    limited = peak * (1 - h.tRFC / h.tREFI)
    seq = sequential_read_throughput(geometry, timing)
    rnd = random_read_throughput(geometry, timing, count=1024 if quick else 4096)
    out += [
        at_least("hbm sequential ≥ 90% of refresh-limited peak", 0.9 * limited, seq,
                 f"B/s; 256 MiB as 1 MiB reads in flight; refresh-limited peak "
                 f"{n_pc} PC × {h.channel_bandwidth / 1e9:g} GB/s × (1 − tRFC/tREFI) = "
                 f"{limited / 1e12:.3f} TB/s"),
        at_most("hbm sequential ≤ raw peak", peak, seq,
                f"B/s; {n_pc} pseudo-channels × {h.channel_bandwidth / 1e9:g} GB/s"),
        at_most("hbm random rows < 50% of sequential", 0.5 * seq, rnd,
                f"B/s; {1024 if quick else 4096} single-burst reads at random rows, in flight"),
    ]
    return out


def noc_params(cfg: BoardConfig) -> dict:
    """Keyword arguments of ``models.noc.Noc`` for the board's mesh."""
    n = cfg.noc
    return {"mesh_x": n.mesh_x, "mesh_y": n.mesh_y, "router_cycles": n.router_cycles,
            "link_cycles": n.link_cycles, "flit_bytes": n.flit_bytes,
            "clock_hz": cfg.chip.clock}


def noc_checks(cfg: BoardConfig, quick: bool = False) -> list[Check]:
    """Zero-load latency exact for every (src, dst) pair, one row per packet size (the worst
    pair shown); then the knee: ≈ zero load at 5 % load, ≥ 3× zero load at full load."""
    p = noc_params(cfg)
    sizes = QUICK_NOC_SIZES if quick else NOC_SIZES
    hop = p["router_cycles"] + p["link_cycles"]
    out = []
    cases = zero_load_check(p, sizes=sizes)
    for size in sizes:
        worst, n_bad, n = None, 0, 0
        for c in (c for c in cases if c["bytes"] == size):
            (x0, y0), (x1, y1) = c["src"], c["dst"]
            cycles = (abs(x1 - x0) + abs(y1 - y0)) * hop + max(1, _cdiv(size, p["flit_bytes"]))
            want = _cdiv(cycles * SEC, p["clock_hz"])
            err = abs(c["measured_ps"] - want)
            n += 1
            n_bad += err != 0
            if worst is None or err > worst[0] or (err == worst[0] and want > worst[1]):
                worst = (err, want, c)
        err, want, c = worst
        chk = exact(f"noc zero-load {size} B, all {n} src→dst pairs", want, c["measured_ps"],
                    f"ps; worst pair {c['src']}→{c['dst']}; {n_bad} of {n} pairs inexact")
        chk.passed = n_bad == 0
        out.append(chk)

    loads = QUICK_NOC_LOADS if quick else NOC_LOADS
    flit = p["flit_bytes"]
    packet = 4 * flit
    results = injection_sweep(p, [f * flit for f in loads], packet_bytes=packet,
                              duration_cycles=1500 if quick else 3000,
                              warmup_cycles=250 if quick else 500)
    low, high = results[0], results[-1]
    what = f"cycles; uniform random {packet} B packets, open loop, mean over packets"
    out.append(within(f"noc latency at {loads[0]:.0%} load ≈ zero-load", low["zero_load_cycles"],
                      low["latency_cycles"], 0.10, what))
    out.append(at_least(f"noc latency at {loads[-1]:.0%} load ≥ 3× zero-load",
                        3 * high["zero_load_cycles"], high["latency_cycles"], what))
    knee = saturation_knee(results, 2.0)
    chk = at_most("noc saturation knee (latency ≥ 2× zero-load) below link bandwidth", flit,
                  knee, f"B/cycle/node offered; loads swept {', '.join(f'{f:g}' for f in loads)}"
                        f" × {flit} B/cycle")
    chk.passed = knee is not None and knee > low["rate"] and knee <= flit
    out.append(chk)
    return out
