"""The AFD experiment (``npuvp experiment afd``): does attention-FFN disaggregation pay on
this chip?

The same decode workload runs on the disaggregated board (``vp/boards/afd.yaml``: 8 CA + 8 CF
cores, ``afd`` placement, micro-batch ping-pong) and on the unified board
(``vp/boards/unified.yaml``: 16 unified cores, ``unified`` placement), both in performance
mode, through the real SDK compiler (:mod:`sdk.compiler`), the runtime's session (plan, KV
cache, command queue) and the host driver. Each configuration is one decode step: ``batch``
sequences each attend over ``context`` positions (the new token is at position
``context - 1``; the KV cache of the earlier positions is taken as written, which costs
nothing in performance mode). Measured per board, from ``Device.stats()`` bracketing the step
(device time only; one step is the figure: the simulation is deterministic):

* ``step_ms`` (simulated), ``tokens_per_s`` = batch / step time, ``tokens_per_s_per_core``
  (both boards have 16 cores), and ``speedup`` = AFD's tokens/s per core over unified's;
* ``utilisation`` per core kind: busy time (not waiting at a barrier) / (cores × step time),
  and ``time_split`` per kind (LOAD/STORE, matrix unit, vector unit, barrier stall);
* ``energy_per_token_j`` (dynamic + static energy of the step / batch) and
  ``hbm_bytes_per_token``.

Rows: a grid (LLaMA-2-7B and -70B shapes × contexts 1k-32k) and sweeps at the 7B shape and
one context: the CA:CF split of the 16 cores, the NoC link width (``noc.flit_bytes``), the
batch (1 sequence = 1 micro-batch: no ping-pong), and one or two micro-batches at the same batch. ``--json`` prints the rows as a list;
``--out`` plots them (PNG). Results and their explanation: ``docs/afd_experiment.md``.

Host-side code: imports only the SDK, the driver (through the runtime) and ``vp.spec``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import yaml

from sdk.compiler import CompileError, Plan, Segment, Target
from sdk.model_config import ModelConfig, parse_config
from sdk.runtime import STEP_TIMEOUT_PS, Session
from vp.spec.board_config import load_board, parse_board, to_document

PS_PER_S = 10 ** 12

#: Hugging Face config values of the two model shapes (LlamaForCausalLM). Positions are raised
#: to the longest context of the experiment (LLaMA-2 ships 4096; RoPE has no position table,
#: so the cost of a step does not depend on it).
SHAPES = {
    "7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, intermediate_size=11008),
    "70b": dict(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                num_key_value_heads=8, intermediate_size=28672),
}
#: Weight dtype per shape: 70B in bf16 (~130 GiB) leaves ~13 GiB of the 144 GiB HBM for the
#: fp32 KV cache (640 KiB per token): batch 1 at 16k. Weight-only int8 leaves ~77 GiB.
DTYPES = {"7b": "bf16", "70b": "int8"}
CONTEXTS = (1024, 4096, 16384, 32768)
QUICK_CONTEXTS = (1024, 4096)
#: Sequences per step when the KV cache fits (else the largest even batch that does).
BATCH = 8
#: Positions per KV-cache block: one 512 KiB LOAD per (sequence, head, K|V) and 1k positions.
#: Both boards use the same value. (64-token pages make every KV load a 32 KiB transfer that
#: pays the LOAD's setup: slower steps on both boards, and ~6x more simulation events.)
PAGE_TOKENS = 1024
#: The sweeps run the 7B shape at this context.
SWEEP_CONTEXT = 1024
CA_CF = ((4, 12), (6, 10), (8, 8), (10, 6), (12, 4))
QUICK_CA_CF = ((4, 12), (8, 8), (12, 4))
FLIT_BYTES = (32, 64, 128, 256, 1024)
QUICK_FLIT_BYTES = (64, 256)
BATCHES = (1, 2, 8, 32)
QUICK_BATCHES = (1, 8)
#: The micro-batch sweep: the AFD board's batch in one micro-batch (no ping-pong) or two, at
#: a short and a long context (7B shape, batch BATCH).
MICRO_BATCH_CONTEXTS = (1024, 16384)
QUICK_MICRO_BATCH_CONTEXTS = (1024,)
#: Per-device throughput gain of attention-FFN disaggregation reported at rack scale
#: (Step-3 AFD about 1.74x, MegaScale-Infer up to 1.9x).
PUBLISHED_SPEEDUP = (1.7, 1.9)
BOARDS = ("afd", "unified")


class ExperimentError(ValueError):
    """A configuration the experiment cannot run (the message names it and why)."""


# -- models and boards ------------------------------------------------------------------------
def model_config(shape: str, layers: int | None = None,
                 max_positions: int = max(CONTEXTS)) -> ModelConfig:
    """The LLaMA-2 ``shape`` ("7b" or "70b") as a :class:`ModelConfig`, parsed from a Hugging
    Face config dict; ``layers`` overrides the layer count (a reduced model: rows say so)."""
    if shape not in SHAPES:
        raise ExperimentError(f"unknown shape {shape!r} (expected one of {', '.join(SHAPES)})")
    doc = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32000,
               max_position_embeddings=max_positions, rms_norm_eps=1e-5, hidden_act="silu",
               rope_theta=10000.0, tie_word_embeddings=False, **SHAPES[shape])
    if layers is not None:
        if layers < 1:
            raise ExperimentError(f"layers must be at least 1, got {layers}")
        doc["num_hidden_layers"] = layers
    return parse_config(doc, source=f"LLaMA-2-{shape.upper()} shape")


def board_document(board: str, *, ca: int | None = None, cf: int | None = None,
                   flit_bytes: int | None = None) -> dict:
    """Shipped board ``board`` ("afd" or "unified") in performance mode as a board-file
    document, with ``ca``/``cf`` cores (AFD board; their sum must stay the core count, one
    core per mesh node) and ``noc.flit_bytes`` (bytes per cycle per link direction) changed;
    the name says what changed. Validated by the board schema."""
    if board not in BOARDS:
        raise ExperimentError(f"unknown board {board!r} (expected one of {', '.join(BOARDS)})")
    doc = to_document(load_board(board))
    doc["mode"] = "performance"
    name = doc["name"]
    if ca is not None or cf is not None:
        if board != "afd":
            raise ExperimentError("the CA:CF split applies to the afd board only")
        cores = doc["cores"]
        total = cores["ca"]["count"] + cores["cf"]["count"]
        ca = cores["ca"]["count"] if ca is None else ca
        cf = cores["cf"]["count"] if cf is None else cf
        if ca < 1 or cf < 1 or ca + cf != total:
            raise ExperimentError(f"CA:CF split {ca}:{cf}: both must be at least 1 and sum to "
                                  f"the board's {total} cores (equal core count)")
        cores["ca"]["count"], cores["cf"]["count"] = ca, cf
        name = f"afd-{ca}ca-{cf}cf"
    if flit_bytes is not None and flit_bytes != doc["noc"]["flit_bytes"]:
        doc["noc"]["flit_bytes"] = flit_bytes
        name += f"-flit{flit_bytes}"
    doc["name"] = name + "-perf"
    parse_board(doc, doc["name"])
    return doc


def fit_batch(config: ModelConfig, docs: list[dict], dtype: str, context: int,
              want: int = BATCH, page_tokens: int = PAGE_TOKENS) -> int:
    """``want`` sequences if their plan (weights + KV cache for ``context`` positions each)
    fits every board of ``docs``, else the largest even batch that fits (even: the AFD
    ping-pong splits it into two equal micro-batches), else 1."""
    def fits(b: int) -> bool:
        try:
            for doc in docs:
                Plan(config, Target.from_board(parse_board(doc, doc["name"]), _placement(doc)),
                     dtype=dtype, max_batch=b, max_context=context, page_tokens=page_tokens)
        except CompileError:
            return False
        return True

    for b in [want] + [b for b in range(want - want % 2, 1, -2) if b < want] + [1]:
        if fits(b):
            return b
    raise ExperimentError(f"{config.arch} ({config.n_layers} layers) in {dtype} with one "
                          f"sequence of {context} positions does not fit the board's HBM")


def _placement(doc: dict) -> str:
    return "afd" if doc["cores"]["ca"]["count"] and doc["cores"]["cf"]["count"] else "unified"


# -- one decode step --------------------------------------------------------------------------
def decode_step(session: Session, batch: int, context: int) -> tuple[int, dict, dict]:
    """Run one decode step of ``batch`` sequences, each attending over ``context`` positions
    (new token at position ``context - 1``), on a performance-mode session; returns (step ps,
    stats before, stats after). The sequences are split into micro-batches as the session
    splits them (two with the ``afd`` placement and batch >= 2)."""
    plan, dev = session.plan, session.dev
    if not session.target.performance:
        raise ExperimentError("decode_step needs a board in performance mode (the KV cache "
                              "of the earlier positions is not written)")
    if not 1 <= batch <= plan.max_batch:
        raise ExperimentError(f"batch {batch} is outside 1..{plan.max_batch} (max_batch)")
    if not 1 <= context <= plan.max_context:
        raise ExperimentError(f"context {context} is outside 1..{plan.max_context} "
                              f"(max_context)")
    m = min(plan.micro_batches, batch)
    bounds = np.linspace(0, batch, m + 1).round().astype(int)
    try:
        tables = [session.kv.reserve(i, context) for i in range(batch)]
        mbs = [[Segment(np.zeros(1, np.int64), context - 1, tables[i], row=r)
                for r, i in enumerate(range(bounds[k], bounds[k + 1]))] for k in range(m)]
        step = session.compiler.compile(mbs)
        for address, image in step.images():
            dev.write_mem(address, np.ascontiguousarray(image))
        before = dev.stats()
        session.queue.submit(*step.packets)
        session.queue.sync(STEP_TIMEOUT_PS)
        after = dev.stats()
    finally:
        session.kv.release_all()
    return after["now_ps"] - before["now_ps"], before, after


def board_metrics(target: Target, micro_batches: int, batch: int, step_ps: int,
                  before: dict, after: dict) -> dict:
    """The figures of one step on one board (see the module docstring)."""
    cores = len(target.active)
    elapsed = max(1, after["elapsed_ps"] - before["elapsed_ps"])
    tps = batch * PS_PER_S / step_ps
    util, split = {}, {}
    for kind, k in after["kinds"].items():
        ids = [c.id for c in target.cores if c.kind == kind]
        if not ids:
            continue
        span = len(ids) * elapsed
        util[kind] = (k["busy_ps"] - before["kinds"][kind]["busy_ps"]) / span
        split[kind] = {
            name: sum(after["units"][f"core{i}"][key] - before["units"][f"core{i}"][key]
                      for i in ids) / span
            for name, key in (("load_store", "load_store_ps"), ("matrix", "matrix_busy_ps"),
                              ("vector", "vector_busy_ps"), ("stall", "stall_ps"))}
    hbm, hbm0 = after["units"]["hbm"], before["units"]["hbm"]
    hbm_bytes = (hbm["bytes_read"] + hbm["bytes_written"] - hbm0["bytes_read"]
                 - hbm0["bytes_written"])
    energy_j = (after["energy_pj"]["total"] - before["energy_pj"]["total"]) * 1e-12
    return {"board": target.board_name, "placement": target.placement, "cores": cores,
            "micro_batches": micro_batches, "step_ms": step_ps / 1e9, "tokens_per_s": tps,
            "tokens_per_s_per_core": tps / cores, "utilisation": util, "time_split": split,
            "energy_per_token_j": energy_j / batch, "hbm_bytes_per_token": hbm_bytes / batch,
            "hbm_gb_per_s": hbm_bytes / step_ps * 1e3}


# -- the experiment ---------------------------------------------------------------------------
@dataclass
class Experiment:
    """Runs configurations, caching each board's measurement (a sweep's unchanged board and
    the grid's matching row are measured once). ``layers`` overrides both shapes' layer count
    (a reduced model, for smoke tests); ``log`` gets one progress line per measurement."""

    layers: int | None = None
    page_tokens: int = PAGE_TOKENS
    log: object = None
    _dir: str = field(default="", repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    def __enter__(self) -> "Experiment":
        self._tmp = tempfile.TemporaryDirectory(prefix="npuvp-afd-")
        self._dir = self._tmp.name
        return self

    def __exit__(self, *exc) -> None:
        self._tmp.cleanup()

    def board_file(self, doc: dict) -> str:
        """Path of board document ``doc`` as a YAML file in the experiment's directory."""
        path = os.path.join(self._dir, doc["name"] + ".yaml")
        if not os.path.exists(path):
            with open(path, "w", encoding="utf-8") as f:
                yaml.safe_dump(doc, f)
        return path

    def measure(self, shape: str, doc: dict, batch: int, context: int,
                micro_batches: int | None = None) -> dict:
        """One decode step of ``shape`` on the board ``doc`` (its natural placement), its
        sequences in ``micro_batches`` (None: the plan's default)."""
        config, dtype, placement = model_config(shape, self.layers), DTYPES[shape], _placement(doc)
        if micro_batches is None:
            micro_batches = 2 if placement == "afd" and batch >= 2 else 1
        key = (shape, doc["name"], batch, context, micro_batches)
        if key in self._cache:
            return self._cache[key]
        t0 = time.perf_counter()
        with Session.from_config(config, f"embedded://{self.board_file(doc)}",
                                 placement=placement, dtype=dtype, max_batch=batch,
                                 max_context=context, page_tokens=self.page_tokens,
                                 micro_batches=micro_batches) as s:
            step_ps, before, after = decode_step(s, batch, context)
            result = board_metrics(s.target, min(s.plan.micro_batches, batch), batch, step_ps,
                                   before, after)
        if self.log:
            self.log(f"  {shape} {doc['name']:<24} context {context:>6} batch {batch:>2} "
                     f"({micro_batches} mb): "
                     f"{result['step_ms']:9.3f} ms/step simulated "
                     f"({time.perf_counter() - t0:.1f} s wall)")
        self._cache[key] = result
        return result

    def row(self, experiment: str, shape: str, context: int, batch: int | None = None, *,
            ca: int | None = None, cf: int | None = None, flit_bytes: int | None = None,
            micro_batches: int | None = None) -> dict:
        """Both boards on one configuration: a row with its parameters, each board's figures,
        ``tokens_per_s_per_core`` of both and ``speedup`` (AFD / unified). ``batch`` None
        picks :data:`BATCH` or the largest even batch whose KV cache fits;
        ``micro_batches`` applies to the AFD board (the unified board runs one)."""
        split = {} if ca is None and cf is None else {"ca": ca, "cf": cf}
        afd = board_document("afd", flit_bytes=flit_bytes, **split)
        uni = board_document("unified", flit_bytes=flit_bytes)
        config, dtype = model_config(shape, self.layers), DTYPES[shape]
        if batch is None:
            batch = fit_batch(config, [afd, uni], dtype, context, BATCH, self.page_tokens)
        res = {"afd": self.measure(shape, afd, batch, context, micro_batches),
               "unified": self.measure(shape, uni, batch, context)}
        per_core = {b: res[b]["tokens_per_s_per_core"] for b in BOARDS}
        return {"experiment": experiment, "shape": shape, "layers": config.n_layers,
                "dtype": dtype, "context": context, "batch": batch,
                "page_tokens": self.page_tokens, "ca_cores": afd["cores"]["ca"]["count"],
                "cf_cores": afd["cores"]["cf"]["count"], "flit_bytes": afd["noc"]["flit_bytes"],
                **res, "tokens_per_s_per_core": per_core,
                "speedup": per_core["afd"] / per_core["unified"]}


