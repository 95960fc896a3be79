"""Board statistics: every unit's counters, per-core-kind utilisation, and energy.

Units report plain-int counters through ``counters()``. Energy follows Accelergy: the sum over
actions of (count × energy per action) plus static power × elapsed time, with the per-action
table from the board file's ``energy`` section (1 W for 1 ps is exactly 1 pJ)::

    mac      = Σ_cores macs_fp32·mac_fp32_pj + macs_bf16·mac_bf16_pj + macs_int8·mac_int8_pj
    vector   = Σ_cores vector_element_ops · vector_op_pj
    sram     = Σ_cores (sram_read_bytes + sram_write_bytes) · sram_pj_per_byte
    hbm      = (hbm.bytes_read + hbm.bytes_written) · hbm_pj_per_byte
    noc      = noc.byte_hops · noc_pj_per_byte_hop
    static   = (Σ_cores static_<kind>_w + static_hbm_w) · elapsed_ps

Counters are cumulative since the last reset; ``elapsed_ps`` runs from that reset too.
"""

from __future__ import annotations

from typing import Callable

from vp.spec.board_config import CORE_KINDS, EnergyConfig

Counters = dict[str, int]


def core_energy_pj(c: Counters, e: EnergyConfig) -> dict[str, float]:
    """Dynamic energy of one core's counters, by action (pJ)."""
    return {"mac": c.get("macs_fp32", 0) * e.mac_fp32_pj + c.get("macs_bf16", 0) * e.mac_bf16_pj
            + c.get("macs_int8", 0) * e.mac_int8_pj,
            "vector": c.get("vector_element_ops", 0) * e.vector_op_pj,
            "sram": (c.get("sram_read_bytes", 0) + c.get("sram_write_bytes", 0)) * e.sram_pj_per_byte}


def board_stats(units: dict[str, Callable[[], Counters]], core_kinds: list[str],
                energy: EnergyConfig, elapsed_ps: int) -> dict:
    """Collect counters and derive utilisation and energy.

    ``units`` maps unit name → its ``counters`` method; cores are named ``core<i>`` and
    ``core_kinds[i]`` is core i's kind. Returns ``{"elapsed_ps", "units", "kinds", "energy_pj"}``.
    """
    counters = {name: dict(fn()) for name, fn in units.items()}
    kinds: dict[str, dict] = {}
    dynamic = {"mac": 0.0, "vector": 0.0, "sram": 0.0, "hbm": 0.0, "noc": 0.0}
    static_w = energy.static_hbm_w
    for kind in CORE_KINDS:
        ids = [i for i, k in enumerate(core_kinds) if k == kind]
        if not ids:
            continue
        cores = [counters[f"core{i}"] for i in ids]
        busy = sum(c.get("busy_ps", 0) for c in cores)
        summary = {"cores": len(ids), "busy_ps": busy,
                   "utilisation": busy / (len(ids) * elapsed_ps) if elapsed_ps else 0.0}
        for name in ("matrix_busy_ps", "vector_busy_ps", "macs_fp32", "macs_bf16", "macs_int8",
                     "hbm_read_bytes", "hbm_write_bytes", "noc_sent_bytes", "instructions"):
            summary[name] = sum(c.get(name, 0) for c in cores)
        kinds[kind] = summary
        for c in cores:
            for action, pj in core_energy_pj(c, energy).items():
                dynamic[action] += pj
        static_w += len(ids) * getattr(energy, f"static_{kind}_w")
    hbm = counters.get("hbm", {})
    dynamic["hbm"] = (hbm.get("bytes_read", 0) + hbm.get("bytes_written", 0)) * energy.hbm_pj_per_byte
    dynamic["noc"] = counters.get("noc", {}).get("byte_hops", 0) * energy.noc_pj_per_byte_hop
    static = static_w * elapsed_ps
    total = sum(dynamic.values()) + static
    return {"elapsed_ps": elapsed_ps, "units": counters, "kinds": kinds,
            "energy_pj": {**dynamic, "static": static, "total": total}}
