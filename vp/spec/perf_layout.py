"""Layout of the ``perf`` register window: which (unit, counter) each ``PERF_SEL`` names.

Shared by the device (``models.perf``) and the driver, so both derive the same indices from a
stats dict (``{"elapsed_ps", "units", "kinds", "energy_pj"}``, as the stats call returns it):
unit 0 is ``board`` (energy per action in pJ, elapsed ps and per-kind totals), then every unit
by name; within a unit, counters by name. Values are non-negative integers.
"""

from __future__ import annotations

BOARD_UNIT = "board"


def flatten(stats: dict) -> list[tuple[str, list[tuple[str, int]]]]:
    """The stats as ``[(unit, [(counter, int value), ...]), ...]`` in PERF_SEL order."""
    board = [(f"energy_{k}_pj", int(v)) for k, v in sorted(stats["energy_pj"].items())]
    board.append(("elapsed_ps", int(stats["elapsed_ps"])))
    for kind, summary in sorted(stats["kinds"].items()):
        board += [(f"{kind}_{k}", int(v)) for k, v in sorted(summary.items())
                  if k != "utilisation"]
    units = [(BOARD_UNIT, sorted(board))]
    units += [(name, sorted((k, int(v)) for k, v in c.items()))
              for name, c in sorted(stats["units"].items())]
    return units


def index_of(stats: dict, unit: str, counter: str) -> tuple[int, int]:
    """(unit index, counter index) of ``unit``/``counter`` for PERF_SEL; KeyError names what
    exists when either is unknown."""
    layout = flatten(stats)
    names = [u for u, _ in layout]
    if unit not in names:
        raise KeyError(f"no unit {unit!r} in the perf window (units: {', '.join(names)})")
    u = names.index(unit)
    counters = [c for c, _ in layout[u][1]]
    if counter not in counters:
        raise KeyError(f"no counter {counter!r} in unit {unit!r} (counters: "
                       f"{', '.join(counters)})")
    return u, counters.index(counter)