def configurations(quick: bool = False) -> list[tuple]:
    """(experiment, shape, context, batch, options) of every row, grid first. ``quick``: the
    7B shape at two contexts and two or three points per sweep."""
    shapes = ("7b",) if quick else tuple(SHAPES)
    out = [("grid", s, c, None, {}) for s in shapes
           for c in (QUICK_CONTEXTS if quick else CONTEXTS)]
    out += [("ca_cf", "7b", SWEEP_CONTEXT, BATCH, {"ca": a, "cf": f})
            for a, f in (QUICK_CA_CF if quick else CA_CF)]
    out += [("noc", "7b", SWEEP_CONTEXT, BATCH, {"flit_bytes": n})
            for n in (QUICK_FLIT_BYTES if quick else FLIT_BYTES)]
    out += [("batch", "7b", SWEEP_CONTEXT, b, {}) for b in (QUICK_BATCHES if quick else BATCHES)]
    out += [("micro_batches", "7b", c, BATCH, {"micro_batches": m})
            for c in (QUICK_MICRO_BATCH_CONTEXTS if quick else MICRO_BATCH_CONTEXTS)
            for m in (1, 2)]
    return out


def run(quick: bool = False, layers: int | None = None, log=None) -> list[dict]:
    """Every row of :func:`configurations` (see :meth:`Experiment.row`)."""
    confs = configurations(quick)
    rows = []
    with Experiment(layers=layers, log=log) as ex:
        for i, (experiment, shape, context, batch, opts) in enumerate(confs, 1):
            if log:
                what = ", ".join(f"{k} {v}" for k, v in opts.items())
                log(f"[{i}/{len(confs)}] {experiment}: {shape}, context {context}"
                    + (f", {what}" if what else ""))
            rows.append(ex.row(experiment, shape, context, batch, **opts))
    return rows


