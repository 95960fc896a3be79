"""``npuvp validate``: the models measured against the formulas of DESIGN.md §7.

Every check builds a model (a small rig, a fresh HBM or NoC, or the shipped AFD board), runs
real transactions or programs in simulated time, reads the simulated time or the counters, and
compares them with the formula written out independently in ``vp/validation``:

1. GEMM cycles on real cores, ``ws`` and ``pipelined``, per array size and shape (exact);
2. HBM unloaded row-miss (and row-hit) latency (±5 %);
3. HBM sequential streaming ≥ 90 % of the refresh-limited peak, random rows < 50 % of it;
4. NoC zero-load latency for every (src, dst) pair and several sizes (exact), and the
   saturation knee (≈ zero load at low load, ≥ 3× at full load);
5. roofline: every compute op on every core kind at least ``max(FLOPs/peak, bytes/bandwidth)``;
6. a job on the shipped board through the host port: bytes, work and energy conserved,
   utilisation ≤ 1.

Each :class:`Check` is one row: ``check``, ``expected``, ``measured``, ``error`` (relative
error, or for a bound the relative margin, >= 0 when it holds), ``passed``, ``detail`` (units
and how it was measured). A check whose model raises is reported as a failed row. Only one
kernel simulator may exist per process: the checks build theirs one after another and close
them, so none may be open when :func:`run_checks` is called.
"""

from __future__ import annotations

import json as _json
import math
import time

from vp.spec.board_config import BoardConfig, load_board
from vp.validation.check import Check, failed

__all__ = ["Check", "run_checks", "to_json", "format_table", "main"]

KEYS = ("check", "expected", "measured", "error", "passed", "detail")


def _groups(cfg: BoardConfig):
    from vp.validation.conservation import conservation_checks
    from vp.validation.gemm import gemm_checks
    from vp.validation.memory import hbm_checks, noc_checks
    from vp.validation.roofline import roofline_checks
    return (("gemm", lambda quick: gemm_checks(quick)),
            ("hbm", lambda quick: hbm_checks(cfg, quick)),
            ("noc", lambda quick: noc_checks(cfg, quick)),
            ("roofline", lambda quick: roofline_checks(cfg, quick)),
            ("conservation", lambda quick: conservation_checks(cfg, quick)))


def run_checks(quick: bool = False, board: str | None = None) -> list[Check]:
    """Run every check; ``quick`` trims the sweeps (a few seconds instead of tens).

    ``board`` is the board file whose HBM, NoC, cores and energy table are validated (None:
    the shipped AFD board). The GEMM sweep uses its own array sizes."""
    cfg = load_board(board)
    out: list[Check] = []
    for name, group in _groups(cfg):
        try:
            out += group(quick)
        except Exception as exc:               # a model that raises fails its group's row
            out.append(failed(f"{name} checks", exc))
    return out


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(checks: list[Check]) -> list[dict]:
    """The checks as JSON-ready dicts with keys check, expected, measured, error, passed,
    detail (non-finite numbers become null)."""
    return [{k: _plain(getattr(c, k)) for k in KEYS} for c in checks]


def _num(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _err(value) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return "0" if value == 0 else f"{100 * value:.3g}%"


def format_table(checks: list[Check]) -> str:
    """An aligned table: check, expected, measured, error, PASS/FAIL, detail; then a summary."""
    head = ("check", "expected", "measured", "error", "result", "detail")
    rows = [(c.check, _num(c.expected), _num(c.measured), _err(c.error),
             "PASS" if c.passed else "FAIL", c.detail) for c in checks]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    right = (False, True, True, True, False)

    def line(r):
        cells = [r[i].rjust(widths[i]) if right[i] else r[i].ljust(widths[i]) for i in range(5)]
        return "  ".join(cells + [r[5]]).rstrip()

    bad = sum(not c.passed for c in checks)
    out = [line(head), "  ".join("-" * w for w in widths) + "  ------", *map(line, rows)]
    out.append(f"{len(checks)} checks, {len(checks) - bad} passed, {bad} failed")
    return "\n".join(out)


def main(json: bool = False, quick: bool = False) -> int:
    """``npuvp validate [--json]``: print the table (or the JSON list); 0 if every check
    passed, else 1."""
    t0 = time.perf_counter()
    checks = run_checks(quick=quick)
    if json:
        print(_json.dumps(to_json(checks), indent=1))
    else:
        print(format_table(checks))
        print(f"validated in {time.perf_counter() - t0:.1f} s wall")
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
