"""Layer benchmark: wall seconds per decode token and simulated events per second.

The synthetic decoder stacks of :mod:`vp.bench.decoder_programs` run end to end through the
real host driver (``drivers.open_device("embedded://<board file>")``, a
:class:`~drivers.queue.CommandQueue`, submit + sync), one token at a time:

* **performance mode**, the AFD board (8 CA + 8 CF cores), batch 1, ``CONTEXT`` tokens of KV
  cache, at the 7B and 70B shapes: wall seconds per token (median of ``repeats`` tokens on one
  board, after one warm-up token), simulated time per token (between the two TIMESTAMP
  packets that bracket it, so host link time is excluded), tokens/s at the chip clock, and the
  HBM roofline (weight + KV bytes read per token / peak HBM bandwidth) to compare with;
* **functional mode**, the small shape: real bytes, wall seconds per token, and a check that
  the logits are finite and that two fresh boards give the same logits, hidden state and
  simulated time.

*Simulated event* (the unit of ``events_per_s``): one completed core instruction, one command
packet executed by the command processor, one interconnect transaction (a LOAD/STORE chunk,
a SEND, a program fetch or a ring read reaching HBM or a remote SRAM; each is one target
access, an HBM transaction being one of them), or one NoC packet (a timed traversal of a route:
a read costs a request and a response packet per HBM controller node). ``events_per_s`` is the
sum of these counter deltas over all measured performance-mode tokens divided by their wall
seconds.

Run ``python -m vp.bench.layer_bench`` (or ``npuvp bench layer``) to print the figures;
``python -m vp.bench.layer_bench --profile [7b|70b] [afd|unified]`` profiles one token with
cProfile and prints wall time by module (kernel, core, noc, hbm, cp, driver...).
"""

from __future__ import annotations

import cProfile
import math
import os
import pstats
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from importlib import resources
from typing import Iterator

import numpy as np
import yaml

import drivers
from drivers.queue import CommandQueue
from vp.bench import print_figures
from vp.bench.decoder_programs import DecodeWorkload, build_decode
from vp.spec.board_config import BoardConfig, parse_board
from vp.spec.units import SEC

#: KV-cache tokens of the performance-mode tokens (the new token's position).
CONTEXT = 4096
#: KV-cache tokens of the functional small-shape token.
SMALL_CONTEXT = 64
#: Measured tokens per shape (the median is reported), after one warm-up token.
REPEATS = 3
#: Simulated time a token may take before the driver gives up (ps).
TOKEN_TIMEOUT_PS = 20 * SEC


#: Sensitivity variant of the AFD board: CA cores on the 8 HBM-controller nodes (rows 0 and 3),
#: CF cores on the middle rows, so no CF core shares a node (and its ejection port) with an HBM
#: controller (see ``perf_*_cf_off_hbm_nodes_*`` and the report in the docstring of ``run``).
CF_OFF_HBM_NODES = {"noc": {"placement": "0,0 1,0 2,0 3,0 0,3 1,3 2,3 3,3 "
                                         "0,1 1,1 2,1 3,1 0,2 1,2 2,2 3,2"}}


def board_data(board: str = "afd", mode: str = "performance",
               overrides: dict | None = None) -> dict:
    """The YAML data of shipped board ``board`` with ``mode`` set and ``overrides`` (section
    -> {key: value}) applied."""
    data = yaml.safe_load(resources.files("vp.boards").joinpath(f"{board}.yaml")
                          .read_text(encoding="utf-8"))
    data["mode"] = mode
    for section, keys in (overrides or {}).items():
        data.setdefault(section, {}).update(keys)
    return data