# -- output -----------------------------------------------------------------------------------
_SWEEP_TITLES = {"grid": "Shapes x contexts", "ca_cf": "CA:CF split of the AFD board's 16 cores",
                 "noc": "NoC link width (noc.flit_bytes, both boards)",
                 "batch": "Batch (afd: 1 sequence = 1 micro-batch, no ping-pong)",
                 "micro_batches": "Micro-batches on the AFD board at the same batch"}


def _param(row: dict) -> str:
    return {"grid": f"{row['shape']} {row['context'] // 1024}k",
            "ca_cf": f"{row['ca_cores']}:{row['cf_cores']}",
            "noc": f"{row['flit_bytes']} B flits",
            "batch": f"batch {row['batch']}",
            "micro_batches": f"{row['afd']['micro_batches']} mb, {row['context'] // 1024}k",
            }[row["experiment"]]


def _util(res: dict) -> str:
    return " ".join(f"{k.upper()} {v:4.0%}" for k, v in res["utilisation"].items())


def format_table(rows: list[dict]) -> str:
    """The rows as readable tables, one per experiment, and the speedup summary."""
    if not rows:
        return "no rows"
    r0 = rows[0]
    lines = [f"AFD experiment: one decode step, {r0['afd']['cores']} cores per board, "
             f"performance mode, {r0['page_tokens']}-token KV pages"
             + (f" (REDUCED MODEL: {r0['layers']} layers)" if _reduced(rows) else "")]
    head = (f"  {'':<12} {'batch':>5} {'mb':>5} | {'tok/s/core afd':>14} {'unified':>9} "
            f"{'speedup':>7} | {'util afd':<17} {'unified':<12} | {'J/token afd':>11} "
            f"{'unified':>8} | {'HBM MB/token afd':>16} {'unified':>8}")
    for exp in _SWEEP_TITLES:
        sel = [r for r in rows if r["experiment"] == exp]
        if not sel:
            continue
        extra = ("" if exp == "grid" else f" ({sel[0]['shape']}, batch {sel[0]['batch']})"
                 if exp == "micro_batches" else
                 f" ({sel[0]['shape']}, context {sel[0]['context']})")
        lines += ["", _SWEEP_TITLES[exp] + extra, head]
        for r in sel:
            a, u = r["afd"], r["unified"]
            lines.append(
                f"  {_param(r):<12} {r['batch']:>5} {a['micro_batches']:>2}/{u['micro_batches']:<2} | "
                f"{a['tokens_per_s_per_core']:>14.2f} {u['tokens_per_s_per_core']:>9.2f} "
                f"{r['speedup']:>6.2f}x | {_util(a):<17} {_util(u):<12} | "
                f"{a['energy_per_token_j']:>11.3f} {u['energy_per_token_j']:>8.3f} | "
                f"{a['hbm_bytes_per_token'] / 1e6:>16.0f} {u['hbm_bytes_per_token'] / 1e6:>8.0f}")
    sp = [r["speedup"] for r in rows]
    best = max(rows, key=lambda r: r["speedup"])
    lines += ["", f"speedup (AFD / unified tokens/s per core): {min(sp):.2f}x to {max(sp):.2f}x "
                  f"(median {statistics.median(sp):.2f}x; best: {_param(best)}, "
                  f"{best['experiment']}); published rack-scale analogue "
                  f"{PUBLISHED_SPEEDUP[0]}-{PUBLISHED_SPEEDUP[1]}x per device",
              "dtypes: " + ", ".join(f"{s} {d}" for s, d in DTYPES.items()
                                      if any(r["shape"] == s for r in rows))
              + "; KV cache fp32; why: docs/afd_experiment.md"]
    return "\n".join(lines)


