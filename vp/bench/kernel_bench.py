"""Kernel benchmark: loosely timed TLM transactions per second against raw MyHDL events per second.

Two workloads, measured side by side in one OS process (interleaved repetitions, medians):

* **raw MyHDL** -- the floor the kernel is built on. A plain ``myhdl.Simulation`` with a clock
  generator that loops ``yield delay(1)`` and toggles a ``Signal(bool)``, and a watcher that
  waits on that signal. *Counted events*: one per ``delay`` expiry (the clock resumes) plus one
  per signal wake-up (the watcher resumes), i.e. two scheduler resumptions per clock iteration.
  MyHDL picks its specialised fast waiters (``_DelayWaiter``, ``_SignalWaiter``) for these
  generators, so this is MyHDL's best case.
* **TLM** -- what a model sees. A kernel :class:`~vp.kernel.Simulator` with a global quantum, a
  :class:`~vp.kernel.Router` with three mapped :class:`~vp.kernel.MemoryTarget` memories (the
  kernel's reference memory: the bench measures the kernel's path, not a device model's
  timing arithmetic), and one initiator process that issues 8-byte
  ``b_transport`` writes and reads to scattered addresses through an initiator socket, keeps
  time with a :class:`~vp.kernel.QuantumKeeper` and yields ``qk.sync()`` when ``need_sync()``.
  *Counted*: completed transactions (each checked for an OK response).

``ratio`` = TLM transactions/s divided by raw MyHDL events/s; the kernel's target is >= 0.5.

Run ``python -m vp.bench.kernel_bench`` to print the figures.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from myhdl import Signal, Simulation, delay   # the raw baseline only; models never do this

from vp.bench import print_figures
from vp.kernel import (InitiatorSocket, MemoryTarget, Payload, QuantumKeeper, Response, Router,
                       Simulator)

#: Memories on the bench router: (name, base address, size in bytes).
MAP = (("hbm0", 0x0000_0000, 1 << 30), ("hbm1", 0x4000_0000, 1 << 30),
       ("sram", 0x8000_0000, 1 << 24))
#: Bytes per transaction.
TX_BYTES = 8
#: Each memory is touched within this window (keeps page allocation small: 16 pages).
WORKING_SET = 1 << 20
QUANTUM_PS = 1_000_000          # 1 us
LATENCY_PS = 1_000              # 1 ns per access (small annotation)
BANDWIDTH = 256 * 10**9         # bytes/s (8 B -> 32 ps)


def _addresses(n: int, seed: int = 1) -> list[int]:
    """Scattered, 8-byte-aligned addresses spread over every mapped memory."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(MAP), n)
    offsets = rng.integers(0, WORKING_SET // TX_BYTES, n) * TX_BYTES
    bases = np.array([base for _, base, _ in MAP], dtype=np.int64)
    return [int(a) for a in bases[which] + offsets]


# -- raw MyHDL ------------------------------------------------------------------------------
def raw_myhdl_once(iterations: int) -> tuple[int, float]:
    """(events, wall seconds) of one raw MyHDL run of ``iterations`` clock iterations."""
    sig = Signal(bool(0))
    wakes = [0]

    def clock():
        for _ in range(iterations):
            yield delay(1)
            sig.next = not sig

    def watcher():
        while True:
            yield sig
            wakes[0] += 1

    sim = Simulation(clock(), watcher())
    try:
        t0 = time.perf_counter()
        sim.run(quiet=1)            # ends when the clock returns and nothing is scheduled
        wall = time.perf_counter() - t0
    finally:
        sim.quit()                  # one simulation per process: free it for the kernel
    if wakes[0] != iterations:
        raise AssertionError(f"raw MyHDL watcher woke {wakes[0]} times, expected {iterations}")
    return iterations + wakes[0], wall


# -- TLM ------------------------------------------------------------------------------------
def tlm_once(addresses: list[int]) -> tuple[int, float, dict]:
    """(transactions, wall seconds, details) of one kernel run over ``addresses``."""
    sim = Simulator("bench", global_quantum_ps=QUANTUM_PS)
    try:
        router = Router(sim, "bus")
        mems = []
        for name, base, size in MAP:
            mem = MemoryTarget(f"bench.{name}", size, LATENCY_PS, BANDWIDTH)
            router.map(base, size, mem.target_socket, name)
            mems.append(mem)
        sock = InitiatorSocket("cpu.data")
        sock.bind(router.target_socket)
        stats = {"ok": 0, "syncs": 0}
        n = len(addresses)

        def initiator():
            qk = QuantumKeeper(sim)
            # Reused payloads, as a TLM initiator would keep them in a pool.
            wr = Payload.write(0, np.arange(TX_BYTES, dtype=np.uint8))
            rd = Payload.read(0, TX_BYTES)
            b_transport = sock.b_transport
            ok = Response.OK
            n_ok = syncs = 0
            for i in range(n):
                trans = rd if i & 1 else wr     # write, then read back the same address
                trans.address = addresses[i & ~1]
                trans.response = Response.INCOMPLETE
                qk.set(b_transport(trans, qk.local_ps))
                if trans.response == ok:
                    n_ok += 1
                if qk.need_sync():
                    syncs += 1
                    yield qk.sync()
            yield qk.sync()
            stats["ok"], stats["syncs"] = n_ok, syncs
            if not np.array_equal(rd.data, wr.data):
                raise AssertionError("bench memory did not read back what was written")

        sim.spawn(initiator(), "cpu")
        t0 = time.perf_counter()
        sim.run_until_idle()
        wall = time.perf_counter() - t0
        if stats["ok"] != n:
            raise AssertionError(f"{n - stats['ok']} of {n} bench transactions failed")
        details = {"sim_time_ps": sim.now, "syncs": stats["syncs"], "target": "vp.kernel.MemoryTarget",
                   "allocated_bytes": sum(m.store.allocated_bytes for m in mems)}
    finally:
        sim.close()
    return n, wall, details


def run(repetitions: int = 5, raw_iterations: int = 200_000, transactions: int = 200_000) -> dict:
    """Measure both rates, interleaving ``repetitions`` runs of each; medians.

    Returns a dict with ``tlm_tx_per_s``, ``raw_myhdl_events_per_s``, ``ratio`` (tlm / raw) and
    the counts and wall seconds behind them.
    """
    if repetitions < 1:
        raise ValueError("need at least one repetition")
    addresses = _addresses(transactions)
    raw_rates, raw_walls, tlm_rates, tlm_walls = [], [], [], []
    raw_events = tlm_tx = 0
    details: dict = {}
    # Warm-up (imports, page allocation, MyHDL's source inspection of the raw generators).
    raw_myhdl_once(1_000)
    tlm_once(addresses[:1_000])
    for _ in range(repetitions):
        raw_events, wall = raw_myhdl_once(raw_iterations)
        raw_rates.append(raw_events / wall)
        raw_walls.append(wall)
        tlm_tx, wall, details = tlm_once(addresses)
        tlm_rates.append(tlm_tx / wall)
        tlm_walls.append(wall)
    tlm_rate = statistics.median(tlm_rates)
    raw_rate = statistics.median(raw_rates)
    return {
        "tlm_tx_per_s": round(tlm_rate),
        "raw_myhdl_events_per_s": round(raw_rate),
        "ratio": round(tlm_rate / raw_rate, 3),
        "tlm_tx": tlm_tx,
        "tlm_wall_s": round(statistics.median(tlm_walls), 4),
        "raw_myhdl_events": raw_events,
        "raw_myhdl_wall_s": round(statistics.median(raw_walls), 4),
        "repetitions": repetitions,
        "tlm_syncs": details["syncs"],
        "tlm_sim_time_ps": details["sim_time_ps"],
        "tlm_target": details["target"],
        "quantum_ps": QUANTUM_PS,
        "tlm_tx_per_s_all": [round(r) for r in tlm_rates],
        "raw_myhdl_events_per_s_all": [round(r) for r in raw_rates],
    }


def main() -> None:
    print_figures(run())


if __name__ == "__main__":
    main()
