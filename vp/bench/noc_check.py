"""NoC validation: zero-load formula check and the saturation knee (DESIGN.md §7).

:func:`injection_sweep` builds a kernel :class:`~vp.kernel.Simulator` with one
:class:`~models.noc.Noc`, a zero-latency sink target at every node and one open-loop traffic
generator per node. Each generator injects ``packet_bytes`` timing-only writes to uniformly
random *other* nodes, with exponentially distributed gaps whose mean gives the offered load
``rate`` (bytes per NoC cycle per node). It never waits for its packets (open loop): a packet
that finds its injection port busy queues there, so the measured latency (injection time to
tail ejected, the annotated delay of ``b_transport``) includes source queueing. Below
saturation the average latency stays near the zero-load average; past the knee queues grow
for as long as the run lasts and latency shoots up.

:func:`zero_load_check` compares single packets on an idle NoC with the formula
``(hops * (router_cycles + link_cycles) + ceil(bytes / flit_bytes)) * cycle``.

Run ``python -m vp.bench.noc_check`` to print both, and the host cost of a NoC transaction
(:func:`transport_cost_us`).
"""

from __future__ import annotations

import random
import time

import numpy as np

from models.noc import Noc
from vp.kernel import Command, Payload, Response, Simulator
from vp.spec.units import SEC, cycles_to_ps

#: The board file's default mesh (vp/spec/board_config.py NocConfig, chip clock 1.5 GHz).
DEFAULT_PARAMS = {"mesh_x": 4, "mesh_y": 4, "router_cycles": 2, "link_cycles": 1,
                  "flit_bytes": 64, "clock_hz": 1_500_000_000}
#: Offered loads as a fraction of one link's bandwidth (flit_bytes per cycle per node).
DEFAULT_LOADS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
NODE_BYTES = 1 << 20               # address window of each node's sink


class _Sink:
    """A zero-latency target that moves no data (the NoC is what is measured)."""

    def b_transport(self, trans: Payload, delay_ps: int) -> int:
        trans.response = Response.OK
        return delay_ps

    def transport_dbg(self, trans: Payload) -> int:
        return 0

    def get_direct_mem_ptr(self, trans: Payload):
        return None


def _payload(address: int, length: int) -> Payload:
    trans = Payload(Command.WRITE, address, np.broadcast_to(np.zeros(1, np.uint8), (length,)))
    trans.extensions["timing_only"] = True
    return trans


def _build(sim: Simulator, params: dict) -> Noc:
    noc = Noc(sim, "noc", **params)
    for n in range(noc.n_nodes):
        noc.map(n * NODE_BYTES, NODE_BYTES, _Sink(), noc.node_xy(n), f"sink{n}")
    return noc


def injection_sweep(noc_params: dict | None = None, rates=None, *, packet_bytes: int = 256,
                    duration_cycles: int = 3000, warmup_cycles: int = 500,
                    seed: int = 1) -> list[dict]:
    """Average packet latency per offered load, one fresh simulator per rate.

    Args:
        noc_params: keyword arguments of :class:`~models.noc.Noc` (default: the board default).
        rates: offered loads in bytes per cycle per node (default: ``DEFAULT_LOADS`` x
            ``flit_bytes``).
        packet_bytes: size of every packet (bytes).
        duration_cycles: injection stops after this many NoC cycles.
        warmup_cycles: packets injected earlier are not measured.
        seed: of the deterministic random traffic.

    Returns one dict per rate: ``rate`` (B/cycle/node), ``packets`` measured,
    ``latency_cycles`` (mean), ``zero_load_cycles`` (mean zero-load latency of the same
    packets), ``ratio`` (their quotient), ``accepted`` (B/cycle/node delivered by the end of
    injection), ``max_link_load`` (flits carried by the busiest mesh link per cycle of
    the injection window; above 1 past saturation, when the backlog drains after it).
    Raises ``SimulationError`` if another simulator is active in this process.
    """
    params = {**DEFAULT_PARAMS, **(noc_params or {})}
    if rates is None:
        rates = [round(f * params["flit_bytes"], 3) for f in DEFAULT_LOADS]
    clk = params["clock_hz"]
    end_ps, warm_ps = cycles_to_ps(duration_cycles, clk), cycles_to_ps(warmup_cycles, clk)
    results = []
    for rate in rates:
        sim = Simulator("noc-sweep")
        try:
            noc = _build(sim, params)
            lat, zl, delivered = [], [], [0]
            rng = random.Random(seed)
            mean_gap_ps = packet_bytes / rate * SEC / clk

            def generator(src: int, rng: random.Random):
                port = noc.port(noc.node_xy(src), f"gen{src}").target
                while True:
                    gap = round(rng.expovariate(1.0) * mean_gap_ps)
                    if sim.now + gap >= end_ps:
                        return
                    yield sim.delay(gap)
                    dst = rng.randrange(noc.n_nodes - 1)
                    dst += dst >= src                      # any node but the source
                    done = sim.now + port.b_transport(_payload(dst * NODE_BYTES, packet_bytes), 0)
                    if done <= end_ps:
                        delivered[0] += packet_bytes
                    if sim.now >= warm_ps:
                        lat.append(done - sim.now)
                        zl.append(noc.zero_load_ps(src, dst, packet_bytes))

            for src in range(noc.n_nodes):
                sim.spawn(generator(src, random.Random(rng.random())), f"gen{src}")
            sim.run_until_idle()
            cycle = SEC / clk
            mean_lat = sum(lat) / len(lat) / cycle if lat else float("nan")
            mean_zl = sum(zl) / len(zl) / cycle if zl else float("nan")
            links = noc.link_busy_cycles[:4 * noc.n_nodes]
            results.append({"rate": rate, "packets": len(lat), "latency_cycles": mean_lat,
                            "zero_load_cycles": mean_zl, "ratio": mean_lat / mean_zl,
                            "accepted": delivered[0] / noc.n_nodes / duration_cycles,
                            "max_link_load": max(links) / duration_cycles})
        finally:
            sim.close()
    return results