def _reduced(rows: list[dict]) -> bool:
    return any(r["layers"] != SHAPES[r["shape"]]["num_hidden_layers"] for r in rows)


def plot(rows: list[dict], path: str) -> None:
    """Four panels to PNG ``path``: tokens/s per core and energy per token against context
    (grid), utilisation per core kind (grid), speedup in the sweeps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(13, 9.5))
    grid = [r for r in rows if r["experiment"] == "grid"]
    colours = {"7b": "tab:blue", "70b": "tab:red"}
    for shape in dict.fromkeys(r["shape"] for r in grid):
        sel = [r for r in grid if r["shape"] == shape]
        x = [r["context"] for r in sel]
        label = f"{shape.upper()} ({sel[0]['dtype']})"
        for board, style in (("afd", "-o"), ("unified", "--s")):
            ax[0, 0].plot(x, [r[board]["tokens_per_s_per_core"] for r in sel], style,
                          color=colours.get(shape), label=f"{label} {board}")
            ax[0, 1].plot(x, [r[board]["energy_per_token_j"] for r in sel], style,
                          color=colours.get(shape), label=f"{label} {board}")
        for r in sel:
            ax[0, 0].annotate(f"{r['speedup']:.2f}x (b{r['batch']})",
                              (r["context"], r["afd"]["tokens_per_s_per_core"]),
                              textcoords="offset points", xytext=(4, 6), fontsize=7)
    for a, title, unit in ((ax[0, 0], "Decode throughput per core", "tokens/s per core"),
                           (ax[0, 1], "Energy per token", "J / token")):
        a.set(xscale="log", yscale="log", title=title, xlabel="context (positions)",
              ylabel=unit)
        a.set_xticks(CONTEXTS, [f"{c // 1024}k" for c in CONTEXTS])
        a.grid(True, which="both", alpha=0.3)
        if grid:
            a.legend(fontsize=7)
    _utilisation_panel(ax[1, 0], grid)
    _sweep_panel(ax[1, 1], [r for r in rows if r["experiment"] != "grid"])
    title = ("AFD (8 CA + 8 CF cores, ping-pong) vs unified (16 cores): one decode step, "
             "performance mode")
    if _reduced(rows):
        title += f"  [REDUCED: {rows[0]['layers']} layers]"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _utilisation_panel(a, grid: list[dict]) -> None:
    labels = [_param(r) for r in grid]
    series = [("afd CA", lambda r: r["afd"]["utilisation"].get("ca", 0)),
              ("afd CF", lambda r: r["afd"]["utilisation"].get("cf", 0)),
              ("unified", lambda r: r["unified"]["utilisation"].get("unified", 0))]
    x = np.arange(len(grid))
    for i, (name, get) in enumerate(series):
        a.bar(x + (i - 1) * 0.27, [get(r) for r in grid], 0.27, label=name)
    a.set_xticks(x, labels, fontsize=8)
    a.set(ylim=(0, 1.05), ylabel="busy / (cores x step time)",
          title="Utilisation per core kind (busy = not waiting at a barrier)")
    a.legend(fontsize=8)
    a.grid(True, axis="y", alpha=0.3)


def _sweep_panel(a, rows: list[dict]) -> None:
    labels = [f"{_param(r)}" for r in rows]
    colours = {"ca_cf": "tab:green", "noc": "tab:purple", "batch": "tab:orange",
               "micro_batches": "tab:brown"}
    a.bar(range(len(rows)), [r["speedup"] for r in rows],
          color=[colours[r["experiment"]] for r in rows])
    a.axhline(1.0, color="black", lw=1)
    a.axhspan(*PUBLISHED_SPEEDUP, color="grey", alpha=0.25, label="published rack-scale AFD")
    a.set_xticks(range(len(rows)), labels, rotation=45, ha="right", fontsize=8)
    handles = [plt_patch(c, _SWEEP_TITLES[e].split(" (")[0]) for e, c in colours.items()
               if any(r["experiment"] == e for r in rows)]
    a.legend(handles=handles + a.get_legend_handles_labels()[0], fontsize=7, loc="upper left")
    ctx = f", {rows[0]['context'] // 1024}k unless marked" if rows else ""
    a.set(ylabel="speedup (AFD / unified, tokens/s per core)",
          title=f"Sweeps (7B{ctx}): where the gain goes",
          ylim=(0, max([PUBLISHED_SPEEDUP[1] * 1.1] + [r["speedup"] * 1.1 for r in rows])))
    a.grid(True, axis="y", alpha=0.3)


def plt_patch(colour: str, label: str):
    from matplotlib.patches import Patch
    return Patch(color=colour, label=label)


# -- command line -----------------------------------------------------------------------------
def build_parser(prog: str = "npuvp experiment afd") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Decode on the disaggregated (AFD) board vs the unified board "
        "at equal core count, performance mode: tokens/s per core, utilisation per core kind, "
        "energy per token; sweeps of the CA:CF split, NoC link width and batch.")
    p.add_argument("--json", action="store_true",
                   help="print the rows as one JSON list on stdout (progress goes to stderr)")
    p.add_argument("--quick", action="store_true",
                   help="7B only, contexts 1k and 4k, fewer sweep points (about a minute)")
    p.add_argument("--out", default="afd_experiment.png", metavar="PNG",
                   help="write the plot here (default: %(default)s)")
    p.add_argument("--layers", type=int, default=None, metavar="N",
                   help="override the layer count of both shapes (a reduced model, for smoke "
                        "tests; every row and the plot say so)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``npuvp experiment afd [--json] [--quick] [--out PNG] [--layers N]``; returns the exit
    status (2 for a bad argument, reported on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.layers is not None and args.layers < 1:
        parser.error(f"--layers must be at least 1, got {args.layers}")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        parser.error(f"--out {args.out}: directory {out_dir} does not exist")
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rows = run(args.quick, args.layers, log)
    plot(rows, args.out)
    log(f"{len(rows)} rows in {time.perf_counter() - t0:.0f} s wall; plot: {args.out}")
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        print(format_table(rows))
        print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
