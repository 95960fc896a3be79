"""HBM model benchmark: wall time per transaction of the HBM timing model (performance mode).

What is measured: ``Hbm.b_transport`` of ``timing_only`` reads (no data, all timing and
counters) on a fresh :class:`~models.hbm.Hbm` built from the shipped ``afd`` board's ``hbm``
section, inside one kernel :class:`~vp.kernel.Simulator` (closed at the end). The simulator is
not run: each transaction is annotated with a local time offset, as a loosely timed initiator
with a quantum keeper would do, so the figure is the model's own cost plus one ``b_transport``
call.

Cases (``<size>_<pattern>``):

* sizes 64 B, 4 KiB, 1 MiB, 16 MiB;
* ``seq``: back-to-back, each transaction starts where the previous one ended (aligned start at
  offset 0) and arrives when the previous one completed (a chained initiator: crosses refresh
  windows as it goes);
* ``seq_unaligned``: the same from offset ``UNALIGNED`` = 4196 (16 granules + 100 B: a multiple
  of neither the 256 B granule nor the 64 B burst);
* ``rand``: random 64 B-aligned starts over the whole HBM, chained arrivals;
* ``inflight``: (1 MiB and 16 MiB) sequential, all issued at the same arrival time (an initiator
  with many requests in flight: every pseudo-channel queues);
* ``fragmented``: (4 MiB, the cores' LOAD chunk) ``inflight`` after ``FRAGMENT`` untimed random
  256 B reads: the pseudo-channels' states all differ, as in a decode step where small KV and
  activation accesses interleave with the weight stream (no two pseudo-channels can be served
  as one group).

Each case runs ``count`` transactions on a fresh model per repetition; the figure is the median
over repetitions of (wall / count), in microseconds. (Fresh models share the decomposition
caches of :mod:`models.hbm_ranges`, which depend on the geometry and timing only: from the
second repetition on they are warm, as they are in a long run.)

Run ``python -m vp.bench.hbm_bench`` to print the figures.
"""

from __future__ import annotations

import random
import statistics
import time

from models.hbm import Hbm, timing_only_payload
from vp.bench import print_figures
from vp.kernel import Response, Simulator
from vp.spec.board_config import load_board
from vp.spec.units import KIB, MIB

#: Untimed random 256 B reads before a ``fragmented`` case.
FRAGMENT = 512
#: Start offset of the unaligned sequential cases: not a multiple of the burst or the granule.
UNALIGNED = 4096 + 100
#: (name, bytes per transaction, pattern, transactions per repetition).
CASES = (
    ("64B_seq", 64, "seq", 4000),
    ("64B_rand", 64, "rand", 4000),
    ("4KiB_seq", 4 * KIB, "seq", 2000),
    ("4KiB_seq_unaligned", 4 * KIB, "seq_unaligned", 2000),
    ("4KiB_rand", 4 * KIB, "rand", 2000),
    ("1MiB_seq", 1 * MIB, "seq", 200),
    ("1MiB_seq_unaligned", 1 * MIB, "seq_unaligned", 200),
    ("1MiB_rand", 1 * MIB, "rand", 200),
    ("1MiB_inflight", 1 * MIB, "inflight", 200),
    ("16MiB_seq", 16 * MIB, "seq", 50),
    ("16MiB_seq_unaligned", 16 * MIB, "seq_unaligned", 50),
    ("16MiB_rand", 16 * MIB, "rand", 50),
    ("16MiB_inflight", 16 * MIB, "inflight", 50),
    ("4MiB_fragmented", 4 * MIB, "fragmented", 100),
)


def _addresses(size: int, pattern: str, count: int, hbm_size: int, seed: int) -> list[int]:
    if pattern in ("seq", "inflight", "fragmented"):
        return [i * size for i in range(count)]
    if pattern == "seq_unaligned":
        return [UNALIGNED + i * size for i in range(count)]
    rng = random.Random(seed)
    return [rng.randrange((hbm_size - size) // 64) * 64 for _ in range(count)]


def case_once(sim: Simulator, cfg, name: str, size: int, pattern: str, count: int,
              seed: int = 1) -> tuple[float, int]:
    """(wall seconds, simulated end time in ps) of one run of a case on a fresh model."""
    hbm = Hbm.from_config(sim, name, cfg)
    addresses = _addresses(size, pattern, count, hbm.size, seed)
    payloads = [timing_only_payload(a, size) for a in addresses]
    chained = pattern not in ("inflight", "fragmented")
    b_transport = hbm.b_transport
    local = 0
    if pattern == "fragmented":
        rng = random.Random(seed)
        for _ in range(FRAGMENT):
            b_transport(timing_only_payload(rng.randrange(hbm.size // 256) * 256, 256), 0)
    end = 0
    t0 = time.perf_counter()
    for trans in payloads:
        done = b_transport(trans, local)
        if done > end:
            end = done
        if chained:
            local = done
    wall = time.perf_counter() - t0
    if any(t.response != Response.OK for t in payloads):
        raise AssertionError(f"{name}: a bench transaction failed")
    return wall, end


def run(repetitions: int = 5, board: str = "afd", cases=CASES) -> dict:
    """Median wall microseconds per transaction for every case (key ``<case>_us``), plus the
    simulated throughput of each case (``<case>_GBps``: bytes / simulated time) as a check that
    the workload is what it claims to be, and the repetition count."""
    if repetitions < 1:
        raise ValueError("need at least one repetition")
    cfg = load_board(board).hbm
    sim = Simulator("hbm-bench")
    out: dict = {}
    try:
        serial = 0
        case_once(sim, cfg, "hbm_warmup", 64, "rand", 100)      # imports, first calls
        for name, size, pattern, count in cases:
            walls, end = [], 0
            for rep in range(repetitions):
                serial += 1
                wall, end = case_once(sim, cfg, f"hbm_{serial}", size, pattern, count, seed=rep + 1)
                walls.append(wall / count)
            out[f"{name}_us"] = round(statistics.median(walls) * 1e6, 2)
            out[f"{name}_GBps"] = round(size * count / end * 1e12 / 1e9, 1)
    finally:
        sim.close()
    out["repetitions"] = repetitions
    out["board"] = board
    return out


def main() -> None:
    print_figures(run())


if __name__ == "__main__":
    main()