def saturation_knee(results: list[dict], factor: float = 2.0) -> float | None:
    """The lowest swept rate whose mean latency is at least ``factor`` x zero-load, or None."""
    return next((r["rate"] for r in results if r["ratio"] >= factor), None)


def zero_load_check(noc_params: dict | None = None, sizes=(1, 64, 65, 256, 4096)) -> list[dict]:
    """Every (src, dst, size) write on an idle NoC against the formula; one dict per case with
    ``measured_ps``, ``formula_ps`` and ``ok`` (exact equality)."""
    params = {**DEFAULT_PARAMS, **(noc_params or {})}
    out = []
    with Simulator("noc-zero-load") as sim:
        noc = _build(sim, params)
        ports = [noc.port(noc.node_xy(n), f"p{n}").target for n in range(noc.n_nodes)]
        hop = params["router_cycles"] + params["link_cycles"]
        for src in range(noc.n_nodes):
            for dst in range(noc.n_nodes):
                for size in sizes:
                    noc.reset()
                    got = ports[src].b_transport(_payload(dst * NODE_BYTES, size), 0)
                    cycles = noc.hops(src, dst) * hop - (-size // params["flit_bytes"])
                    want = cycles_to_ps(cycles, params["clock_hz"])
                    out.append({"src": noc.node_xy(src), "dst": noc.node_xy(dst), "bytes": size,
                                "measured_ps": got, "formula_ps": want, "ok": got == want})
    return out


def transport_cost_us(noc_params: dict | None = None, count: int = 20000,
                      nbytes: int = 256) -> dict[str, float]:
    """Host CPU cost of one ``b_transport`` through the NoC (microseconds, best of 3), for
    writes and reads between uniformly random nodes, spaced so that they rarely contend."""
    params = {**DEFAULT_PARAMS, **(noc_params or {})}
    out = {}
    with Simulator("noc-cost") as sim:
        noc = _build(sim, params)
        ports = [noc.port(noc.node_xy(n), f"p{n}").target for n in range(noc.n_nodes)]
        rng = random.Random(1)
        pairs = [(rng.randrange(noc.n_nodes), rng.randrange(noc.n_nodes)) for _ in range(count)]
        for command in (Command.WRITE, Command.READ):
            best = float("inf")
            for _ in range(3):
                noc.reset()
                trans = [Payload(command, d * NODE_BYTES, np.zeros(nbytes, np.uint8))
                         for _, d in pairs]
                t = time.perf_counter()
                for i, ((s, _), tr) in enumerate(zip(pairs, trans)):
                    ports[s].b_transport(tr, i * 100_000)
                best = min(best, time.perf_counter() - t)
            out[command.name.lower()] = best / count * 1e6
    return out


def main() -> None:
    checks = zero_load_check()
    bad = [c for c in checks if not c["ok"]]
    print(f"zero-load formula: {len(checks) - len(bad)}/{len(checks)} exact"
          + (f"; first mismatch {bad[0]}" if bad else ""))
    t = time.perf_counter()
    results = injection_sweep()
    wall = time.perf_counter() - t
    p = DEFAULT_PARAMS
    print(f"injection sweep: {p['mesh_x']}x{p['mesh_y']} mesh, uniform random, 256 B packets, "
          f"flit {p['flit_bytes']} B ({wall:.2f} s)")
    print(f"{'B/cyc/node':>10} {'load':>5} {'packets':>7} {'latency':>8} {'zero-load':>9} "
          f"{'ratio':>6} {'accepted':>8} {'max link':>8}")
    for r in results:
        print(f"{r['rate']:>10.1f} {r['rate'] / p['flit_bytes']:>5.2f} {r['packets']:>7} "
              f"{r['latency_cycles']:>8.1f} {r['zero_load_cycles']:>9.1f} {r['ratio']:>6.2f} "
              f"{r['accepted']:>8.1f} {r['max_link_load']:>8.2f}")
    knee = saturation_knee(results)
    print(f"saturation knee (latency >= 2x zero-load): "
          f"{'none in range' if knee is None else f'{knee} B/cycle/node'}")
    cost = transport_cost_us()
    print("cost per b_transport through the NoC: "
          + ", ".join(f"{k} {v:.2f} us" for k, v in cost.items()))


if __name__ == "__main__":
    main()