@contextmanager
def open_board(board: str = "afd", mode: str = "performance", overrides: dict | None = None
               ) -> Iterator[tuple[drivers.Device, BoardConfig]]:
    """Open shipped board ``board`` in ``mode`` (with ``overrides``, see :func:`board_data`)
    through the driver's embedded transport (a temporary board file), yielding (device, its
    config); closed on exit."""
    data = board_data(board, mode, overrides)
    with tempfile.TemporaryDirectory(prefix="npuvp-layer-") as tmp:
        path = os.path.join(tmp, f"{board}-{mode}.yaml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(data, f)
        config = parse_board(data, path)
        dev = drivers.open_device(f"embedded://{path}")
        try:
            yield dev, config
        finally:
            dev.close()


class DecodeRunner:
    """A workload loaded on an open device: programs (and, in functional mode, data) written,
    queue 0 set up on the workload's ring. :meth:`token` runs one decode token."""

    def __init__(self, dev: drivers.Device, workload: DecodeWorkload, functional_seed=None):
        self.dev, self.w = dev, workload
        for address, image in workload.program_images():
            dev.write_mem(address, image)
        if functional_seed is not None:
            for address, image in workload.functional_images(functional_seed):
                dev.write_mem(address, image)
        ring, size = workload.regions["ring"]
        self.queue = CommandQueue(dev, 0, ring, size)
        self.packets = workload.token_packets()

    def token(self) -> dict:
        """Run one token; returns wall seconds, simulated ns and the event counter deltas."""
        before = self._counters()
        t0 = time.perf_counter()
        self.queue.submit(*self.packets)
        self.queue.sync(TOKEN_TIMEOUT_PS)
        wall = time.perf_counter() - t0
        after = self._counters()
        start, end = self.dev.read_mem(self.w.regions["timestamps"][0], 16).view("<u8")
        events = {k: after[k] - before[k] for k in after}
        events["cp_packets"] = len(self.packets) + 1            # + the sync's FENCE
        return {"wall_s": wall, "sim_ns": int(end - start), "events": events}

    def _counters(self) -> dict:
        units = self.dev.stats()["units"]
        cores = [v for k, v in units.items() if k.startswith("core")]
        return {"instructions": sum(c["instructions"] for c in cores),
                "noc_transactions": units["noc"]["transactions"],
                "noc_packets": units["noc"]["packets"],
                "hbm_bytes_read": units["hbm"]["bytes_read"]}

    def read(self, region: str) -> np.ndarray:
        """An output region (``hidden``, ``logits``) as fp32."""
        address, nbytes = self.w.regions[region]
        return self.dev.read_mem(address, nbytes).view(np.float32).copy()


def hbm_roofline_ms(workload: DecodeWorkload) -> float:
    """Weight + KV bytes read per token over the board's peak HBM bandwidth (ms)."""
    return workload.hbm_read_bytes / workload.board.hbm.peak_bandwidth * 1e3


def perf_token(shape: str, *, board: str = "afd", context: int = CONTEXT,
               repeats: int = REPEATS, batch: int = 1, warmup: bool = True,
               overrides: dict | None = None, **build_options) -> dict:
    """Performance mode: build (``build_options`` go to ``build_decode``, e.g.
    ``tile_fraction``), warm up with one token, then time ``repeats`` tokens."""
    with open_board(board, "performance", overrides) as (dev, config):
        t0 = time.perf_counter()
        w = build_decode(shape, config, batch=batch, context=context, **build_options)
        build_s = time.perf_counter() - t0
        runner = DecodeRunner(dev, w)
        warm = runner.token() if warmup else {"wall_s": None}
        base = dev.stats()
        runs = [runner.token() for _ in range(repeats)]
        stats = dev.stats()
    walls = [r["wall_s"] for r in runs]
    events = {k: sum(r["events"][k] for r in runs) for k in runs[0]["events"]}
    sim_ns = statistics.median(r["sim_ns"] for r in runs)
    roof = hbm_roofline_ms(w)
    return {
        "wall_s": statistics.median(walls), "walls": walls, "warmup_wall_s": warm["wall_s"],
        "build_s": build_s, "sim_ms": sim_ns / 1e6,
        "tokens_per_s": 1e9 / sim_ns if sim_ns else math.inf,
        "roofline_ms": roof, "vs_roofline": sim_ns / 1e6 / roof,
        "hbm_gb_per_s": events["hbm_bytes_read"] / len(runs) / sim_ns,
        "events": sum(v for k, v in events.items() if k != "hbm_bytes_read"),
        "events_detail": events, "events_wall_s": sum(walls),
        "instructions": w.instructions, "messages": w.messages,
        "weight_gb": w.weight_read_bytes / 1e9, "kv_gb": w.kv_read_bytes / 1e9,
        "utilisation": {k: round(v["utilisation"], 3) for k, v in stats["kinds"].items()},
        "dense_time_split": _time_split(base, stats, w.dense_cores, sim_ns * len(runs)),
        "attn_time_split": _time_split(base, stats, w.attn_cores, sim_ns * len(runs)),
    }


def _time_split(before: dict, after: dict, cores: list[int], elapsed_ns: float) -> dict:
    """Where the cores' simulated time went during the measured tokens, as shares of the
    elapsed time averaged over ``cores``: LOAD/STORE/SEND (``load_store``), matrix unit,
    vector unit, waiting (SEND/RECV/BARRIER/SEM: ``stall``), program fetch."""
    keys = {"load_store": "load_store_ps", "matrix": "matrix_busy_ps",
            "vector": "vector_busy_ps", "stall": "stall_ps", "fetch": "fetch_ps"}
    out = {}
    for name, key in keys.items():
        ps = sum(after["units"][f"core{c}"][key] - before["units"][f"core{c}"][key]
                 for c in cores)
        out[name] = round(ps / (len(cores) * elapsed_ns * 1e3), 3)
    return out


def functional_small(*, board: str = "afd", context: int = SMALL_CONTEXT,
                     repeats: int = REPEATS, seed: int = 0) -> dict:
    """Functional mode at the small shape: wall per token (median of ``repeats`` tokens on one
    board), then one token on a second fresh board: same logits, hidden state and simulated
    time (deterministic), all finite."""
    results = []
    for fresh in range(2):
        with open_board(board, "functional") as (dev, config):
            w = build_decode("small", config, context=context)
            runner = DecodeRunner(dev, w, functional_seed=seed)
            runs = [runner.token() for _ in range(repeats if fresh == 0 else 1)]
            results.append({"runs": runs, "logits": runner.read("logits"),
                            "hidden": runner.read("hidden")})
    first, second = results
    sims = [r["sim_ns"] for r in first["runs"]]
    return {
        "wall_s": statistics.median(r["wall_s"] for r in first["runs"]),
        "sim_ms": sims[0] / 1e6,
        "finite": bool(np.isfinite(first["logits"]).all() and np.isfinite(first["hidden"]).all()),
        "deterministic": bool(np.array_equal(first["logits"], second["logits"])
                              and np.array_equal(first["hidden"], second["hidden"])
                              and first["runs"][0]["sim_ns"] == second["runs"][0]["sim_ns"]),
        "logits_abs_max": float(np.abs(first["logits"]).max()),
    }


def run(repeats: int = REPEATS, context: int = CONTEXT, sensitivity: bool = True) -> dict:
    """Every figure of the benchmark (see the module docstring).

    With ``sensitivity``, one more 7B and 70B token on the AFD board with the CF cores moved
    off the HBM-controller nodes (:data:`CF_OFF_HBM_NODES`): the simulated time it gives shows
    how much of the shipped board's figure comes from CF cores sharing a NoC port with an HBM
    controller; and one 7B token on the unified board (16 unified cores, same work)."""
    p7 = perf_token("7b", context=context, repeats=repeats)
    p70 = perf_token("70b", context=context, repeats=repeats)
    fs = functional_small(repeats=repeats)
    events = p7["events"] + p70["events"]
    wall = p7["events_wall_s"] + p70["events_wall_s"]
    out = {
        "perf_7b_wall_s_per_token": round(p7["wall_s"], 3),
        "perf_70b_wall_s_per_token": round(p70["wall_s"], 3),
        "events_per_s": round(events / wall),
        "functional_small_wall_s_per_token": round(fs["wall_s"], 3),
    }
    for name, p in (("7b", p7), ("70b", p70)):
        out.update({
            f"perf_{name}_sim_ms_per_token": round(p["sim_ms"], 3),
            f"perf_{name}_tokens_per_s": round(p["tokens_per_s"], 2),
            f"perf_{name}_hbm_roofline_ms": round(p["roofline_ms"], 3),
            f"perf_{name}_sim_vs_roofline": round(p["vs_roofline"], 2),
            f"perf_{name}_hbm_gb_per_s": round(p["hbm_gb_per_s"], 1),
            f"perf_{name}_weight_gb": round(p["weight_gb"], 2),
            f"perf_{name}_kv_gb": round(p["kv_gb"], 3),
            f"perf_{name}_instructions": p["instructions"],
            f"perf_{name}_messages": p["messages"],
            f"perf_{name}_events": p["events"] // repeats,
            f"perf_{name}_events_per_s": round(p["events"] / p["events_wall_s"]),
            f"perf_{name}_build_s": round(p["build_s"], 3),
            f"perf_{name}_utilisation": p["utilisation"],
            f"perf_{name}_cf_time_split": p["dense_time_split"],
            f"perf_{name}_ca_time_split": p["attn_time_split"],
            f"perf_{name}_wall_s_all": [round(x, 3) for x in p["walls"]],
        })
    if sensitivity:
        for name in ("7b", "70b"):
            v = perf_token(name, context=context, repeats=1, warmup=False,
                           overrides=CF_OFF_HBM_NODES)
            out[f"perf_{name}_cf_off_hbm_nodes_sim_ms_per_token"] = round(v["sim_ms"], 3)
            out[f"perf_{name}_cf_off_hbm_nodes_hbm_gb_per_s"] = round(v["hbm_gb_per_s"], 1)
            out[f"perf_{name}_cf_off_hbm_nodes_cf_time_split"] = v["dense_time_split"]
        u = perf_token("7b", board="unified", context=context, repeats=1, warmup=False)
        out["perf_7b_unified_sim_ms_per_token"] = round(u["sim_ms"], 3)
        out["perf_7b_unified_wall_s_per_token"] = round(u["wall_s"], 3)
        out["perf_7b_unified_time_split"] = u["dense_time_split"]
    out.update({
        "functional_small_sim_ms_per_token": round(fs["sim_ms"], 4),
        "functional_small_finite": fs["finite"],
        "functional_small_deterministic": fs["deterministic"],
        "context": context, "batch": 1, "repeats": repeats, "board": "afd",
        "target_70b_wall_s_per_token": 1.0,
    })
    return out


# -- profiling -------------------------------------------------------------------------------

#: Module path prefixes -> the bucket they are reported under (first match wins).
BUCKETS = (("models/hbm", "hbm"), ("models/noc", "noc"), ("models/core", "core"),
           ("models/cp", "cp"), ("models/dma", "dma"), ("models/", "models (other)"),
           ("vp/kernel", "kernel"), ("myhdl", "kernel (myhdl)"), ("drivers/", "driver"),
           ("vp/host_port", "host port"), ("vp/embedded", "host port"),
           ("vp/spec/isa", "isa decode"), ("vp/", "vp (other)"), ("numpy", "numpy"))


def _bucket(filename: str) -> str:
    f = filename.replace(os.sep, "/")
    for prefix, name in BUCKETS:
        if prefix in f:
            return name
    return "builtins/other"


def module_times(stats: pstats.Stats) -> dict[str, float]:
    """Self time (s) per bucket of :data:`BUCKETS`. Built-in functions (``max``, ``sorted``,
    list methods) are charged to the modules that call them, in proportion to the time spent
    in each caller's calls."""
    buckets: dict[str, float] = {}
    for (filename, _line, _fn), (_cc, _nc, tottime, _ct, callers) in stats.stats.items():
        if filename == "~" and callers:
            for (caller_file, _l, _f), call in callers.items():
                b = _bucket(caller_file)
                buckets[b] = buckets.get(b, 0.0) + call[2]
            continue
        b = _bucket(filename)
        buckets[b] = buckets.get(b, 0.0) + tottime
    return buckets


def profile(shape: str = "70b", context: int = CONTEXT, top: int = 25,
            board: str = "afd") -> dict:
    """One warm token of ``shape`` on ``board`` under cProfile: self time per module bucket
    (seconds and share) and the ``top`` functions by self time, printed."""
    with open_board(board, "performance") as (dev, config):
        runner = DecodeRunner(dev, build_decode(shape, config, context=context))
        runner.token()
        prof = cProfile.Profile()
        prof.enable()
        result = runner.token()
        prof.disable()
    buckets = module_times(pstats.Stats(prof))
    total = sum(buckets.values())
    print(f"{shape}: one token, {result['wall_s']:.2f} s wall under cProfile "
          f"({total:.2f} s of self time)")
    for name, t in sorted(buckets.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<16} {t:7.3f} s  {100 * t / total:5.1f} %")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)
    return {"wall_s": result["wall_s"], "buckets_s": buckets}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--profile":
        profile(argv[1] if len(argv) > 1 else "70b", board=argv[2] if len(argv) > 2 else "afd")
        return
    print_figures(run())


if __name__ == "__main__":
    main()
